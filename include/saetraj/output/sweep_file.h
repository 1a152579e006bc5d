// The sweep's HDF5 file (SPEC 3, format "saetraj-sweep" version 2, or 3 with --mlp-transcoder; version 1 files
// are still read).
//
// [NOTE] Format versions. Version 1 is SPEC 3's layout. Version 2 adds, only when the sweep ran with
// --heads, the group /heads (issue 15 part 1; README "What a sweep writes"):
//   /heads/query_offset int64 [P]              first query of prompt p on the query axis: sum over earlier
//                                              prompts of (n_tokens - 1); query q of p is at offset + q - 1
//   /heads/split        float32 [L, Q, S, H+3] for layer axis i, query, and slot 0..S-1 of the last step's
//                                              list (final position): jump, bias part, unassigned, then one
//                                              signed part per head (NOTE in sweep/head_split.h); NaN where
//                                              the slot holds no newcomer
// with attributes slots (S = min(k, top_t + 1)), heads (H) and columns (the column names), and the graph
// tables gain /graphs/trajectory_heads float32 [rows of /graphs/trajectories, H+3] (pipeline/graph_builder).
// With --orders M (issue 15 part 2), /order/values float32 [L, R, S * 3] is aligned with /evolution's rows:
// for slot i (final position) of query q, row (q, s = j+1) holds at [3i, 3i+3) the feature's activation
// without token j (leave-one-out), token j's sampled Shapley value and its standard error; row (q, s = 0)
// holds its activation with every token, with none, and NaN (NOTE in sweep/order_free.h); NaN where the
// slot holds no newcomer. Attributes slots, orders, seed. Without --heads and --orders a version 2 file
// has version 1's layout.
//
// Version 3 (issue 15 part 3) is written only by a sweep with --mlp-transcoder; it adds the group /mlp (NOTE
// The MLP path), and a sweep without that option still writes version 2, its datasets unchanged. Readers
// accept versions 1 to 3 and refuse /mlp in a file of version 1 or 2.
//
// [NOTE] The MLP path. For every analysed layer and query q (the /heads query axis: query q of prompt p at
// /heads/query_offset[p] + q - 1, so position q of each prompt with q >= 1; position 0, the one-token prefix, has
// no query), the MLP output at position q is decomposed with that layer's transcoder (sweep/mlp_decompose.h)
// and its terms are added to resid_mid one at a time; every partial sum is encoded with the layer's own
// residual SAE, the one its attention path uses (so MLP row 0, resid_mid, is encoded by the same SAE as the
// attention path's last row, and attention and MLP newcomers live in one feature space: the trajectory runs
// resid_pre -> resid_mid -> resid_post). For SAEs on hook_resid_post (Gemma Scope res, Gemma Scope 2) that
// is exactly the SAE of the MLP's end; for hook_resid_pre SAEs (GPT-2's) it is one sub-layer off there, as the
// attention path's own last row already is. The number of MLP steps varies per (layer, query), so only what
// has a fixed size is kept (sweep/mlp_rows.h):
//   /mlp/steps          int32   [L, Q]        T + 1, the rows x_0 = resid_mid ... x_T = resid_post
//   /mlp/final_indices  int32   [L, Q, k]     the SAE's top-k of x_T (-1: empty slot)
//   /mlp/final_values   float32 [L, Q, k]
//   /mlp/slots          int32   [L, Q, k, 3]  per slot of that list: the step s at which the feature first
//                                             appears (-1: it is in x_0's list already, or the slot is empty),
//                                             the kind of the term added at s (0 feature, 1 bias, 2 skip,
//                                             3 error; -1) and its transcoder feature (-1 unless kind 0)
//   /mlp/activation     float32 [L, Q, k]     that transcoder feature's activation (NaN unless kind 0)
// Attributes: transcoder_ids, transcoder_hooks (input hook), transcoder_hooks_out, per layer axis; kinds
// ("feature", "bias", "skip", "error"). Unwritten entries keep the fill values (0, -1, 0, -1, NaN).
//
// Life cycle: rank 0 creates the file serially with everything known before computing (attributes,
// prompts, tokens, row index, empty evolution/readout datasets with early allocation); then every rank
// opens it through the parallel communicator and writes its hyperslabs collectively, prompt by prompt,
// marking each prompt done once all its layers are written; finally rank 0 reopens it serially to write
// what parallel HDF5 cannot (variable-length strings of the readout), the graphs, and `complete = 1`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "saetraj/dist/communicator.h"

namespace saetraj::output {

inline constexpr const char* kSweepFormat = "saetraj-sweep";
inline constexpr int64_t kSweepFormatVersion = 2;     // written by a sweep without --mlp-transcoder
inline constexpr int64_t kSweepFormatVersionMlp = 3;  // written by a sweep with it (/mlp)
inline constexpr int64_t kOldestReadableSweepVersion = 1;
inline constexpr int64_t kNewestReadableSweepVersion = 3;
inline constexpr int64_t kMlpSlotColumns = 3;  // /mlp/slots: step, term kind, transcoder feature
inline constexpr int kReadoutTop = 5;

struct PromptEntry {
  std::string id;                   // from the corpus ("" when none)
  std::string text;
  std::vector<int32_t> ids;         // token ids, BOS included when prepended
  std::vector<std::string> tokens;  // display text of each token
};

struct SkippedPrompt {
  int64_t line = 0;  // position in the input (0-based)
  std::string id;
  std::string text;
  std::string reason;
};

struct SweepHeader {
  std::string model;         // checkpoint folder name or id
  std::string architecture;  // "GPT2LMHeadModel", ...
  int64_t d_model = 0;
  int64_t n_model_layers = 0;
  std::vector<int32_t> layers;  // analysed model layers; layer axis i <-> layers[i]
  int64_t k = 0;
  std::vector<std::string> sae_ids;
  std::vector<std::string> sae_hooks;
  std::vector<std::string> sae_preprocessing;
  std::string bos;           // "prepended" or "not prepended"
  std::string command_line;
  std::string config_json;   // every option, as JSON
  std::string created_utc;
  std::vector<PromptEntry> prompts;
  std::vector<SkippedPrompt> skipped;
  int64_t head_slots = 0;  // S of /heads/split; 0: no /heads (sweep without --heads)
  int64_t heads = 0;       // H of /heads/split
  int64_t order_slots = 0;  // S of /order/values; 0: no /order (sweep without --orders)
  int64_t orders = 0;       // M
  int64_t order_seed = 0;
  // Per layer axis, the --mlp-transcoder's id, input hook and output hook; empty: no /mlp (version 2 file).
  std::vector<std::string> mlp_transcoder_ids, mlp_transcoder_hooks, mlp_transcoder_hooks_out;

  bool has_mlp() const { return !mlp_transcoder_ids.empty(); }
  int64_t total_rows() const;
  int64_t total_queries() const;                // sum over prompts of (n_tokens - 1)
  std::vector<int64_t> query_offsets() const;  // per prompt
  std::vector<int64_t> row_offsets() const;  // per prompt
};

// One contiguous block of rows of one layer: rows [row_begin, row_begin + rows) of layer axis
// `layer_index`, `rows * k` entries each.
struct EvolutionSlab {
  int layer_index = 0;
  int64_t row_begin = 0;
  int64_t rows = 0;
  const int32_t* indices = nullptr;
  const float* values = nullptr;
};

// One contiguous run of queries of one layer for /heads/split: queries [query_begin, query_begin + queries)
// of the query axis, `queries * slots * (heads + 3)` floats.
struct HeadSlab {
  int layer_index = 0;
  int64_t query_begin = 0;
  int64_t queries = 0;
  const float* split = nullptr;
};

// One contiguous run of queries of one layer for /mlp (NOTE The MLP path): queries [query_begin,
// query_begin + queries) of the query axis; `steps` [queries], `final_indices`, `final_values`, `activation`
// [queries * k] and `slots` [queries * k * 3].
struct MlpSlab {
  int layer_index = 0;
  int64_t query_begin = 0;
  int64_t queries = 0;
  const int32_t* steps = nullptr;
  const int32_t* final_indices = nullptr;
  const float* final_values = nullptr;
  const int32_t* slots = nullptr;
  const float* activation = nullptr;
};

// Serial, rank 0. Refuses an existing file unless `overwrite`; writes to the final path directly (the
// file is marked complete = 0 until finalize).
void create_sweep_file(const std::string& path, const SweepHeader& header, bool overwrite);

// Serial. Throws InputError naming the first difference when `path` was not made by the same run
// settings (model, layers, k, SAEs, prompts), so that --resume never mixes two sweeps.
void check_resumable(const std::string& path, const SweepHeader& header);

// Serial. Per-prompt done flags.
std::vector<uint8_t> read_done_flags(const std::string& path);

class ParallelSweepFile {
 public:
  // Collective over `comm`.
  ParallelSweepFile(const std::string& path, const dist::Communicator& comm);
  ~ParallelSweepFile();
  ParallelSweepFile(const ParallelSweepFile&) = delete;
  ParallelSweepFile& operator=(const ParallelSweepFile&) = delete;

  // Collective: every rank passes its own slabs (possibly none).
  void write_evolution(std::vector<EvolutionSlab> slabs);
  // Collective: every rank passes its own slabs (possibly none). Only for files with /heads.
  void write_heads(std::vector<HeadSlab> slabs);
  bool has_heads() const { return head_slots_ > 0; }
  // Collective: slabs of /order/values rows (`values` = rows x slots x 3 floats). Only with /order.
  void write_order(std::vector<EvolutionSlab> slabs);
  bool has_order() const { return order_width_ > 0; }
  // Collective: every rank passes its own slabs (possibly none). Only for files with /mlp.
  void write_mlp(std::vector<MlpSlab> slabs);
  bool has_mlp() const { return has_mlp_; }
  // Collective: `ids`/`probs` hold n_layers x 5 entries on the writing rank, nullptr elsewhere.
  void write_readout(int64_t prompt, const int32_t* ids, const float* probs);
  // Collective: sets done[prompt] = 1 after flushing what was written before.
  void mark_done(int64_t prompt);
  void close();
  // Fault injection for the disk-full tests: from now on every evolution and readout write of this rank
  // fails with `err` (ENOSPC) instead of writing, as a full file system makes it fail.
  void inject_write_failure(int err) { injected_errno_ = err; }

 private:
  // Throws IoError (the cause, the free space left, how to resume) when a write or flush failed.
  void check_write(int status, const std::string& what) const;

  std::string path_;
  const dist::Communicator& comm_;
  int64_t k_ = 0, n_layers_ = 0, head_slots_ = 0, head_columns_ = 0, order_width_ = 0;
  bool has_mlp_ = false;
  struct Handles;  // the HDF5 handles (output/sweep_file.cpp): this header does not include <hdf5.h>
  std::unique_ptr<Handles> h_;
  int injected_errno_ = 0;
};

// Serial, rank 0, after the parallel phase: fills /readout/token_text from /readout/token_ids with
// `token_text`, and sets the root attribute complete.
void finalize_sweep_file(const std::string& path, const std::function<std::string(int32_t)>& token_text,
                         bool complete);

// Why writing `path` failed: strerror(err) (a generic cause when err is 0) and the free space left on
// the file system that holds it, e.g. "No space left on device; the file system holding /x has 0 B free
// of 1.0 MiB".
std::string storage_failure(const std::string& path, int err);

// Stops HDF5 printing its own error stack on stderr (output/h5.h); main calls it once MPI is started.
void h5_quiet_errors();

// Current UTC time as ISO 8601.
std::string utc_now_iso8601();

}  // namespace saetraj::output
