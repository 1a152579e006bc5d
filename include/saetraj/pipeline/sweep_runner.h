// `saetraj sweep`: every analysed layer, every prompt, every prompt length, into one HDF5 file, with the
// work shared by all ranks of the communicator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "saetraj/dist/communicator.h"
#include "saetraj/sweep/evolution.h"

namespace saetraj::pipeline {

// Every option of a sweep, with its default. The CLI fills it; the output file echoes it as JSON.
struct SweepOptions {
  std::string model;                  // Hugging Face checkpoint folder
  std::vector<std::string> saes;      // "PATTERN" with {layer}, or "LAYER=FOLDER"
  std::string layers = "all";         // "all", "0-11", "0,3,5"
  std::vector<std::string> prompts;   // prompt texts
  std::string prompt_file;            // .txt (one per line) or .jsonl
  std::vector<std::string> prompt_ids;  // "1,2,3" token id lists
  bool strict_input = false;          // stop at the first malformed --prompt-file line instead of skipping it
  int64_t k = 400;                    // top features kept per step
  int top_t = 15;                     // graph filter on final rank
  bool heads = false;                 // record the head split of newcomers with final rank <= top_t (/heads)
  int64_t orders = 0;                 // > 0: leave-one-out and Shapley over this many orders (/order)
  int64_t order_seed = 0;             // seed of those orders
  std::vector<std::string> mlp_transcoders;  // "PATTERN" with {layer}, or "LAYER=FOLDER": the MLP path (/mlp)
  std::string bos = "auto";           // auto | on | off
  std::string center = "auto";        // residual centring for SAEs: auto (cfg) | on | off
  bool allow_hook_mismatch = false;   // accept an SAE whose hook layer differs from its layer
  std::string gemmascope_root;        // Gemma Scope tree layer_L/width_W/average_l0_X (not with --sae)
  std::string gemmascope_width = "65k";  // the width taken from it
  double gemmascope_l0 = 0;           // target L0 (0: the canonical one, sae/gemma_scope_release.h)
  std::vector<std::string> gemmascope_l0_layers;  // "LAYER=L0": that layer's target L0 instead
  std::string gemmascope2_root;       // Gemma Scope 2 tree <site>/layer_L_width_W_l0_X (not with --sae)
  std::string gemmascope2_width = "16k";   // the width taken from it
  std::string gemmascope2_l0 = "medium";   // small | medium | big
  std::vector<std::string> gemmascope2_l0_layers;  // "LAYER=small|medium|big": that layer's choice instead
  int64_t max_tokens = 0;             // truncate prompts to this many tokens (0: no truncation)
  std::string shard;                  // "I/N": keep prompts whose input position p has p % N == I
  std::string out = "sweep.h5";
  bool overwrite = false;
  bool resume = false;
  int64_t chunk_rows = 2048;          // rows encoded per matrix product
  std::string method = "auto";        // evolution method: auto | direct | factored (sweep/evolution.h)
  bool graphs = true;                 // build graphs at the end (rank 0)
  std::string graphs_dir;             // JSON/GraphML output (default: OUT without .h5 + "_graphs")
  std::string dtype = "float32";
  std::string sae_dtype = "float32";  // storage of W_enc: float32 | bfloat16 (half the memory)
  std::string device = "cpu";         // where ranks compute: cpu | cuda (one GPU per rank; pipeline/compute_device.h)
  std::string exchange = "auto";      // how activations move: auto | mpi | nccl (NOTE in activation_exchange.h)
  int gpu = -1;                       // the GPU of this rank (-1: local rank modulo the visible GPUs)
  std::string command_line;           // for the file's attributes

  std::string to_json() const;
};

struct SweepResult {
  std::string out;
  int64_t prompts = 0;
  int64_t prompts_done = 0;
  int64_t skipped = 0;
  int64_t rows = 0;  // per layer
  bool complete = false;
  bool interrupted = false;
  std::string graphs_dir;
  sweep::PhaseTimes times;  // this rank's
  int64_t peak_memory = 0;  // this rank's peak resident memory, bytes
  int64_t sae_bytes = 0;    // the SAE tensors this rank holds
};

SweepResult run_sweep(const SweepOptions& options, const dist::Communicator& comm);

// Parses "all" / "0-3,7" into sorted model layers; InputError for out-of-range or repeated layers.
std::vector<int> parse_layers(const std::string& spec, int64_t n_model_layers);

// Resolves the SAE folder of each layer from the --sae specs.
std::vector<std::string> resolve_sae_folders(const std::vector<std::string>& specs, const std::vector<int>& layers);

// Set by SIGTERM/SIGINT: the sweep stops after the prompt in progress, leaving a resumable file.
void install_stop_handlers();
bool stop_requested();

}  // namespace saetraj::pipeline
