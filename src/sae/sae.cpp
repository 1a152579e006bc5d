#include "saetraj/sae/sae.h"

#include <cmath>
#include <regex>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::sae {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::ReLU: return "relu";
    case Activation::JumpReLU: return "jumprelu";
    case Activation::TopK: return "topk";
  }
  return "?";
}

const char* normalization_name(Normalization n) {
  switch (n) {
    case Normalization::None: return "none";
    case Normalization::LayerNorm: return "layer_norm";
    case Normalization::ConstantNormRescale: return "constant_norm_rescale";
    case Normalization::ExpectedAverageOnlyIn: return "expected_average_only_in";
    case Normalization::ConstantScalarRescale: return "constant_scalar_rescale";
  }
  return "?";
}

const char* hook_kind_name(HookKind k) {
  switch (k) {
    case HookKind::ResidPre: return "resid_pre";
    case HookKind::ResidMid: return "resid_mid";
    case HookKind::ResidPost: return "resid_post";
    case HookKind::AttnOut: return "attn_out";
    case HookKind::HookZ: return "hook_z";
    case HookKind::MlpOut: return "mlp_out";
    case HookKind::MlpIn: return "mlp_in";
    case HookKind::Other: return "other";
  }
  return "?";
}

std::string SaeConfig::preprocessing_summary() const {
  std::string s = activation_name(activation);
  if (activation == Activation::TopK) s += "(k=" + std::to_string(topk_k) + ")";
  // Architectures read as one of the three kernels (sae.h, [NOTE] Folding at load) say so.
  if (architecture == "gated" || architecture.find("batchtopk") != std::string::npos) {
    s = architecture + " read as " + s;
  }
  if (rescale_by_decoder_norm) s += "; pre-activations x |W_dec row|";
  s += center_residual ? "; residual centred" : "; not centred";
  s += std::string("; normalize=") + normalization_name(normalization);
  if (normalization == Normalization::ConstantScalarRescale) s += "(x" + std::to_string(input_scale) + ")";
  s += apply_b_dec_to_input ? "; b_dec subtracted" : "; b_dec not subtracted";
  for (const auto& f : folded) s += "; folded: " + f;
  return s;
}

void parse_hook_name(const std::string& hook_name, int* layer, HookKind* kind) {
  static const std::regex pattern(R"(^blocks\.(\d+)\.(.+)$)");
  std::smatch m;
  *layer = -1;
  *kind = HookKind::Other;
  if (!std::regex_match(hook_name, m, pattern)) return;
  *layer = std::stoi(m[1].str());
  const std::string point = m[2].str();
  if (point == "hook_resid_pre") *kind = HookKind::ResidPre;
  else if (point == "hook_resid_mid") *kind = HookKind::ResidMid;
  else if (point == "hook_resid_post") *kind = HookKind::ResidPost;
  else if (point == "hook_attn_out") *kind = HookKind::AttnOut;
  else if (point == "attn.hook_z") *kind = HookKind::HookZ;
  else if (point == "hook_mlp_out") *kind = HookKind::MlpOut;
  else if (point == "hook_mlp_in" || point == "ln2.hook_normalized" || point == "mlp.hook_in") *kind = HookKind::MlpIn;
}

void require_residual_hook(const SaeConfig& cfg) {
  const std::string what = str("the ", cfg.format.empty() ? std::string("SAE") : cfg.format + " file", " in ",
                               cfg.source);
  if (cfg.is_transcoder()) {
    throw InputError(str(what, " is a transcoder (reads '", cfg.hook_name, "', predicts '", cfg.hook_name_out,
                         "'): its features describe how the MLP maps its input to its output, not what the "
                         "residual stream holds, so it cannot encode the residual partial sums; give it to sweep "
                         "--mlp-transcoder or encode --transcoder, and a residual SAE (hook_resid_pre/mid/post) "
                         "to --sae"));
  }
  const char* why = nullptr;
  switch (cfg.hook_kind) {
    case HookKind::ResidPre:
    case HookKind::ResidMid:
    case HookKind::ResidPost:
    case HookKind::Other: return;
    case HookKind::AttnOut:
      why = "an attention-output SAE: it was trained on the attention block's output alone, while the method "
            "encodes the residual stream plus attention contributions";
      break;
    case HookKind::HookZ:
      why = "a hook_z SAE: it reads the heads' values before W_O (n_heads x d_head wide), not the residual "
            "stream the method encodes";
      break;
    case HookKind::MlpOut:
      why = "an MLP-output SAE: it was trained on the MLP's output alone, not on the residual stream the "
            "method encodes";
      break;
    case HookKind::MlpIn:
      why = "an SAE of the MLP's normalised input, not of the residual stream the method encodes";
      break;
  }
  throw InputError(str(what, " hooks '", cfg.hook_name, "': ", why,
                       "; give a residual SAE (hook_resid_pre/mid/post)"));
}

void fold_input_scale(Sae& sae, double scale) {
  SAETRAJ_CHECK(std::isfinite(scale) && scale > 0, FormatError, sae.cfg.source,
                ": the input scale factor must be positive and finite, got ", scale);
  sae.w_enc.mul_(scale);  // in place: loaded tensors are the loader's own copies, and W_enc is the large one
  sae.b_dec.div_(scale);
  sae.cfg.input_scale = scale;
}

void fold_feature_scale(Sae& sae, const torch::Tensor& per_feature) {
  SAETRAJ_CHECK(per_feature.dim() == 1 && per_feature.size(0) == sae.cfg.d_sae, FormatError, sae.cfg.source,
                ": per-feature scale has ", per_feature.numel(), " entries, expected d_sae = ", sae.cfg.d_sae);
  SAETRAJ_CHECK(torch::isfinite(per_feature).all().item<bool>(), FormatError, sae.cfg.source,
                ": per-feature scale holds non-finite values");
  sae.w_enc.mul_(per_feature.unsqueeze(0));
  sae.b_enc.mul_(per_feature);
}

torch::Tensor Sae::preprocess(const torch::Tensor& x) const {
  torch::Tensor out = x;
  if (cfg.center_residual) out = out - out.mean(-1, /*keepdim=*/true);
  switch (cfg.normalization) {
    case Normalization::LayerNorm: {
      // SAE-Lens: (x - mean) / (unbiased std + 1e-5)
      const auto centred = out - out.mean(-1, true);
      out = centred / (centred.std(-1, /*unbiased=*/true, /*keepdim=*/true) + 1e-5);
      break;
    }
    case Normalization::ConstantNormRescale:
      out = out * (std::sqrt(static_cast<double>(cfg.d_in)) / out.norm(2, -1, /*keepdim=*/true));
      break;
    case Normalization::None:
    case Normalization::ExpectedAverageOnlyIn:  // the factor is folded into the saved weights
    case Normalization::ConstantScalarRescale:  // folded into W_enc and b_dec at load (fold_input_scale)
      break;
  }
  if (cfg.apply_b_dec_to_input) out = out - b_dec;
  return out;
}

torch::Tensor Sae::project(const torch::Tensor& x) const {
  auto out = torch::empty({x.size(0), w_enc.size(1)}, x.options().dtype(torch::kFloat32));
  project_into(x, out);
  return out;
}

void Sae::project_into(const torch::Tensor& x, torch::Tensor& out) const {
  SAETRAJ_CHECK(out.dim() == 2 && out.size(0) == x.size(0) && out.size(1) == w_enc.size(1) &&
                    out.scalar_type() == torch::kFloat32 && out.is_contiguous(),
                InputError, "SAE projection needs a contiguous float32 [", x.size(0), ", ", w_enc.size(1),
                "] output");
  if (w_enc.scalar_type() == torch::kFloat32) {
    torch::mm_out(out, x, w_enc);
    return;
  }
  constexpr int64_t kColumns = 4096;  // widened per block: d_in x 4096 floats at a time
  for (int64_t c0 = 0; c0 < w_enc.size(1); c0 += kColumns) {
    const int64_t c1 = std::min<int64_t>(c0 + kColumns, w_enc.size(1));
    out.slice(1, c0, c1).copy_(torch::mm(x, w_enc.slice(1, c0, c1).to(torch::kFloat32)));
  }
}

torch::Tensor Sae::pre_activations(const torch::Tensor& preprocessed) const {
  if (w_enc.scalar_type() == torch::kFloat32) return torch::addmm(b_enc, preprocessed, w_enc);
  return project(preprocessed).add_(b_enc);
}

torch::Tensor Sae::activate(torch::Tensor pre) const {
  switch (cfg.activation) {
    case Activation::ReLU: return pre.relu_();
    case Activation::JumpReLU: {
      const auto keep = pre.gt(threshold);
      return pre.relu_().mul_(keep);
    }
    case Activation::TopK: {
      const int64_t k = std::min<int64_t>(cfg.topk_k, pre.size(-1));
      const auto top = pre.topk(k, -1);
      return torch::zeros_like(pre).scatter_(-1, std::get<1>(top), std::get<0>(top).relu());
    }
  }
  return pre;
}

torch::Tensor Sae::encode(const torch::Tensor& x) const { return activate(pre_activations(preprocess(x))); }

int64_t Sae::bytes() const {
  int64_t total = 0;
  for (const auto* t : {&w_enc, &b_enc, &b_dec, &threshold}) {
    if (t->defined()) total += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return total;
}

void Sae::to(const torch::Device& device) {
  for (auto* t : {&w_enc, &b_enc, &b_dec, &threshold}) {
    if (t->defined()) *t = t->to(device);
  }
}

}  // namespace saetraj::sae
