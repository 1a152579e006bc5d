// Choosing one SAE per layer from a Gemma Scope release tree <root>/layer_L/width_W/average_l0_X/.
//
// Rule: the target L0 of a layer is the explicit `target_l0` when given, else the canonical L0 of the
// 65k-width residual SAEs of gemma-2-2b for that layer (SPEC 2; layers 0-25). Among the average_l0_X
// folders of the requested width, the one with X closest to the target is chosen, the smaller X on a tie.
// So for width 65k the canonical SAE itself is chosen, and for other widths the one whose sparsity is
// nearest to it. A layer past 25 without an explicit target is an error.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace saetraj::sae {

// The canonical 65k L0 of gemma-2-2b's layer, or nothing for layers outside 0-25.
std::optional<int> gemma_scope_canonical_l0(int layer);

// The chosen average_l0_X folder (holding params.npz). Errors name what exists: the layer folders when
// layer_L is missing, the widths when width_W is missing, and say when no average_l0_X folder is there.
std::string resolve_gemma_scope(const std::string& root, int layer, const std::string& width,
                                std::optional<double> target_l0 = std::nullopt);

}  // namespace saetraj::sae
