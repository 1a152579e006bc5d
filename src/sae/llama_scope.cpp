#include "saetraj/sae/llama_scope.h"

#include <cmath>
#include <filesystem>
#include <regex>

#include "json_file.h"
#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/sae/gemma_scope.h"

namespace saetraj::sae {
namespace {

namespace fs = std::filesystem;

std::string weights_path(const std::string& folder) {
  return (fs::path(folder) / "checkpoints" / "final.safetensors").string();
}

}  // namespace

bool is_llama_scope(const std::string& path) {
  return fs::is_directory(path) && fs::is_regular_file(fs::path(path) / "hyperparams.json");
}

SaeConfig read_llama_scope_config(const std::string& folder) {
  const std::string path = (fs::path(folder) / "hyperparams.json").string();
  const auto hp = detail::read_json_object(path);
  SaeConfig c;
  c.source = folder;
  c.format = "llama-scope";
  c.d_in = detail::positive_int(hp, "d_model", path);
  c.d_sae = detail::positive_int(hp, "d_sae", path);
  c.hook_name = detail::field_or<std::string>(hp, "hook_point_in", "", path);
  SAETRAJ_CHECK(!c.hook_name.empty(), FormatError, path, ": missing field \"hook_point_in\"");
  parse_hook_name(c.hook_name, &c.hook_layer, &c.hook_kind);
  const auto hook_out = detail::field_or<std::string>(hp, "hook_point_out", c.hook_name, path);
  if (hook_out != c.hook_name) c.hook_name_out = hook_out;  // a transcoder (LXTC)

  const auto act_fn = detail::field_or<std::string>(hp, "act_fn", "jumprelu", path);
  c.architecture = act_fn;
  if (act_fn == "jumprelu") {
    c.activation = Activation::JumpReLU;
    SAETRAJ_CHECK(hp.contains("jump_relu_threshold") && hp["jump_relu_threshold"].is_number(), FormatError, path,
                  ": a jumprelu SAE needs a numeric \"jump_relu_threshold\"");
  } else if (act_fn == "relu") {
    c.activation = Activation::ReLU;
  } else {
    throw InputError(str(path, ": act_fn \"", act_fn, "\" is not supported for Llama Scope (jumprelu, relu)"));
  }
  c.apply_b_dec_to_input = detail::field_or<bool>(hp, "apply_decoder_bias_to_pre_encoder", false, path);

  const auto norm = detail::field_or<std::string>(hp, "norm_activation", "dataset-wise", path);
  if (norm == "dataset-wise") {
    SAETRAJ_CHECK(hp.contains("dataset_average_activation_norm") && hp["dataset_average_activation_norm"].is_object() &&
                      hp["dataset_average_activation_norm"].contains("in") &&
                      hp["dataset_average_activation_norm"]["in"].is_number(),
                  FormatError, path, ": norm_activation \"dataset-wise\" needs dataset_average_activation_norm.in");
    const double in_norm = hp["dataset_average_activation_norm"]["in"].get<double>();
    SAETRAJ_CHECK(in_norm > 0 && std::isfinite(in_norm), FormatError, path,
                  ": dataset_average_activation_norm.in must be positive, got ", in_norm);
    c.normalization = Normalization::ConstantScalarRescale;
    c.input_scale = std::sqrt(static_cast<double>(c.d_in)) / in_norm;
  } else if (norm == "token-wise") {
    c.normalization = Normalization::ConstantNormRescale;
  } else if (norm == "inference" || norm == "none") {
    c.normalization = Normalization::None;
  } else {
    throw InputError(str(path, ": norm_activation \"", norm,
                         "\" is not supported (dataset-wise, token-wise, inference, none)"));
  }
  c.prepend_bos = true;
  c.model_name = "meta-llama/Llama-3.1-8B";
  // Neuronpedia names the residual ones "llama3.1-8b/<L>-llamascope-res-<width>".
  if (c.hook_kind == HookKind::ResidPost && !c.is_transcoder() && c.hook_layer >= 0) {
    c.neuronpedia_id = "llama3.1-8b/" + std::to_string(c.hook_layer) + "-llamascope-res-" +
                       gemma_scope_width_label(c.d_sae);
  }
  auto name = fs::path(folder).lexically_normal();
  if (name.filename().empty()) name = name.parent_path();
  c.id = c.neuronpedia_id.empty() ? name.filename().string() : c.neuronpedia_id;
  return c;
}

Sae load_llama_scope(const std::string& folder) {
  return with_context(str("while loading the Llama Scope SAE in ", folder), [&] {
    Sae s;
    s.cfg = read_llama_scope_config(folder);
    require_residual_hook(s.cfg);
    const auto file = io::SafetensorsFile::open(weights_path(folder));
    const int64_t d = s.cfg.d_in, w = s.cfg.d_sae;
    s.w_enc = file->load("encoder.weight", {w, d}).t().contiguous();
    s.b_enc = file->load("encoder.bias", {w});
    s.b_dec = file->contains("decoder.bias") ? file->load("decoder.bias", {d}) : torch::zeros({d});
    SAETRAJ_CHECK(file->contains("decoder.bias") || !s.cfg.apply_b_dec_to_input, FormatError, file->path(),
                  ": apply_decoder_bias_to_pre_encoder is true but there is no 'decoder.bias'");
    const double scale = s.cfg.normalization == Normalization::ConstantScalarRescale ? s.cfg.input_scale : 1.0;
    if (s.cfg.activation == Activation::JumpReLU) {
      const auto hp = detail::read_json_object((fs::path(folder) / "hyperparams.json").string());
      s.threshold = torch::full({w}, hp["jump_relu_threshold"].get<double>() * scale);
      if (scale != 1.0) s.cfg.folded.push_back("jump_relu_threshold x input scale");
    }
    if (s.cfg.normalization == Normalization::ConstantScalarRescale) fold_input_scale(s, scale);
    return s;
  });
}

}  // namespace saetraj::sae
