// The registry's table (architecture.h). Each row is defined in its architecture's own file.
#include "saetraj/model/architecture.h"

namespace saetraj::model {

extern const Architecture kGpt2Architecture;     // gpt2.cpp
extern const Architecture kGemma2Architecture;   // gemma2.cpp
extern const Architecture kGemma3Architecture;   // gemma3.cpp
extern const Architecture kGemma3MultimodalArchitecture;  // gemma3.cpp: the text model of a vision checkpoint
extern const Architecture kLlamaArchitecture;    // llama.cpp
extern const Architecture kQwen2Architecture;    // qwen2.cpp
extern const Architecture kQwen3Architecture;    // qwen3.cpp

const std::vector<const Architecture*>& architectures() {
  static const std::vector<const Architecture*> table = {
      &kGpt2Architecture,  &kGemma2Architecture, &kGemma3Architecture, &kGemma3MultimodalArchitecture,
      &kLlamaArchitecture, &kQwen2Architecture,  &kQwen3Architecture,
  };
  return table;
}

const Architecture* find_architecture(const std::string& hf_class, const std::string& model_type) {
  for (const Architecture* a : architectures()) {
    if (hf_class.empty() ? model_type == a->model_type : hf_class == a->hf_class) return a;
  }
  return nullptr;
}

std::string supported_architectures() {
  std::string names;
  for (const Architecture* a : architectures()) names += (names.empty() ? "" : ", ") + std::string(a->hf_class);
  return names;
}

}  // namespace saetraj::model
