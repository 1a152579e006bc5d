#include "saetraj/sae/gemma_scope_release.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <limits>
#include <regex>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::sae {
namespace {

namespace fs = std::filesystem;

// SPEC 2: canonical L0 of gemma-2-2b's 65k residual SAEs, layers 0-25.
constexpr int kCanonical65kL0[] = {73, 121, 77,  89,  89,  105, 107, 107, 111, 118, 128, 70,  72,
                                   75, 73,  127, 128, 125, 116, 115, 114, 111, 116, 123, 124, 93};

// Sub-folders of `dir` whose name starts with `prefix`, sorted.
std::vector<std::string> children(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind(prefix, 0) == 0) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string listing(const std::vector<std::string>& names) {
  return names.empty() ? "none" : join(names, ", ");
}

}  // namespace

std::optional<int> gemma_scope_canonical_l0(int layer) {
  if (layer < 0 || layer >= static_cast<int>(std::size(kCanonical65kL0))) return std::nullopt;
  return kCanonical65kL0[layer];
}

std::string resolve_gemma_scope(const std::string& root, int layer, const std::string& width,
                                std::optional<double> target_l0) {
  SAETRAJ_CHECK(fs::is_directory(root), IoError, "Gemma Scope root ", root, " is not a folder");
  const std::string layer_dir = (fs::path(root) / ("layer_" + std::to_string(layer))).string();
  SAETRAJ_CHECK(fs::is_directory(layer_dir), InputError, "Gemma Scope root ", root, " has no layer_", layer,
                " folder; it has: ", listing(children(root, "layer_")));
  const std::string width_dir = (fs::path(layer_dir) / ("width_" + width)).string();
  SAETRAJ_CHECK(fs::is_directory(width_dir), InputError, layer_dir, " has no width_", width,
                " folder; widths there: ", listing(children(layer_dir, "width_")));
  if (!target_l0) {
    const auto canonical = gemma_scope_canonical_l0(layer);
    SAETRAJ_CHECK(canonical, InputError, "no canonical L0 is known for layer ", layer,
                  " (only layers 0-25 of gemma-2-2b); give a target L0 (--gemmascope-l0)");
    target_l0 = *canonical;
  }
  static const std::regex l0_name(R"(^average_l0_(\d+(\.\d+)?)$)");
  std::string best;
  double best_gap = std::numeric_limits<double>::infinity(), best_l0 = 0;
  for (const auto& name : children(width_dir, "average_l0_")) {
    std::smatch m;
    if (!std::regex_match(name, m, l0_name)) continue;
    const double l0 = std::stod(m[1].str());
    const double gap = std::abs(l0 - *target_l0);
    if (gap < best_gap || (gap == best_gap && l0 < best_l0)) {
      best = name;
      best_gap = gap;
      best_l0 = l0;
    }
  }
  SAETRAJ_CHECK(!best.empty(), InputError, width_dir,
                " holds no average_l0_<N> folder; it has: ", listing(children(width_dir, "")));
  return (fs::path(width_dir) / best).string();
}

}  // namespace saetraj::sae
