// What each rank's device must hold, before anything is loaded: a pure function of the plan and the
// shapes, tested without MPI or a GPU. The sweep refuses up front when a GPU cannot hold its share, and
// says how many GPUs (or which --chunk-rows) would fit; `saetraj plan --device cuda --gpu-memory 80GiB`
// prints it.
//
// [NOTE] The working set on a GPU. The GPU path (sweep/*_cuda.cpp) holds, besides the encoders, one chunk
// of rows at a time: the direct method a [rows, d_sae] float32 product plus two byte masks of that shape
// in the top-k selection; the factored method its projections [(H+1) N + 2, d_sae] for the prompt, the
// running sums of the chunk (at most twice its rows) and the assembled [rows, d_sae] block, plus the same
// masks. A chunk has at most max(chunk_rows, N + 1) rows. kGpuBytesPerChunkEntry = 4 (sums) x 2 + 4
// (rows) + 3 (masks) covers the larger of the two methods per chunk entry; the projections are added
// apart. Rank 0 also holds the model's float32 weights and one prompt's activations.
// With --mlp-transcoder, each owner also receives, per prompt and owned layer, the MLP input, resid_mid and
// resid_post ([N, d] float32 each; mlp_activation_bytes), held until its MLP path has run; the MLP path's own
// encoding ([active transcoder features + 4, d_sae] per query) is assumed to fit in the chunk's working set
// (it does while a transcoder has fewer active features at a position than --chunk-rows).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "saetraj/dist/partition.h"

namespace saetraj::dist {

inline constexpr int64_t kGpuBytesPerChunkEntry = 15;

struct LayerShape {
  int64_t d_in = 0, d_sae = 0;
  int64_t transcoder_width = 0;  // sweep --mlp-transcoder: the layer's transcoder's width (0: none)
};

// W_enc (bf16 or float32) plus b_enc, b_dec and threshold (float32).
int64_t encoder_bytes(const LayerShape& shape, bool bf16);

// The layer's transcoder on its rank (0 without one), all float32: W_enc [d, w], W_dec [w, d], b_enc and
// threshold [w], b_dec [d], and a W_skip [d, d] counted whether or not the transcoder has one; d = d_in
// (sweep --mlp-transcoder requires d_in = d_out = d_model). Added to the rank's encoders.
int64_t transcoder_bytes(const LayerShape& shape);

// sweep --mlp-transcoder: the three [max_tokens, d_in] float32 tensors of one layer's MLP path (0 without a
// transcoder). Added to the working set of the layer's rank, once per owned layer.
int64_t mlp_activation_bytes(const LayerShape& shape, int64_t max_tokens);

// The GPU working set of one layer's encoding for prompts of up to max_tokens tokens (NOTE above).
int64_t gpu_working_bytes(const LayerShape& shape, int64_t chunk_rows, int64_t max_tokens, int64_t heads);

struct RankMemory {
  int rank = 0;
  int64_t encoders = 0;  // its group's encoders
  int64_t working = 0;   // the largest working set among its layers (one layer is encoded at a time), plus
                         // its layers' MLP-path tensors (mlp_activation_bytes)
  int64_t model = 0;     // rank 0: the model and its activations
  int64_t total() const { return encoders + working + model; }
};

struct MemoryPlanInput {
  std::vector<LayerShape> layers;
  bool bf16 = false;
  int64_t chunk_rows = 2048;
  int64_t max_tokens = 0;
  int64_t heads = 1;
  int64_t model_bytes = 0;  // on rank 0
};

// Per rank, for `plan`.
std::vector<RankMemory> plan_memory(const WorkPlan& plan, const MemoryPlanInput& in);

// The fewest ranks (GPUs) for which every rank fits in `capacity` bytes with plan_work's split, or -1 when
// even one layer per GPU does not fit.
int min_ranks_that_fit(const MemoryPlanInput& in, int64_t capacity);

// Empty when every rank fits (or, with only_rank >= 0, that rank); else one message for the first rank
// that does not, naming its layers, the bytes it needs and has, the number of GPUs that would fit, and the
// --chunk-rows that would.
std::string memory_shortfall(const WorkPlan& plan, const MemoryPlanInput& in, const std::vector<int>& model_layers,
                             int64_t capacity, int only_rank = -1);

// "80GiB", "80G", "512MiB", "1.5TB", "1000000": bytes; InputError otherwise.
int64_t parse_bytes(const std::string& text);

}  // namespace saetraj::dist
