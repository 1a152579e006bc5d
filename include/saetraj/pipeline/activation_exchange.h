// Moving the forward pass's results to the ranks that own each layer.
//
// [NOTE] Why one rank runs the model: the model's forward pass is cheap next to SAE encoding (one pass
// per prompt against (N-1)(N+4)/2 encoded rows per layer), but its weights are not (Gemma-2-2b: 10 GiB in
// float32). Rank 0 alone loads the model and runs each prompt once; for every analysed layer it sends the
// owners of that layer what the method needs: resid_pre [N, d], the attention pattern [H, N, N] and the
// per-head outputs v_h[j] @ W_O[h] [H, N, d], plus (once per sweep) b_O and the post-attention norm. The
// other ranks hold only their SAEs. Per prompt and layer that is 4 N d (1 + H) + 4 H N^2 bytes: 20 MiB for
// Gemma-2-2b at N = 256, against ~10 TFLOP of encoding for the same layer.
#pragma once

#include <map>
#include <vector>

#include "saetraj/dist/communicator.h"
#include "saetraj/dist/partition.h"
#include "saetraj/model/model.h"
#include "saetraj/sweep/decompose.h"

namespace saetraj::pipeline {

struct LayerActivations {
  torch::Tensor resid_pre;      // [N, d]
  sweep::AttentionParts parts;  // pattern, head outputs, bias
};

class ActivationExchange {
 public:
  // Collective. `model` is non-null on rank 0 only. Sends each layer's constants to its owners.
  ActivationExchange(const dist::Communicator& comm, const dist::WorkPlan& plan, const std::vector<int>& layers,
                     int64_t d_model, int64_t n_heads, const model::Model* model);

  // Collective, once per prompt of n tokens: rank 0 passes its forward capture (others nullptr). Returns the
  // activations of this rank's layers, keyed by layer index (position in `layers`).
  std::map<int, LayerActivations> distribute(const model::ForwardCapture* capture, int64_t n) const;

  // The post-attention norm of a layer this rank owns.
  const model::PostAttentionNorm& post_attention(int layer_index) const { return norms_.at(layer_index); }

 private:
  const dist::Communicator& comm_;
  const dist::WorkPlan& plan_;
  std::vector<int> layers_;
  int64_t d_model_, n_heads_;
  const model::Model* model_;
  std::map<int, torch::Tensor> biases_;               // own layers (undefined when the model has no b_O)
  std::map<int, model::PostAttentionNorm> norms_;     // own layers
};

}  // namespace saetraj::pipeline
