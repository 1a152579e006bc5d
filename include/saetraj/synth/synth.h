// Synthetic fixtures in the exact on-disk formats of the real ones, made deterministically from a seed:
// a small GPT-2-architecture Hugging Face checkpoint with a trained byte-level BPE tokenizer, an
// SAE-Lens SAE for every layer (standard, jumprelu and topk; both cfg generations), and a Neuronpedia-style
// bulk export of explanations for them; and a small Gemma-2 checkpoint with Gemma Scope-layout SAEs.
// The demo, the tests and real use go through the same loaders.
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
  // Gemma-2 only
  int n_kv_heads = 0;            // 0 = n_heads / 2 (grouped-query attention), or n_heads if that is odd
  int head_dim = 0;              // 0 = d_model / n_heads
  int sliding_window = 16;       // even layers attend to the last sliding_window tokens only
  double attn_softcap = 50.0;    // attention-logit soft-cap (gemma-2-2b: 50)
  double final_softcap = 30.0;   // final-logit soft-cap (gemma-2-2b: 30)
  // Qwen3 only
  int topk_k = 8;                // k of the TopK SAEs
};

struct SynthResult {
  std::string model_dir;
  std::string sae_pattern;       // "<out>/saes/layer_{layer}"
  std::vector<std::string> sae_dirs;
  std::string explanations_root;  // holds <modelId>/<sourceId>/explanations/batch-N.jsonl.gz
  std::string neuronpedia_model;  // "saetraj-demo-gpt2"
  std::string gemmascope_root;    // Gemma-2 only: "<out>/saes", holding layer_L/width_W/average_l0_X/
  std::string gemmascope_width;   // Gemma-2 only: the width label of those SAEs ("512")
};

SynthResult synth_gpt2_fixture(const SynthOptions& options);

// A Gemma-2 checkpoint in the layout of google/gemma-2-2b: BF16 weights in sharded safetensors with
// model.safetensors.index.json, config.json, a SentencePiece tokenizer.model; Gemma Scope-layout JumpReLU
// SAEs on resid_post, two L0 variants per layer (saes/layer_L/width_W/average_l0_X/params.npz, X the
// average L0 measured on the corpus). sae_pattern is empty (X differs per layer): sae_dirs names the
// sparser variant of each layer, whose explanations are written under source "L-gemmascope-res-W".
SynthResult synth_gemma2_fixture(const SynthOptions& options);

// A small Llama-3-architecture checkpoint: byte-level BPE with Llama-3's pre-tokenizer and
// <|begin_of_text|> added by default, grouped-query attention, RoPE with llama3 scaling, an untied lm_head,
// and SAE-Lens ReLU SAEs on resid_post (sae_pattern is "<out>/saes/layer_{layer}").
SynthResult synth_llama_fixture(const SynthOptions& options);

// A small Gemma-3 checkpoint as transformers 5 writes Gemma3ForCausalLM (BF16, layer_types with a full-attention
// layer every third, per-kind rope_parameters, q/k norms, a SentencePiece tokenizer.model) and Gemma Scope
// 2-layout JumpReLU SAEs on resid_post: saes/resid_post/layer_L_width_W_l0_{small,big}/params.safetensors,
// calibrated on the corpus. sae_dirs names the sparser (small) variant of each layer.
SynthResult synth_gemma3_fixture(const SynthOptions& options);

// A small Qwen3ForCausalLM checkpoint as Qwen/Qwen3-1.7B-Base is saved (per-head q/k norms, grouped-query
// attention, tied embeddings, no BOS token in the tokenizer: config.json's bos_token_id is <|endoftext|>;
// byte-level BPE with Llama-3's pre-tokenizer pattern, which differs from Qwen's in splitting digits by three
// instead of one) and TopK SAEs on resid_post in SAE-Lens's folder layout, as SAE-Lens saves the Qwen Scope
// SAEs (sae_pattern is "<out>/saes/layer_{layer}").
SynthResult synth_qwen3_fixture(const SynthOptions& options);

// Random Gemma Scope 2-layout JumpReLU SAEs for every layer of an existing checkpoint (e.g. the real Gemma 3 270M of
// tests/realmodel/make_gemma3_270m.py), calibrated on its resid_mid over the demo corpus (run with BOS first,
// the <bos> rows left out) in per-dimension standardised coordinates, each feature firing on about
// options.firing_rate of the rows: <out>/resid_post/layer_L_width_W_l0_medium/params.safetensors, W the label
// of d_sae. No explanations.
SynthResult synth_gemma_scope2_saes(const std::string& model_dir, const SynthOptions& options);

// The English text the tokenizer is trained on and the SAEs are calibrated on.
const std::string& demo_corpus();

}  // namespace saetraj::synth
