// Synthetic fixtures in the exact on-disk formats of the real ones, made deterministically from a seed:
// a small GPT-2-architecture Hugging Face checkpoint with a trained byte-level BPE tokenizer, an
// SAE-Lens SAE for every layer (standard, jumprelu and topk; both cfg generations), and a Neuronpedia-style
// bulk export of explanations for them. The demo, the tests and real use go through the same loaders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saetraj::synth {

// SPEC 5: the original study's prompt.
inline constexpr const char* kReferencePrompt =
    "The final correct answer: Max, Mark and Smith are in the empty dark room. Smith left. Mark gave "
    "flashlight to";

struct SynthOptions {
  std::string out;          // folder to create (model/, saes/, explanations/)
  uint64_t seed = 20240601;
  int n_layers = 4;
  int d_model = 64;
  int n_heads = 4;
  int d_mlp = 256;
  int vocab_size = 512;     // byte tokens + learned merges + <|endoftext|>
  int n_ctx = 128;
  int d_sae = 512;
  double firing_rate = 0.05;  // fraction of calibration vectors on which a feature fires
};

struct SynthResult {
  std::string model_dir;
  std::string sae_pattern;       // "<out>/saes/layer_{layer}"
  std::vector<std::string> sae_dirs;
  std::string explanations_root;  // holds <modelId>/<sourceId>/explanations/batch-N.jsonl.gz
  std::string neuronpedia_model;  // "saetraj-demo-gpt2"
};

SynthResult synth_gpt2_fixture(const SynthOptions& options);

// The English text the tokenizer is trained on and the SAEs are calibrated on.
const std::string& demo_corpus();

}  // namespace saetraj::synth
