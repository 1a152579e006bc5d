#include "saetraj/sae/sparsify.h"

#include <filesystem>
#include <regex>

#include "json_file.h"
#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"

namespace saetraj::sae {
namespace {

namespace fs = std::filesystem;

std::string folder_name(const std::string& folder) {
  auto p = fs::absolute(folder).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// The TransformerLens hook of a sparsify hookpoint (a module path relative to the base model).
std::string hook_of(const std::string& hookpoint, const std::string& path) {
  static const std::regex layer(R"(^(?:model\.|transformer\.|gpt_neox\.)?(?:layers|h)\.(\d+)(\.[A-Za-z_.]+)?$)");
  if (hookpoint == "embed_tokens" || hookpoint == "model.embed_tokens" || hookpoint == "wte") {
    return "blocks.0.hook_resid_pre";
  }
  std::smatch m;
  SAETRAJ_CHECK(std::regex_match(hookpoint, m, layer), InputError, path,
                ": cannot tell which activations this sparsify SAE reads from its folder name \"", hookpoint,
                "\" (sparsify names each SAE's folder after its hookpoint, e.g. layers.6)");
  const std::string L = m[1].str(), sub = m[2].str();
  if (sub.empty()) return "blocks." + L + ".hook_resid_post";
  if (sub == ".mlp") return "blocks." + L + ".hook_mlp_out";
  if (sub == ".self_attn" || sub == ".attn") return "blocks." + L + ".hook_attn_out";
  return "blocks." + L + "." + sub.substr(1);  // another submodule: named as it is, refused as non-residual
}

}  // namespace

bool is_sparsify(const std::string& path) {
  return fs::is_directory(path) && fs::is_regular_file(fs::path(path) / "cfg.json") &&
         fs::is_regular_file(fs::path(path) / "sae.safetensors");
}

SaeConfig read_sparsify_config(const std::string& folder) {
  const std::string path = (fs::path(folder) / "cfg.json").string();
  const auto cfg = detail::read_json_object(path);
  SaeConfig c;
  c.source = folder;
  c.format = "sparsify";
  c.d_in = detail::positive_int(cfg, "d_in", path);
  const int64_t latents = detail::field_or<int64_t>(cfg, "num_latents", 0, path);
  if (latents > 0) {
    c.d_sae = latents;
  } else {
    c.d_sae = c.d_in * detail::positive_int(cfg, "expansion_factor", path);
  }
  c.architecture = detail::field_or<std::string>(cfg, "activation", "topk", path);
  SAETRAJ_CHECK(c.architecture == "topk", InputError, path, ": sparsify activation \"", c.architecture,
                "\" is not supported (topk)");
  SAETRAJ_CHECK(!detail::field_or<bool>(cfg, "signed", false, path), InputError, path,
                ": signed sparsify SAEs (negative activations) are not supported");
  c.activation = Activation::TopK;
  c.topk_k = detail::positive_int(cfg, "k", path);
  const bool transcode = detail::field_or<bool>(cfg, "transcode", false, path);
  c.apply_b_dec_to_input = !transcode;
  c.normalization = Normalization::None;
  c.prepend_bos = std::nullopt;  // sparsify keeps the tokenizer's default
  const std::string hookpoint = folder_name(folder);
  c.hook_name = hook_of(hookpoint, path);
  parse_hook_name(c.hook_name, &c.hook_layer, &c.hook_kind);
  if (transcode) c.hook_name_out = c.hook_name + " (predicted output of " + hookpoint + ")";
  const fs::path run_config = fs::absolute(folder).lexically_normal().parent_path() / "config.json";
  if (fs::is_regular_file(run_config)) {
    const auto run = detail::read_json_object(run_config.string());
    c.model_name = detail::field_or<std::string>(run, "model", "", run_config.string());
  }
  c.id = (c.model_name.empty() ? std::string() : c.model_name + "/") + hookpoint;
  return c;
}

Sae load_sparsify(const std::string& folder) {
  return with_context(str("while loading the sparsify SAE in ", folder), [&] {
    Sae s;
    s.cfg = read_sparsify_config(folder);
    require_residual_hook(s.cfg);
    const auto file = io::SafetensorsFile::open((fs::path(folder) / "sae.safetensors").string());
    const int64_t d = s.cfg.d_in, w = s.cfg.d_sae;
    s.w_enc = file->load("encoder.weight", {w, d}).t().contiguous();
    s.b_enc = file->load("encoder.bias", {w});
    s.b_dec = file->load("b_dec", {d});
    return s;
  });
}

}  // namespace saetraj::sae
