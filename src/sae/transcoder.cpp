#include "saetraj/sae/transcoder.h"

#include "json_file.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/io/npz.h"
#include "saetraj/io/safetensors.h"

namespace saetraj::sae {
namespace {

bool is_sae_lens_transcoder_architecture(const std::string& a) {
  return a == "transcoder" || a == "skip_transcoder" || a == "jumprelu_transcoder" ||
         a == "jumprelu_skip_transcoder";
}

bool has_skip_architecture(const std::string& a) { return a.find("skip") != std::string::npos; }

// Gemma Scope 1 transcoders share the residual SAEs' params.npz layout; the option that names the file says
// it is a transcoder, and the hooks are those of SAE-Lens's gemma_2_transcoder loader.
SaeConfig gemma_scope_transcoder_config(const std::string& path, int layer, const SaeSourceOptions& options) {
  GemmaScopeOptions o = options.gemma_scope;
  if (!o.layer && layer >= 0) o.layer = layer;
  SaeConfig c = read_gemma_scope_config(path, o);
  const auto npz = io::NpzFile::open(c.source);
  SAETRAJ_CHECK(npz.contains("W_dec"), FormatError, c.source,
                ": missing array 'W_dec' (a Gemma Scope transcoder's params.npz holds W_enc, W_dec, b_enc, b_dec, "
                "threshold)");
  make_gemma_scope_transcoder(c);
  return c;
}

// SAE-Lens's reader reads a transcoder's cfg far enough for `info`; the rest is settled here: the activation
// of each architecture, d_out, and the options SAE-Lens itself refuses for transcoders.
void complete_sae_lens_config(SaeConfig& c) {
  const std::string path = c.source + "/cfg.json";
  SAETRAJ_CHECK(is_sae_lens_transcoder_architecture(c.architecture), InputError, c.source,
                " is an SAE-Lens SAE of architecture \"", c.architecture,
                "\", not a transcoder (transcoder, skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder)");
  const auto cfg = detail::read_json_object(path);
  const auto in_metadata = [&](const char* key) -> const nlohmann::json* {
    if (cfg.contains(key) && !cfg[key].is_null()) return &cfg[key];
    if (cfg.contains("metadata") && cfg["metadata"].is_object() && cfg["metadata"].contains(key) &&
        !cfg["metadata"][key].is_null()) {
      return &cfg["metadata"][key];
    }
    return nullptr;
  };
  SAETRAJ_CHECK(in_metadata("hook_name_out"), FormatError, path,
                ": a transcoder's cfg needs \"hook_name_out\" (the hook its decoder predicts)");
  c.activation = c.architecture.rfind("jumprelu", 0) == 0 ? Activation::JumpReLU : Activation::ReLU;
  const auto* apply = in_metadata("apply_b_dec_to_input");
  SAETRAJ_CHECK(!apply || (apply->is_boolean() && !apply->get<bool>()), InputError, path,
                ": apply_b_dec_to_input must be false for a transcoder (b_dec lives in the output space; "
                "SAE-Lens refuses it too)");
  c.apply_b_dec_to_input = false;
  SAETRAJ_CHECK(c.normalization == Normalization::None, InputError, path, ": normalize_activations \"",
                normalization_name(c.normalization), "\" is not supported for transcoders (only \"none\")");
  c.center_residual = false;  // the MLP input is the normalised stream; SAE-Lens transcoders never centre
}

int64_t sae_lens_d_out(const SaeConfig& c) {
  const std::string path = c.source + "/cfg.json";
  return detail::positive_int(detail::read_json_object(path), "d_out", path);
}

const char* layout_list() {
  return "an SAE-Lens transcoder folder (cfg.json + sae_weights.safetensors), a Gemma Scope transcoder "
         "params.npz, or a Gemma Scope 2 transcoder/ folder (params.safetensors)";
}

}  // namespace

void require_mlp_transcoder(const SaeConfig& cfg, int layer) {
  const std::string what = str("the ", cfg.format.empty() ? std::string("SAE") : cfg.format + " file", " in ",
                               cfg.source);
  SAETRAJ_CHECK(cfg.is_transcoder(), InputError, what, " is not a transcoder (it reads '", cfg.hook_name,
                "' and reconstructs it); --mlp-transcoder takes ", layout_list());
  int out_layer = -1;
  HookKind out_kind = HookKind::Other;
  parse_hook_name(cfg.hook_name_out, &out_layer, &out_kind);
  const std::string expected =
      layer >= 0 ? str("blocks.", layer, ".ln2.hook_normalized (or hook_mlp_in, mlp.hook_in) -> blocks.", layer,
                       ".hook_mlp_out")
                 : std::string("blocks.L.ln2.hook_normalized (or hook_mlp_in, mlp.hook_in) -> blocks.L.hook_mlp_out");
  SAETRAJ_CHECK(cfg.hook_kind == HookKind::MlpIn && out_kind == HookKind::MlpOut, InputError, what,
                " maps '", cfg.hook_name, "' to '", cfg.hook_name_out,
                "': the MLP decomposition needs a transcoder of the MLP (", expected, ")");
  SAETRAJ_CHECK(cfg.hook_layer == out_layer, InputError, what, " reads layer ", cfg.hook_layer,
                " but predicts layer ", out_layer, " ('", cfg.hook_name_out,
                "'): a cross-layer transcoder cannot stand for one layer's MLP");
  SAETRAJ_CHECK(layer < 0 || cfg.hook_layer == layer, InputError, what, " is a transcoder of layer ",
                cfg.hook_layer, "'s MLP ('", cfg.hook_name, "'), given for layer ", layer);
}

SaeConfig read_transcoder_config(const std::string& path, int layer, const SaeSourceOptions& options) {
  SaeConfig c;
  if (is_gemma_scope(path)) {
    c = gemma_scope_transcoder_config(path, layer, options);
  } else {
    c = inspect_sae(path, layer, options);
    if (c.format == "sae-lens" && c.is_transcoder()) complete_sae_lens_config(c);
  }
  require_mlp_transcoder(c, layer);
  return c;
}

Transcoder load_transcoder(const std::string& path, int layer, const SaeSourceOptions& options) {
  return with_context(str("while loading the transcoder ", path), [&] {
    Transcoder t;
    t.encoder.cfg = read_transcoder_config(path, layer, options);
    const SaeConfig& c = t.encoder.cfg;
    const int64_t d_in = c.d_in, w = c.d_sae;
    if (c.format == "gemma-scope") {
      const auto npz = io::NpzFile::open(c.source);
      const auto& dec = npz.shape("W_dec");
      SAETRAJ_CHECK(dec.size() == 2 && dec[0] == w && dec[1] > 0, FormatError, "array 'W_dec' in ", c.source,
                    " has wrong shape; expected [", w, ", d_out], got ", shape_str(dec));
      t.d_out = dec[1];
      t.encoder.w_enc = npz.load("W_enc", {d_in, w});
      t.encoder.b_enc = npz.load("b_enc", {w});
      t.encoder.threshold = npz.load("threshold", {w});
      t.w_dec = npz.load("W_dec", {w, t.d_out});
      t.b_dec = npz.load("b_dec", {t.d_out});
    } else if (c.format == "gemma-scope-2") {
      const auto file = io::SafetensorsFile::open(c.source);
      SAETRAJ_CHECK(file->contains("w_dec"), FormatError, c.source,
                    ": missing tensor 'w_dec' (a Gemma Scope 2 transcoder holds w_enc, w_dec, b_enc, b_dec, "
                    "threshold[, affine_skip_connection])");
      const auto& dec = file->info("w_dec").shape;
      SAETRAJ_CHECK(dec.size() == 2 && dec[0] == w && dec[1] > 0, FormatError, "tensor 'w_dec' in ", c.source,
                    " has wrong shape; expected [", w, ", d_out], got ", shape_str(dec));
      t.d_out = dec[1];
      t.encoder.w_enc = file->load("w_enc", {d_in, w});
      t.encoder.b_enc = file->load("b_enc", {w});
      t.encoder.threshold = file->load("threshold", {w});
      t.w_dec = file->load("w_dec", {w, t.d_out});
      t.b_dec = file->load("b_dec", {t.d_out});
      if (file->contains("affine_skip_connection")) {
        t.w_skip = file->load("affine_skip_connection", {d_in, t.d_out}).t().contiguous();
      }
    } else if (c.format == "sae-lens") {
      t.d_out = sae_lens_d_out(c);
      const auto file = io::SafetensorsFile::open(c.source + "/sae_weights.safetensors");
      for (const char* name : {"W_enc", "b_enc", "W_dec", "b_dec"}) {
        SAETRAJ_CHECK(file->contains(name), FormatError, file->path(), ": missing tensor '", name, "' (a ",
                      c.architecture, " holds W_enc, b_enc, W_dec, b_dec",
                      c.activation == Activation::JumpReLU ? ", threshold" : "",
                      has_skip_architecture(c.architecture) ? ", W_skip" : "", ")");
      }
      t.encoder.w_enc = file->load("W_enc", {d_in, w});
      t.encoder.b_enc = file->load("b_enc", {w});
      t.w_dec = file->load("W_dec", {w, t.d_out});
      t.b_dec = file->load("b_dec", {t.d_out});
      if (c.activation == Activation::JumpReLU) {
        SAETRAJ_CHECK(file->contains("threshold"), FormatError, file->path(), ": a ", c.architecture,
                      " needs a 'threshold' tensor");
        t.encoder.threshold = file->load("threshold", {w});
      }
      if (has_skip_architecture(c.architecture)) {
        SAETRAJ_CHECK(file->contains("W_skip"), FormatError, file->path(), ": a ", c.architecture,
                      " needs a 'W_skip' tensor [d_out, d_in]");
        t.w_skip = file->load("W_skip", {t.d_out, d_in});
      }
    } else {
      throw InputError(str(c.source, ": ", c.format, " transcoders are not read (", layout_list(), ")"));
    }
    // The encoder subtracts nothing: a zero b_dec keeps Sae::preprocess exact.
    t.encoder.b_dec = torch::zeros({d_in});
    for (const auto* tensor : {&t.encoder.w_enc, &t.encoder.b_enc, &t.w_dec, &t.b_dec}) {
      SAETRAJ_CHECK(torch::isfinite(*tensor).all().item<bool>(), FormatError, c.source,
                    ": the transcoder's tensors hold NaN or Inf");
    }
    return t;
  });
}

torch::Tensor Transcoder::encode(const torch::Tensor& x) const { return encoder.encode(x.to(torch::kFloat32)); }

torch::Tensor Transcoder::decode(const torch::Tensor& acts) const { return torch::addmm(b_dec, acts, w_dec); }

torch::Tensor Transcoder::skip(const torch::Tensor& x) const {
  if (!has_skip()) return torch::zeros({x.size(0), d_out}, x.options().dtype(torch::kFloat32));
  return torch::mm(x.to(torch::kFloat32), w_skip.t());
}

torch::Tensor Transcoder::forward(const torch::Tensor& x) const { return decode(encode(x)) + skip(x); }

int64_t Transcoder::bytes() const {
  int64_t total = encoder.bytes();
  for (const auto* t : {&w_dec, &b_dec, &w_skip}) {
    if (t->defined()) total += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return total;
}

}  // namespace saetraj::sae
