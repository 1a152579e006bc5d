// Small string helpers used in messages and outputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saetraj {

// "[2304, 16384]"
std::string shape_str(const std::vector<int64_t>& shape);
std::string join(const std::vector<std::string>& parts, const std::string& sep);
// Replaces invalid UTF-8 sequences by U+FFFD so that any byte string becomes printable UTF-8.
std::string sanitize_utf8(const std::string& bytes);
bool is_valid_utf8(const std::string& bytes);
// "1.5 GiB"
std::string human_bytes(double bytes);
// A per-layer tensor name: the first "{L}" of pattern replaced by the layer number
// ("model.layers.{L}.mlp.up_proj.weight", 3 -> "model.layers.3.mlp.up_proj.weight"); a pattern
// without "{L}" is returned as it is.
std::string layer_name(const char* pattern, int layer);

}  // namespace saetraj
