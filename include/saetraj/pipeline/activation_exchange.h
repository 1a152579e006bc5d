// Moving the forward pass's results to the ranks that own each layer.
//
// [NOTE] Why one rank runs the model: the model's forward pass is cheap next to SAE encoding (one pass
// per prompt against (N-1)(N+4)/2 encoded rows per layer), but its weights are not (Gemma-2-2b: 10 GiB in
// float32). Rank 0 alone loads the model and runs each prompt once; for every analysed layer it sends the
// owners of that layer what the method needs: resid_pre [N, d], the attention pattern [H, N, N] and the
// per-head outputs v_h[j] @ W_O[h] [H, N, d], plus (once per sweep) b_O and the post-attention norm. The
// other ranks hold only their SAEs. Per prompt and layer that is 4 N d (1 + H) + 4 H N^2 bytes: 22 MiB for
// Gemma-2-2b at N = 256, against ~10 TFLOP of encoding for the same layer.
//
// [NOTE] The transports (--exchange). These per-prompt tensors are the only bulk transfers, so they alone
// go through a dist::Transport; the once-per-sweep constants, the collectives and the HDF5 file stay on
// the communicator. --exchange mpi (the default on CPUs): the host transport, one MPI send per tensor from
// host memory. --exchange nccl (the default with --device cuda; builds with the NCCL transport): rank 0's
// tensors are on its GPU already (it runs the model there) and the three tensors of a layer go
// to each owner in one grouped ncclSend/ncclRecv, GPU to GPU (NVLink, or GPUDirect RDMA / host staging
// inside NCCL between nodes); the NCCL communicator is set up once, its id broadcast over MPI. Cost per
// prompt and layer: the same 4 N d (1 + H) + 4 H N^2 bytes per owner (22 MiB for Gemma-2-2b at
// N = 256), plus a stream synchronisation per transfer. Over MPI from host memory each byte crosses the
// node's memory bus on both sides (and PCIe twice when the data lives on a GPU: device to host on rank
// 0, host to device on the owner); NCCL moves it once over the fastest link between the GPUs, 22 MiB
// in ~0.1 ms on NVLink against ~2-4 ms through a 100 Gb/s host path, and the owner computes on them where
// they land.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saetraj/dist/communicator.h"
#include "saetraj/dist/transport.h"
#include "saetraj/dist/partition.h"
#include "saetraj/model/model.h"
#include "saetraj/sweep/decompose.h"

namespace saetraj::pipeline {

struct LayerActivations {
  torch::Tensor resid_pre;      // [N, d]
  sweep::AttentionParts parts;  // pattern, head outputs, bias
  // With --mlp-transcoder only (undefined otherwise): the MLP path's inputs, [N, d] each.
  torch::Tensor mlp_in, resid_mid, resid_post;
};

class ActivationExchange {
 public:
  // Collective. `model` is non-null on rank 0 only. Sends each layer's constants to its owners (over
  // `comm`); the per-prompt tensors go over `transport`. What a rank keeps lives on `compute_device`. With
  // `mlp` (sweep --mlp-transcoder) each layer's mlp_in, resid_mid and resid_post [N, d] travel too, in the same
  // transport call as the attention tensors (3 N d 4 bytes more per prompt, layer and owner).
  ActivationExchange(const dist::Communicator& comm, const dist::Transport& transport, const dist::WorkPlan& plan,
                     const std::vector<int>& layers, int64_t d_model, int64_t n_heads, const model::Model* model,
                     const torch::Device& compute_device, bool mlp = false);

  // Collective, once per prompt of n tokens: rank 0 passes its forward capture (others nullptr). Returns the
  // activations of this rank's layers on its compute device, keyed by layer index (position in `layers`).
  std::map<int, LayerActivations> distribute(const model::ForwardCapture* capture, int64_t n) const;

  // The post-attention norm of a layer this rank owns.
  const model::PostAttentionNorm& post_attention(int layer_index) const { return norms_.at(layer_index); }

 private:
  const dist::Communicator& comm_;
  const dist::Transport& transport_;
  torch::Device device_;  // where the transport's buffers live
  torch::Device compute_device_;
  const dist::WorkPlan& plan_;
  std::vector<int> layers_;
  int64_t d_model_, n_heads_;
  const model::Model* model_;
  bool mlp_ = false;
  std::map<int, torch::Tensor> biases_;               // own layers (undefined when the model has no b_O)
  std::map<int, model::PostAttentionNorm> norms_;     // own layers
};

}  // namespace saetraj::pipeline
