#include "saetraj/sae/sae.h"

#include <regex>

#include "saetraj/core/error.h"

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
  }
  return "?";
}

std::string SaeConfig::preprocessing_summary() const {
  std::string s = activation_name(activation);
  if (activation == Activation::TopK) s += "(k=" + std::to_string(topk_k) + ")";
  s += center_residual ? "; residual centred" : "; not centred";
  s += std::string("; normalize=") + normalization_name(normalization);
  s += apply_b_dec_to_input ? "; b_dec subtracted" : "; b_dec not subtracted";
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
