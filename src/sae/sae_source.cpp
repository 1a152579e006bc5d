#include "saetraj/sae/sae_source.h"

#include <filesystem>

namespace saetraj::sae {

namespace {
template <typename Options>
Options with_layer(Options o, int layer) {
  if (!o.layer) o.layer = layer;
  return o;
}
}  // namespace

bool is_sae_path(const std::string& path) {
  return is_gemma_scope(path) || is_gemma_scope2(path) || is_llama_scope(path) || is_sparsify(path) ||
         (std::filesystem::is_directory(path) && std::filesystem::exists(std::filesystem::path(path) / "cfg.json"));
}

SaeConfig inspect_sae(const std::string& path, int layer, const SaeSourceOptions& options) {
  if (is_gemma_scope(path)) return read_gemma_scope_config(path, with_layer(options.gemma_scope, layer));
  if (is_gemma_scope2(path)) return read_gemma_scope2_config(path, with_layer(options.gemma_scope2, layer));
  if (is_llama_scope(path)) return read_llama_scope_config(path);
  if (is_sparsify(path)) return read_sparsify_config(path);
  return read_sae_lens_config(path, options.sae_lens);
}

SaeConfig read_sae_config(const std::string& path, int layer, const SaeSourceOptions& options) {
  auto cfg = inspect_sae(path, layer, options);
  require_residual_hook(cfg);
  return cfg;
}

Sae load_sae(const std::string& path, int layer, const SaeSourceOptions& options) {
  if (is_gemma_scope(path)) {
    const auto gemma_scope = with_layer(options.gemma_scope, layer);
    require_residual_hook(read_gemma_scope_config(path, gemma_scope));  // a transcoder, before its arrays are read
    return load_gemma_scope(path, gemma_scope);
  }
  if (is_gemma_scope2(path)) return load_gemma_scope2(path, with_layer(options.gemma_scope2, layer));
  if (is_llama_scope(path)) return load_llama_scope(path);
  if (is_sparsify(path)) return load_sparsify(path);
  return load_sae_lens(path, options.sae_lens);
}

std::string gemma_scope_model_id(int64_t d_model, const std::string& model_folder) {
  switch (d_model) {
    case 2304:
      return "gemma-2-2b";
    case 3584:
      return "gemma-2-9b";
    case 4608:
      return "gemma-2-27b";
    default:
      break;
  }
  auto folder = std::filesystem::path(model_folder).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();  // "dir/" names "dir"
  return folder.filename().string();
}

}  // namespace saetraj::sae
