#include "saetraj/sae/sae_lens.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "saetraj/core/error.h"
#include "saetraj/core/json_number.h"
#include "saetraj/io/safetensors.h"

namespace saetraj::sae {
namespace {

using nlohmann::json;

// A value looked up first at the top level of the cfg, then under "metadata" (SAE-Lens 6 moved the
// training-context keys there).
const json* find_key(const json& cfg, const char* key) {
  if (cfg.contains(key) && !cfg[key].is_null()) return &cfg[key];
  if (cfg.contains("metadata") && cfg["metadata"].is_object() && cfg["metadata"].contains(key) &&
      !cfg["metadata"][key].is_null()) {
    return &cfg["metadata"][key];
  }
  return nullptr;
}

template <typename T>
std::optional<T> get(const json& cfg, const char* key, const std::string& path) {
  const json* v = find_key(cfg, key);
  if (!v) return std::nullopt;
  try {
    if (!json_fits<T>(*v)) {
      throw FormatError(str(path, ": field \"", key, "\" must be an integer in range, got ", v->dump()));
    }
    return v->get<T>();
  } catch (const json::exception&) {
    throw FormatError(str(path, ": field \"", key, "\" has the wrong type (", v->type_name(), ")"));
  }
}

Normalization parse_normalization(const json* v, const std::string& path) {
  if (!v) return Normalization::None;
  if (v->is_boolean()) {
    // Older SAE-Lens: true meant scaling to an expected average norm, folded into the weights on save.
    return v->get<bool>() ? Normalization::ExpectedAverageOnlyIn : Normalization::None;
  }
  SAETRAJ_CHECK(v->is_string(), FormatError, path, ": normalize_activations must be a string or boolean");
  const std::string s = v->get<std::string>();
  if (s == "none") return Normalization::None;
  if (s == "layer_norm") return Normalization::LayerNorm;
  if (s == "constant_norm_rescale") return Normalization::ConstantNormRescale;
  if (s == "expected_average_only_in") return Normalization::ExpectedAverageOnlyIn;
  if (s == "constant_scalar_rescale") return Normalization::ConstantScalarRescale;
  throw InputError(str(path, ": normalize_activations \"", s,
                       "\" is not supported (none, layer_norm, constant_norm_rescale, expected_average_only_in, "
                       "constant_scalar_rescale)"));
}

constexpr const char* kSupported =
    "standard, jumprelu, topk (also with rescale_acts_by_decoder_norm), gated, batchtopk, matryoshka_batchtopk";

bool is_transcoder_architecture(const std::string& a) {
  return a == "transcoder" || a == "skip_transcoder" || a == "jumprelu_transcoder" ||
         a == "jumprelu_skip_transcoder";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The L2 norm of each row of W_dec [d_sae, d_in], read from the mapping a block of rows at a time: the
// decoder itself is never held in memory.
torch::Tensor decoder_row_norms(const io::SafetensorsFile& file, int64_t d_sae, int64_t d_in) {
  const auto& info = file.info("W_dec");
  SAETRAJ_CHECK(info.shape == std::vector<int64_t>({d_sae, d_in}), FormatError, "tensor 'W_dec' in ", file.path(),
                " has wrong shape; expected [", d_sae, ", ", d_in, "], got ", shape_text(info.shape));
  torch::ScalarType type;
  switch (info.dtype) {
    case io::DType::F32: type = torch::kFloat32; break;
    case io::DType::F16: type = torch::kFloat16; break;
    case io::DType::BF16: type = torch::kBFloat16; break;
    default:
      throw FormatError(str("tensor 'W_dec' in ", file.path(), " has dtype ", io::dtype_name(info.dtype),
                            "; expected F32, F16 or BF16"));
  }
  const auto* base = file.data("W_dec");
  const int64_t row_bytes = d_in * static_cast<int64_t>(io::dtype_size(info.dtype));
  auto norms = torch::empty({d_sae});
  constexpr int64_t kRows = 1024;
  for (int64_t r0 = 0; r0 < d_sae; r0 += kRows) {
    const int64_t r1 = std::min(d_sae, r0 + kRows);
    const auto block = torch::from_blob(const_cast<uint8_t*>(base) + r0 * row_bytes, {r1 - r0, d_in},
                                        torch::TensorOptions().dtype(type));
    norms.slice(0, r0, r1).copy_(block.to(torch::kFloat64).norm(2, 1));
  }
  return norms;
}

}  // namespace

SaeConfig read_sae_lens_config(const std::string& folder, const SaeLoadOptions& options) {
  const std::string path = folder + "/cfg.json";
  std::ifstream in(path);
  SAETRAJ_CHECK(in.good(), IoError, "cannot open ", path, " (an SAE-Lens folder holds cfg.json and sae_weights.safetensors)");
  std::stringstream text;
  text << in.rdbuf();
  json cfg;
  try {
    cfg = json::parse(text.str());
  } catch (const json::exception& e) {
    throw FormatError(str(path, ": not valid JSON (", e.what(), ")"));
  }
  SAETRAJ_CHECK(cfg.is_object(), FormatError, path, ": expected a JSON object");

  SaeConfig c;
  c.source = folder;
  c.d_in = get<int64_t>(cfg, "d_in", path).value_or(0);
  c.d_sae = get<int64_t>(cfg, "d_sae", path).value_or(0);
  SAETRAJ_CHECK(c.d_in > 0, FormatError, path, ": missing or non-positive \"d_in\"");
  SAETRAJ_CHECK(c.d_sae > 0, FormatError, path, ": missing or non-positive \"d_sae\"");

  c.hook_name = get<std::string>(cfg, "hook_name", path).value_or(get<std::string>(cfg, "hook_point", path).value_or(""));
  SAETRAJ_CHECK(!c.hook_name.empty(), FormatError, path, ": no \"hook_name\" (or \"hook_point\") says which activations the SAE reads");
  parse_hook_name(c.hook_name, &c.hook_layer, &c.hook_kind);
  if (c.hook_layer < 0) {
    c.hook_layer = get<int>(cfg, "hook_layer", path).value_or(get<int>(cfg, "hook_point_layer", path).value_or(-1));
  }

  // Architecture: "architecture" (SAE-Lens >= 3), else activation_fn_str.
  const std::string architecture = get<std::string>(cfg, "architecture", path).value_or("");
  const std::string act_fn = get<std::string>(cfg, "activation_fn_str", path)
                                 .value_or(get<std::string>(cfg, "activation_fn", path).value_or("relu"));
  c.architecture = architecture.empty() ? "standard" : architecture;
  if (is_transcoder_architecture(architecture)) {
    // Read far enough for `saetraj info`; require_residual_hook refuses it for a sweep.
    c.hook_name_out = get<std::string>(cfg, "hook_name_out", path).value_or("its output");
    c.activation = Activation::JumpReLU;
  } else if (architecture == "jumprelu" || act_fn == "jumprelu" || architecture == "gated" ||
             architecture == "batchtopk" || architecture == "matryoshka_batchtopk") {
    c.activation = Activation::JumpReLU;  // gated and batch top-k are folded into JumpReLU at load
  } else if (architecture == "topk" || act_fn == "topk") {
    c.activation = Activation::TopK;
  } else if (architecture.empty() || architecture == "standard") {
    SAETRAJ_CHECK(act_fn == "relu", InputError, path, ": activation function \"", act_fn,
                  "\" is not supported (relu, jumprelu, topk)");
    c.activation = Activation::ReLU;
  } else {
    throw InputError(str(path, ": SAE architecture \"", architecture, "\" is not supported (", kSupported, ")"));
  }
  if (c.activation == Activation::TopK) {
    std::optional<int64_t> k = get<int64_t>(cfg, "k", path);
    if (!k) {
      const json* kwargs = find_key(cfg, "activation_fn_kwargs");
      if (kwargs && kwargs->is_object() && kwargs->contains("k")) {
        SAETRAJ_CHECK(json_fits<int64_t>((*kwargs)["k"]), FormatError, path,
                      ": activation_fn_kwargs.k must be an integer, got ", (*kwargs)["k"].dump());
        k = (*kwargs)["k"].get<int64_t>();
      }
    }
    SAETRAJ_CHECK(k && *k > 0, FormatError, path, ": a topk SAE needs a positive \"k\" (or activation_fn_kwargs.k)");
    c.topk_k = *k;
  }
  // SAE-Lens's training configs of the top-k family default to true; its inference topk config to false.
  const bool batch_topk = architecture == "batchtopk" || architecture == "matryoshka_batchtopk";
  if (c.activation == Activation::TopK || batch_topk) {
    c.rescale_by_decoder_norm = get<bool>(cfg, "rescale_acts_by_decoder_norm", path).value_or(batch_topk);
  }
  const std::string reshape = get<std::string>(cfg, "reshape_activations", path).value_or("none");
  if (reshape == "hook_z") c.hook_kind = HookKind::HookZ;

  c.apply_b_dec_to_input = get<bool>(cfg, "apply_b_dec_to_input", path).value_or(true);
  c.normalization = parse_normalization(find_key(cfg, "normalize_activations"), path);
  if (c.normalization == Normalization::ConstantScalarRescale) {
    const json* factor = find_key(cfg, "activation_normalization_factor");
    SAETRAJ_CHECK(factor && factor->is_number() && factor->get<double>() > 0 && std::isfinite(factor->get<double>()),
                  FormatError, path,
                  ": normalize_activations constant_scalar_rescale needs a positive \"activation_normalization_factor\"");
    c.input_scale = factor->get<double>();
  }
  c.format = "sae-lens";
  c.prepend_bos = get<bool>(cfg, "prepend_bos", path);
  c.model_name = get<std::string>(cfg, "model_name", path).value_or("");
  c.neuronpedia_id = get<std::string>(cfg, "neuronpedia_id", path).value_or("");
  c.id = c.neuronpedia_id.empty() ? std::filesystem::path(folder).lexically_normal().string() : c.neuronpedia_id;

  // TransformerLens centres the residual stream when it loads a model with center_writing_weights
  // (its default for LayerNorm models such as GPT-2); SAEs trained on that stream expect centred inputs.
  if (options.center_residual) {
    c.center_residual = *options.center_residual;
  } else {
    const json* kwargs = find_key(cfg, "model_from_pretrained_kwargs");
    if (kwargs && kwargs->is_object() && kwargs->contains("center_writing_weights")) {
      const json& centre = (*kwargs)["center_writing_weights"];
      SAETRAJ_CHECK(centre.is_boolean(), FormatError, path,
                    ": model_from_pretrained_kwargs.center_writing_weights must be true or false, got ", centre.dump());
      c.center_residual = centre.get<bool>();
    } else {
      c.center_residual = c.model_name.rfind("gpt2", 0) == 0;
    }
  }
  return c;
}

Sae load_sae_lens(const std::string& folder, const SaeLoadOptions& options) {
  return with_context(str("while loading the SAE in ", folder), [&] {
    Sae sae;
    sae.cfg = read_sae_lens_config(folder, options);
    require_residual_hook(sae.cfg);
    const std::string path = folder + "/sae_weights.safetensors";
    const auto file = io::SafetensorsFile::open(path);
    const int64_t d_in = sae.cfg.d_in, d_sae = sae.cfg.d_sae;
    const std::string& arch = sae.cfg.architecture;
    sae.w_enc = file->load("W_enc", {d_in, d_sae});
    sae.b_dec = file->load("b_dec", {d_in});
    if (arch == "gated") {
      // sae.h, [NOTE] Folding at load: gated = JumpReLU(W e^r_mag, b_mag, b_mag - e^r_mag b_gate).
      const auto b_gate = file->load("b_gate", {d_sae});
      const auto gain = file->load("r_mag", {d_sae}).exp();
      sae.b_enc = file->load("b_mag", {d_sae});
      sae.threshold = sae.b_enc - gain * b_gate;
      sae.w_enc.mul_(gain.unsqueeze(0));
      sae.cfg.folded.push_back("gated (W_enc*exp(r_mag), b_mag, threshold b_mag - exp(r_mag)*b_gate)");
    } else {
      sae.b_enc = file->load("b_enc", {d_sae});
    }
    if (sae.cfg.activation == Activation::JumpReLU && arch != "gated") {
      if (file->contains("threshold")) {
        sae.threshold = file->load("threshold", {d_sae});
      } else if (file->contains("log_threshold")) {
        sae.threshold = file->load("log_threshold", {d_sae}).exp();
      } else if (file->contains("topk_threshold") && arch != "jumprelu") {
        // A batch top-k training checkpoint: one threshold for every feature (what SAE-Lens saves as jumprelu).
        sae.threshold = torch::full({d_sae}, file->load("topk_threshold", std::vector<int64_t>{}).item<double>());
        sae.cfg.folded.push_back("topk_threshold as a JumpReLU threshold");
      } else {
        throw FormatError(str(path, ": a ", arch, " SAE needs a 'threshold' (or 'log_threshold'",
                              arch == "jumprelu" ? "" : ", or 'topk_threshold'", ") tensor"));
      }
    }
    // A saved batch top-k SAE (threshold present) was already folded by SAE-Lens on save.
    const bool already_folded = arch != "topk" && file->contains("threshold");
    if (sae.cfg.rescale_by_decoder_norm && !already_folded) {
      SAETRAJ_CHECK(file->contains("W_dec"), FormatError, path,
                    ": rescale_acts_by_decoder_norm needs 'W_dec' (its row norms scale the pre-activations)");
      fold_feature_scale(sae, decoder_row_norms(*file, d_sae, d_in).to(torch::kFloat32));
      sae.cfg.folded.push_back("decoder row norms (rescale_acts_by_decoder_norm)");
    }
    if (sae.cfg.normalization == Normalization::ConstantScalarRescale) {
      fold_input_scale(sae, sae.cfg.input_scale);
    }
    return sae;
  });
}

}  // namespace saetraj::sae
