#include "saetraj/sae/gemma_scope2.h"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <vector>

#include "json_file.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/sae/gemma_scope.h"

namespace saetraj::sae {
namespace {

namespace fs = std::filesystem;

std::string params_file(const std::string& path) {
  return fs::is_directory(path) ? (fs::path(path) / "params.safetensors").string() : path;
}

// "layer_12_width_16k_l0_medium", with the suffixes the release also has ("_affine", "_seed_1").
const std::regex& folder_pattern() {
  static const std::regex p(R"(^layer_(\d+)_width_([0-9]+[km]?)_l0_([a-z]+)((_affine)?(_seed_\d+)?)$)");
  return p;
}

// Which hook the SAE reads: from config.json's hf_hook_point_in when there is one, else from the site folder
// (the same inference SAE-Lens makes for folders without a config.json).
struct Site {
  std::string name;  // "resid_post", "attn_out", "mlp_out", "transcoder", or empty when unknown
  bool transcoder = false;
};

Site site_from_folder(const fs::path& sae_dir) {
  const std::string parent = sae_dir.parent_path().filename().string();
  for (const char* s : {"resid_post", "attn_out", "mlp_out"}) {
    if (parent == s || parent == std::string(s) + "_all") return {s, false};
  }
  if (parent.rfind("transcoder", 0) == 0 || parent.rfind("clt", 0) == 0) return {"transcoder", true};
  return {};
}

Site site_from_hf_hook(const std::string& hook, bool has_out, const std::string& path) {
  static const std::regex layer_output(R"(^model\.layers\.\d+\.output$)");
  if (has_out) return {"transcoder", true};
  if (std::regex_match(hook, layer_output)) return {"resid_post", false};
  if (hook.find("self_attn.o_proj.input") != std::string::npos) return {"attn_out", false};
  if (hook.find("post_feedforward_layernorm.output") != std::string::npos) return {"mlp_out", false};
  throw FormatError(str(path, ": hf_hook_point_in \"", hook, "\" is none of the hooks Gemma Scope 2 uses"));
}

}  // namespace

bool is_gemma_scope2(const std::string& path) {
  const std::string file = params_file(path);
  return fs::is_regular_file(file) && fs::path(file).filename() == "params.safetensors";
}

std::string gemma_scope2_model_id(int64_t d_model, const std::string& model_folder) {
  switch (d_model) {
    case 640: return "gemma-3-270m";
    case 1152: return "gemma-3-1b";
    case 2560: return "gemma-3-4b";
    case 3840: return "gemma-3-12b";
    case 5376: return "gemma-3-27b";
    default: break;
  }
  auto folder = fs::path(model_folder).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();
  return folder.filename().string();
}

SaeConfig read_gemma_scope2_config(const std::string& path, const GemmaScope2Options& options) {
  const std::string file = params_file(path);
  SAETRAJ_CHECK(fs::is_regular_file(file), IoError, "no Gemma Scope 2 params.safetensors at ", file);
  const fs::path dir = fs::absolute(file).lexically_normal().parent_path();
  const auto weights = io::SafetensorsFile::open(file);
  for (const char* name : {"w_enc", "b_enc", "b_dec", "threshold"}) {
    SAETRAJ_CHECK(weights->contains(name), FormatError, file, ": missing tensor '", name,
                  "' (a Gemma Scope 2 params.safetensors holds w_enc, w_dec, b_enc, b_dec, threshold)");
  }
  SaeConfig c = gemma_scope_jumprelu_config(file, "gemma-scope-2", "jump_relu", "tensor 'w_enc'",
                                            weights->info("w_enc").shape, options.model_id);

  std::smatch m;
  const std::string folder = dir.filename().string();
  const bool named = std::regex_match(folder, m, folder_pattern());
  int layer = named ? std::stoi(m[1].str()) : options.layer.value_or(-1);
  const std::string width = named ? m[2].str() : gemma_scope_width_label(c.d_sae);

  Site site = site_from_folder(dir);
  const fs::path config_path = dir / "config.json";
  if (fs::is_regular_file(config_path)) {
    const auto cfg = detail::read_json_object(config_path.string());
    const auto arch = detail::field_or<std::string>(cfg, "architecture", "", config_path.string());
    SAETRAJ_CHECK(arch == "jump_relu", InputError, config_path.string(), ": architecture \"", arch,
                  "\" is not Gemma Scope 2's jump_relu");
    const auto hook_in = detail::field_or<std::string>(cfg, "hf_hook_point_in", "", config_path.string());
    if (!hook_in.empty()) {
      site = site_from_hf_hook(hook_in, cfg.contains("hf_hook_point_out"), config_path.string());
      static const std::regex layer_in_hook(R"(^model\.layers\.(\d+)\.)");
      std::smatch lm;
      if (std::regex_search(hook_in, lm, layer_in_hook)) layer = std::stoi(lm[1].str());
    }
    std::string model = detail::field_or<std::string>(cfg, "model_name", "", config_path.string());
    if (!model.empty()) {
      if (model.rfind("google/", 0) == 0) model = model.substr(7);
      c.model_name = model;
    }
  }
  SAETRAJ_CHECK(layer >= 0, InputError, file,
                ": cannot tell the layer (no 'layer_L_width_W_l0_X' folder name); give the SAE as LAYER=FOLDER");
  SAETRAJ_CHECK(!site.name.empty(), InputError, file,
                ": cannot tell which activations this Gemma Scope 2 SAE reads: its folder is not inside "
                "resid_post/, attn_out/, mlp_out/ or transcoder/ as released, and there is no config.json");
  const std::string L = std::to_string(layer);
  if (site.name == "resid_post") {
    c.hook_name = "blocks." + L + ".hook_resid_post";
  } else if (site.name == "attn_out") {
    c.hook_name = "blocks." + L + ".attn.hook_z";  // it reads o_proj's input: the heads before W_O
  } else if (site.name == "mlp_out") {
    c.hook_name = "blocks." + L + ".hook_mlp_out";
  } else {
    c.hook_name = "blocks." + L + ".hook_mlp_in";
    c.hook_name_out = "blocks." + L + ".hook_mlp_out";
    c.architecture = weights->contains("affine_skip_connection") ? "jumprelu_skip_transcoder" : "jumprelu_transcoder";
  }
  parse_hook_name(c.hook_name, &c.hook_layer, &c.hook_kind);
  if (site.name == "resid_post") {
    c.neuronpedia_id = c.model_name + "/" + L + "-gemmascope-2-res-" + width;
    c.id = c.neuronpedia_id;
  } else {
    c.id = c.model_name + "/" + L + "-gemmascope-2-" + site.name + "-" + width;
  }
  return c;
}

Sae load_gemma_scope2(const std::string& path, const GemmaScope2Options& options) {
  return with_context(str("while loading the Gemma Scope 2 SAE ", path), [&] {
    Sae s;
    s.cfg = read_gemma_scope2_config(path, options);
    require_residual_hook(s.cfg);
    const auto file = io::SafetensorsFile::open(s.cfg.source);
    const int64_t d = s.cfg.d_in, w = s.cfg.d_sae;
    s.w_enc = file->load("w_enc", {d, w});
    s.b_enc = file->load("b_enc", {w});
    s.b_dec = file->load("b_dec", {d});
    s.threshold = file->load("threshold", {w});
    return s;
  });
}

std::string resolve_gemma_scope2(const std::string& root, int layer, const std::string& width, const std::string& l0) {
  SAETRAJ_CHECK(fs::is_directory(root), IoError, "Gemma Scope 2 root ", root, " is not a folder");
  const std::string name = "layer_" + std::to_string(layer) + "_width_" + width + "_l0_" + l0;
  std::vector<fs::path> sites;
  for (const char* s : {"resid_post", "resid_post_all"}) {
    if (fs::is_directory(fs::path(root) / s)) sites.push_back(fs::path(root) / s);
  }
  if (sites.empty()) sites.push_back(fs::path(root));  // root is the resid_post folder itself
  std::vector<std::string> for_layer;
  const std::string prefix = "layer_" + std::to_string(layer) + "_";
  for (const auto& site : sites) {
    const fs::path candidate = site / name;
    if (fs::is_regular_file(candidate / "params.safetensors")) return candidate.string();
    for (const auto& entry : fs::directory_iterator(site)) {
      const std::string n = entry.path().filename().string();
      if (entry.is_directory() && n.rfind(prefix, 0) == 0) for_layer.push_back(site.filename().string() + "/" + n);
    }
  }
  std::sort(for_layer.begin(), for_layer.end());
  throw InputError(str("Gemma Scope 2 root ", root, " has no resid_post/", name,
                       "/params.safetensors; for layer ", layer, " it has: ",
                       for_layer.empty() ? std::string("nothing") : join(for_layer, ", ")));
}

}  // namespace saetraj::sae
