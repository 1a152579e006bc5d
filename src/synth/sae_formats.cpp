#include "saetraj/synth/sae_formats.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"

namespace saetraj::synth {
namespace {

namespace fs = std::filesystem;

void write_json(const fs::path& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  SAETRAJ_CHECK(out.good(), IoError, "cannot write ", path.string());
}

}  // namespace

RawSae random_raw_sae(int64_t d, int64_t width, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  RawSae s;
  s.w_enc = torch::randn({d, width}, gen) / std::sqrt(static_cast<double>(d));
  const auto row_norms = 0.5 + 1.5 * torch::rand({width, 1}, gen);
  const auto w_dec = torch::randn({width, d}, gen);
  s.w_dec = w_dec / w_dec.norm(2, 1, true) * row_norms;
  s.b_enc = torch::randn({width}, gen) * 0.2 - 0.1;
  s.b_dec = torch::randn({d}, gen) * 0.2;
  s.threshold = torch::rand({width}, gen) * 0.3;
  return s;
}

std::string write_gemma_scope2_sae(const std::string& root, const GemmaScope2Spec& spec, const RawSae& sae) {
  const fs::path dir = fs::path(root) / spec.site /
                       ("layer_" + std::to_string(spec.layer) + "_width_" + spec.width + "_l0_" + spec.l0);
  fs::create_directories(dir);
  io::write_safetensors((dir / "params.safetensors").string(), {{"w_enc", sae.w_enc},
                                                                {"w_dec", sae.w_dec},
                                                                {"b_enc", sae.b_enc},
                                                                {"b_dec", sae.b_dec},
                                                                {"threshold", sae.threshold}});
  if (spec.config_json) {
    const std::string L = std::to_string(spec.layer);
    nlohmann::json cfg{{"architecture", "jump_relu"}, {"model_name", spec.model_name}};
    if (spec.site.rfind("resid_post", 0) == 0) {
      cfg["hf_hook_point_in"] = "model.layers." + L + ".output";
    } else if (spec.site.rfind("attn_out", 0) == 0) {
      cfg["hf_hook_point_in"] = "model.layers." + L + ".self_attn.o_proj.input";
    } else if (spec.site.rfind("mlp_out", 0) == 0) {
      cfg["hf_hook_point_in"] = "model.layers." + L + ".post_feedforward_layernorm.output";
    } else {
      cfg["hf_hook_point_in"] = "model.layers." + L + ".pre_feedforward_layernorm.output";
      cfg["hf_hook_point_out"] = "model.layers." + L + ".post_feedforward_layernorm.output";
      cfg["affine_connection"] = false;
    }
    write_json(dir / "config.json", cfg);
  }
  return dir.string();
}

std::string write_llama_scope_sae(const std::string& root, const LlamaScopeSpec& spec, const RawSae& sae) {
  const std::string L = std::to_string(spec.layer);
  const fs::path dir = fs::path(root) / ("Llama3_1-8B-Base-L" + L + spec.position + "-" +
                                         std::to_string(spec.expansion) + "x");
  fs::create_directories(dir / "checkpoints");
  std::string hook_in = "blocks." + L + ".hook_resid_post", hook_out = hook_in;
  if (spec.position == "A") hook_in = hook_out = "blocks." + L + ".hook_attn_out";
  if (spec.position == "M") hook_in = hook_out = "blocks." + L + ".hook_mlp_out";
  if (spec.position == "TC") hook_in = "blocks." + L + ".ln2.hook_normalized", hook_out = "blocks." + L + ".hook_mlp_out";
  // The fields of the published hyperparams.json (training-only ones included, as they appear there).
  nlohmann::json hp{{"d_model", sae.w_enc.size(0)},
                    {"d_sae", sae.w_enc.size(1)},
                    {"hook_point_in", hook_in},
                    {"hook_point_out", hook_out},
                    {"use_decoder_bias", true},
                    {"apply_decoder_bias_to_pre_encoder", false},
                    {"act_fn", "jumprelu"},
                    {"jump_relu_threshold", spec.jump_relu_threshold},
                    {"norm_activation", spec.norm_activation},
                    {"dataset_average_activation_norm", {{"in", spec.average_norm_in}, {"out", spec.average_norm_out}}},
                    {"init_encoder_with_decoder_transpose", true},
                    {"decoder_exactly_fixed_norm", false},
                    {"sparsity_include_decoder_norm", true},
                    {"top_k", 50}};
  write_json(dir / "hyperparams.json", hp);
  io::write_safetensors((dir / "checkpoints" / "final.safetensors").string(),
                        {{"encoder.weight", sae.w_enc.t().contiguous()},
                         {"encoder.bias", sae.b_enc},
                         {"decoder.weight", sae.w_dec.t().contiguous()},
                         {"decoder.bias", sae.b_dec}},
                        {}, spec.storage);
  return dir.string();
}

std::string write_sparsify_sae(const std::string& root, const SparsifySpec& spec, const RawSae& sae) {
  const fs::path dir = fs::path(root) / spec.hookpoint;
  fs::create_directories(dir);
  const int64_t d = sae.w_enc.size(0), width = sae.w_enc.size(1);
  // SparseCoderConfig.to_dict() plus d_in, as SparseCoder.save_to_disk writes it.
  nlohmann::json cfg{{"activation", spec.activation}, {"expansion_factor", width / d}, {"normalize_decoder", true},
                     {"num_latents", width},          {"k", spec.k},                  {"multi_topk", false},
                     {"skip_connection", false},      {"transcode", spec.transcode},  {"d_in", d}};
  write_json(dir / "cfg.json", cfg);
  io::write_safetensors((dir / "sae.safetensors").string(), {{"encoder.weight", sae.w_enc.t().contiguous()},
                                                            {"encoder.bias", sae.b_enc},
                                                            {"W_dec", sae.w_dec},
                                                            {"b_dec", sae.b_dec}});
  if (!spec.model.empty()) write_json(fs::path(root) / "config.json", {{"model", spec.model}, {"ctx_len", 2048}});
  return dir.string();
}

void write_sae_lens_sae(const std::string& folder, nlohmann::json cfg, const std::string& hook_name,
                        const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  fs::create_directories(folder);
  int64_t d = 0, width = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "W_enc") d = t.size(0), width = t.size(1);
  }
  cfg["d_in"] = d;
  cfg["d_sae"] = width;
  cfg["dtype"] = "float32";
  cfg["device"] = "cpu";
  cfg["metadata"] = {{"hook_name", hook_name}, {"model_name", "synthetic-model"}, {"prepend_bos", true}};
  write_json(fs::path(folder) / "cfg.json", cfg);
  io::write_safetensors((fs::path(folder) / "sae_weights.safetensors").string(), tensors);
}

RawTranscoder random_raw_transcoder(int64_t d_in, int64_t d_out, int64_t width, bool skip, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  RawTranscoder t;
  t.w_enc = torch::randn({d_in, width}, gen) / std::sqrt(static_cast<double>(d_in));
  t.b_enc = torch::randn({width}, gen) * 0.3 - 0.4;
  const auto row_norms = 0.5 + 1.5 * torch::rand({width, 1}, gen);
  const auto w_dec = torch::randn({width, d_out}, gen);
  t.w_dec = w_dec / w_dec.norm(2, 1, true) * row_norms;
  t.b_dec = torch::randn({d_out}, gen) * 0.2;
  t.threshold = torch::rand({width}, gen) * 0.3;
  if (skip) t.w_skip = torch::randn({d_out, d_in}, gen) * (0.2 / std::sqrt(static_cast<double>(d_in)));
  return t;
}

void write_sae_lens_transcoder(const std::string& folder, const std::string& architecture, int layer,
                               const RawTranscoder& t) {
  fs::create_directories(folder);
  const std::string L = std::to_string(layer);
  nlohmann::json cfg{{"d_in", t.w_enc.size(0)},
                     {"d_sae", t.w_enc.size(1)},
                     {"d_out", t.w_dec.size(1)},
                     {"dtype", "float32"},
                     {"device", "cpu"},
                     {"apply_b_dec_to_input", false},
                     {"normalize_activations", "none"},
                     {"reshape_activations", "none"},
                     {"architecture", architecture},
                     {"metadata",
                      {{"model_name", "synthetic-model"},
                       {"hook_name", "blocks." + L + ".ln2.hook_normalized"},
                       {"hook_name_out", "blocks." + L + ".hook_mlp_out"},
                       {"prepend_bos", true}}}};
  write_json(fs::path(folder) / "cfg.json", cfg);
  std::vector<std::pair<std::string, torch::Tensor>> tensors{
      {"W_enc", t.w_enc}, {"b_enc", t.b_enc}, {"W_dec", t.w_dec}, {"b_dec", t.b_dec}};
  if (architecture.rfind("jumprelu", 0) == 0) tensors.emplace_back("threshold", t.threshold);
  if (architecture.find("skip") != std::string::npos) tensors.emplace_back("W_skip", t.w_skip);
  io::write_safetensors((fs::path(folder) / "sae_weights.safetensors").string(), tensors);
}

std::string write_gemma_scope_transcoder(const std::string& root, int layer, const std::string& width, int l0,
                                         const RawTranscoder& t) {
  const fs::path dir = fs::path(root) / ("layer_" + std::to_string(layer)) / ("width_" + width) /
                       ("average_l0_" + std::to_string(l0));
  fs::create_directories(dir);
  io::write_npz((dir / "params.npz").string(), {{"W_enc", t.w_enc},
                                                {"W_dec", t.w_dec},
                                                {"b_enc", t.b_enc},
                                                {"b_dec", t.b_dec},
                                                {"threshold", t.threshold}});
  return dir.string();
}

std::string write_gemma_scope2_transcoder(const std::string& root, const GemmaScope2Spec& spec,
                                          const RawTranscoder& t) {
  const bool affine = t.w_skip.defined();
  const fs::path dir = fs::path(root) / spec.site /
                       ("layer_" + std::to_string(spec.layer) + "_width_" + spec.width + "_l0_" + spec.l0 +
                        (affine ? "_affine" : ""));
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors{
      {"w_enc", t.w_enc}, {"w_dec", t.w_dec}, {"b_enc", t.b_enc}, {"b_dec", t.b_dec}, {"threshold", t.threshold}};
  if (affine) tensors.emplace_back("affine_skip_connection", t.w_skip.t().contiguous());
  io::write_safetensors((dir / "params.safetensors").string(), tensors);
  if (spec.config_json) {
    const std::string L = std::to_string(spec.layer);
    write_json(dir / "config.json", {{"architecture", "jump_relu"},
                                     {"model_name", spec.model_name},
                                     {"hf_hook_point_in", "model.layers." + L + ".pre_feedforward_layernorm.output"},
                                     {"hf_hook_point_out", "model.layers." + L + ".post_feedforward_layernorm.output"},
                                     {"affine_connection", affine}});
  }
  return dir.string();
}

}  // namespace saetraj::synth
