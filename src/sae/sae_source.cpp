#include "saetraj/sae/sae_source.h"

#include <filesystem>

namespace saetraj::sae {

namespace {
GemmaScopeOptions with_layer(GemmaScopeOptions o, int layer) {
  if (!o.layer) o.layer = layer;
  return o;
}
}  // namespace

SaeConfig read_sae_config(const std::string& path, int layer, const SaeSourceOptions& options) {
  if (is_gemma_scope(path)) return read_gemma_scope_config(path, with_layer(options.gemma_scope, layer));
  return read_sae_lens_config(path, options.sae_lens);
}

Sae load_sae(const std::string& path, int layer, const SaeSourceOptions& options) {
  if (is_gemma_scope(path)) return load_gemma_scope(path, with_layer(options.gemma_scope, layer));
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
