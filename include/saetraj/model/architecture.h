// The architecture registry: one row per supported Hugging Face class, saying how to recognise its
// config.json, who parses its hyper-parameters and who loads its weights. Each architecture defines its
// row in its own file (src/model/<arch>.cpp) next to its parser; src/model/architectures.cpp lists the
// rows. Adding an architecture is one new file and one line there.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace c10 {
struct Device;  // torch::Device; kept out of this header so that config code builds without LibTorch
}

namespace saetraj::io {
class SafetensorsSet;
}

namespace saetraj::model {

class Model;
class ConfigReader;  // src/model/config_reader.h: config.json fields with file-and-field error messages
struct ModelConfig;

struct Architecture {
  const char* hf_class;    // config.json "architectures"[0], e.g. "Gemma3ForCausalLM"
  const char* model_type;  // config.json "model_type", recognised when "architectures" is absent
  // Fills `config` from config.json: the common fields and the architecture's own ArchParams. `config.arch`
  // is already set. Unsupported settings are InputErrors naming the file and the field.
  void (*parse)(const ConfigReader& json, ModelConfig& config);
  // Builds the model from a parsed config and the checkpoint's tensors, its weights on `device`.
  std::unique_ptr<Model> (*load)(const ModelConfig& config, const io::SafetensorsSet& weights,
                                 const c10::Device& device);
};

// Every row, in the order they are listed (and named in messages).
const std::vector<const Architecture*>& architectures();

// The row whose hf_class is `hf_class`, or, when `hf_class` is empty, whose model_type is `model_type`;
// nullptr when none is.
const Architecture* find_architecture(const std::string& hf_class, const std::string& model_type);

// "GPT2LMHeadModel, Gemma2ForCausalLM, ...", for messages.
std::string supported_architectures();

}  // namespace saetraj::model
