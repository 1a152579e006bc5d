#include "saetraj/sae/gemma_scope.h"

#include <filesystem>
#include <regex>

#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"

namespace saetraj::sae {
namespace {

namespace fs = std::filesystem;

std::string params_file(const std::string& path) {
  return fs::is_directory(path) ? (fs::path(path) / "params.npz").string() : path;
}

// The last "<key>_<value>" component of the path ("layer_12", "width_65k").
std::optional<std::string> path_component(const std::string& path, const std::string& key) {
  std::optional<std::string> found;
  const std::regex pattern("^" + key + "_(.+)$");
  for (const auto& part : fs::path(path).lexically_normal()) {
    std::smatch m;
    const std::string s = part.string();
    if (std::regex_match(s, m, pattern)) found = m[1].str();
  }
  return found;
}

}  // namespace

bool is_gemma_scope(const std::string& path) {
  return fs::is_regular_file(params_file(path)) && fs::path(params_file(path)).filename() == "params.npz";
}

std::string gemma_scope_width_label(int64_t d_sae) {
  if (d_sae >= 1000000) return std::to_string(d_sae / 1000000) + "m";
  if (d_sae >= 1000) return std::to_string(d_sae / 1000) + "k";
  return std::to_string(d_sae);
}

void make_gemma_scope_transcoder(SaeConfig& c) {
  if (c.is_transcoder()) return;
  const std::string L = std::to_string(c.hook_layer);
  c.hook_name = "blocks." + L + ".ln2.hook_normalized";
  c.hook_name_out = "blocks." + L + ".hook_mlp_out";
  parse_hook_name(c.hook_name, &c.hook_layer, &c.hook_kind);
  c.architecture = "jumprelu_transcoder";
  // "gemma-2-2b/3-gemmascope-res-16k" -> "gemma-2-2b/3-gemmascope-transcoder-16k", as Neuronpedia names them.
  const std::string res = "-gemmascope-res-";
  const auto at = c.neuronpedia_id.find(res);
  if (at != std::string::npos) c.neuronpedia_id.replace(at, res.size(), "-gemmascope-transcoder-");
  c.id = c.neuronpedia_id;
}

SaeConfig gemma_scope_jumprelu_config(const std::string& file, const std::string& format,
                                      const std::string& architecture, const std::string& w_enc_what,
                                      const std::vector<int64_t>& w_enc_shape, const std::string& model_id) {
  SAETRAJ_CHECK(w_enc_shape.size() == 2 && w_enc_shape[0] > 0 && w_enc_shape[1] > 0, FormatError, file, ": ",
                w_enc_what, " must be [d_model, width], got ", w_enc_shape.size(), " dimensions");
  SaeConfig c;
  c.source = file;
  c.format = format;
  c.architecture = architecture;
  c.d_in = w_enc_shape[0];
  c.d_sae = w_enc_shape[1];
  c.activation = Activation::JumpReLU;
  c.apply_b_dec_to_input = false;
  c.normalization = Normalization::None;
  c.center_residual = false;
  c.prepend_bos = true;  // Gemma Scope was trained on sequences that start with <bos>
  c.model_name = model_id;
  return c;
}

SaeConfig read_gemma_scope_config(const std::string& path, const GemmaScopeOptions& options) {
  const std::string file = params_file(path);
  SAETRAJ_CHECK(fs::is_regular_file(file), IoError, "no Gemma Scope params.npz at ", file);
  const auto npz = io::NpzFile::open(file);
  for (const char* name : {"W_enc", "b_enc", "b_dec", "threshold"}) {
    SAETRAJ_CHECK(npz.contains(name), FormatError, file, ": missing array '", name,
                  "' (a Gemma Scope params.npz holds W_enc, W_dec, b_enc, b_dec, threshold)");
  }
  SaeConfig c = gemma_scope_jumprelu_config(file, "gemma-scope", "jumprelu", "array 'W_enc'", npz.shape("W_enc"),
                                            options.model_id);

  int layer = options.layer.value_or(-1);
  if (const auto l = path_component(file, "layer")) {
    SAETRAJ_CHECK(std::regex_match(*l, std::regex(R"(\d+)")), InputError, file, ": path component 'layer_",
                  *l, "' does not name a layer number");
    layer = std::stoi(*l);
  }
  SAETRAJ_CHECK(layer >= 0, InputError, file,
                ": cannot tell the layer (no 'layer_L' folder in the path); give the SAE as LAYER=FOLDER");
  c.hook_name = "blocks." + std::to_string(layer) + ".hook_resid_post";
  parse_hook_name(c.hook_name, &c.hook_layer, &c.hook_kind);
  const std::string width = path_component(file, "width").value_or(gemma_scope_width_label(c.d_sae));
  c.neuronpedia_id = options.model_id + "/" + std::to_string(layer) + "-gemmascope-res-" + width;
  c.id = c.neuronpedia_id;
  static const std::regex transcoder_release(R"((models--google--)?gemma-scope-.*-transcoders)");
  for (const auto& part : fs::absolute(file).lexically_normal()) {
    if (std::regex_match(part.string(), transcoder_release)) make_gemma_scope_transcoder(c);
  }
  return c;
}

Sae load_gemma_scope(const std::string& path, const GemmaScopeOptions& options) {
  Sae s;
  s.cfg = read_gemma_scope_config(path, options);
  const auto npz = io::NpzFile::open(s.cfg.source);
  const int64_t d = s.cfg.d_in, w = s.cfg.d_sae;
  s.w_enc = npz.load("W_enc", {d, w});
  s.b_enc = npz.load("b_enc", {w});
  s.b_dec = npz.load("b_dec", {d});
  s.threshold = npz.load("threshold", {w});
  return s;
}

}  // namespace saetraj::sae
