// Rotary position embedding settings as config.json gives them, shared by the RoPE decoders (Gemma, Llama,
// Qwen). The tables themselves are built in src/model/decoder_ops.
#pragma once

#include <cstdint>
#include <string>

namespace saetraj::model {

struct RopeParams {
  double theta = 10000.0;
  std::string type = "default";  // "default", "linear" (positions divided by factor) or "llama3"
  double factor = 1.0;           // linear and llama3
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

}  // namespace saetraj::model
