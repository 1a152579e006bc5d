#include "fuzz_entries.h"

#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>

#include "saetraj/core/error.h"
#include "saetraj/graph/explanations.h"
#include "saetraj/io/npz.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/config.h"
#include "saetraj/sae/sae_lens.h"
#include "saetraj/tokenizer/byte_level_bpe.h"

namespace saetraj::fuzz {
namespace {

namespace fs = std::filesystem;

// One scratch folder per process, removed at exit; every input overwrites the same few files.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "saetraj-fuzz-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const std::string& scratch() {
  static const ScratchDir dir;
  return dir.path();
}

std::string put(const std::string& relative, const uint8_t* data, size_t size) {
  const fs::path path = fs::path(scratch()) / relative;
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw std::runtime_error("cannot write " + path.string());
  return path.string();
}

void put_gzip(const std::string& relative, const uint8_t* data, size_t size) {
  const fs::path path = fs::path(scratch()) / relative;
  fs::create_directories(path.parent_path());
  gzFile out = gzopen(path.c_str(), "wb");
  if (!out) throw std::runtime_error("cannot write " + path.string());
  if (size > 0) gzwrite(out, data, static_cast<unsigned>(size));
  gzclose(out);
}

template <typename F>
void refusing_is_fine(F&& f) {
  try {
    f();
  } catch (const saetraj::Error&) {
  }
}

}  // namespace

void run_safetensors(const uint8_t* data, size_t size) {
  const std::string path = put("model.safetensors", data, size);
  refusing_is_fine([&] {
    const auto file = io::SafetensorsFile::open(path);
    for (const auto& entry : file->tensors()) {
      const std::string& name = entry.first;
      refusing_is_fine([&] { file->load(name, torch::kFloat32); });
      refusing_is_fine([&] { file->load(name, torch::kInt64); });
    }
  });
}

void run_npz(const uint8_t* data, size_t size) {
  const std::string path = put("params.npz", data, size);
  refusing_is_fine([&] {
    const auto file = io::NpzFile::open(path);
    for (const std::string& name : file.names()) {
      refusing_is_fine([&] { file.load(name, torch::kFloat32); });
      refusing_is_fine([&] { file.load(name, torch::kInt64); });
    }
  });
}

void run_model_config(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  refusing_is_fine([&] { model::ModelConfig::from_json_text(text, "config.json"); });
}

void run_sae_cfg(const uint8_t* data, size_t size) {
  put("sae/cfg.json", data, size);
  refusing_is_fine([&] { sae::read_sae_lens_config(scratch() + "/sae"); });
}

void run_tokenizer(const uint8_t* data, size_t size) {
  if (size == 0) return;
  std::optional<tokenizer::ByteLevelBpe> bpe;
  const uint8_t* rest = data + 1;
  const size_t rest_size = size - 1;
  refusing_is_fine([&] {
    if (data[0] % 2 == 0) {
      bpe.emplace(tokenizer::ByteLevelBpe::from_tokenizer_json(put("tok/tokenizer.json", rest, rest_size),
                                                               std::nullopt));
    } else {
      size_t split = 0;
      while (split < rest_size && rest[split] != 0) ++split;
      const std::string vocab = put("tok/vocab.json", rest, split);
      const size_t merges_at = std::min(rest_size, split + 1);
      const std::string merges = put("tok/merges.txt", rest + merges_at, rest_size - merges_at);
      bpe.emplace(tokenizer::ByteLevelBpe::from_vocab_merges(vocab, merges, std::nullopt));
    }
  });
  if (!bpe) return;
  refusing_is_fine([&] {
    const auto ids = bpe->encode("Hello world, the 2024 caf\xc3\xa9 <|endoftext|> it's\n\n  ok");
    bpe->decode(ids);
    for (int32_t id : ids) bpe->token_text(id);
  });
}

void run_explanations(const uint8_t* data, size_t size) {
  const graph::NeuronpediaSource source{"model", "source"};
  put("cache/model/source/7.json", data, size);
  refusing_is_fine([&] { graph::ExplanationCache(scratch() + "/cache").load(source, 7); });
  put_gzip("bulk/model/source/explanations/batch-0.jsonl.gz", data, size);
  refusing_is_fine([&] {
    graph::read_bulk_explanations(scratch() + "/bulk", source, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  });
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"safetensors", run_safetensors}, {"npz", run_npz},           {"model_config", run_model_config},
      {"sae_cfg", run_sae_cfg},         {"tokenizer", run_tokenizer}, {"explanations", run_explanations},
  };
  return all;
}

}  // namespace saetraj::fuzz
