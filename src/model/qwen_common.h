// What Qwen2 and Qwen3 configs share beyond the Llama-style fields.
#pragma once

#include "config_reader.h"

namespace saetraj::model {

// Qwen configs carry sliding-window fields that the released checkpoints leave off (use_sliding_window
// false); saetraj runs full attention on every layer, so a config that turns the window on is refused
// rather than run differently.
inline void refuse_qwen_sliding_window(const ConfigReader& j, const char* arch) {
  SAETRAJ_CHECK(!j.optional<bool>("use_sliding_window", false), InputError, j.origin(),
                ": use_sliding_window true is not supported for ", arch, " (full attention on every layer only)");
  if (j.has("layer_types") && j.raw("layer_types").is_array()) {
    const auto& types = j.raw("layer_types");
    for (size_t l = 0; l < types.size(); ++l) {
      SAETRAJ_CHECK(types[l] == "full_attention", InputError, j.origin(), ": layer_types[", l, "] is ",
                    types[l].dump(), "; ", arch, " is supported with full attention on every layer only");
    }
  }
}

}  // namespace saetraj::model
