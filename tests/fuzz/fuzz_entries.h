// The fuzzed entry points, shared by the libFuzzer targets (fuzz_<target>.cpp, built with
// -DSAETRAJ_FUZZ=ON) and by tests/unit/test_fuzz_regressions.cpp, which replays the kept crash inputs and
// the seed corpus through the same functions in the normal build.
//
// Each entry writes the bytes where the reader expects a file, runs the reader (and what a run does next
// with what it read: loading every tensor, encoding text), and swallows saetraj::Error: a clear refusal is
// the right answer to a bad file. Anything else (another exception, a crash, a sanitizer report, a hang)
// is a bug in the reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace saetraj::fuzz {

// One fuzz target: its name (tests/fuzz/fuzz_<name>.cpp, tests/fuzz/regressions/<name>/) and entry.
struct Target {
  const char* name;
  void (*run)(const uint8_t* data, size_t size);
};

// safetensors file: the whole file.
void run_safetensors(const uint8_t* data, size_t size);
// .npz archive: the whole file.
void run_npz(const uint8_t* data, size_t size);
// config.json of a model checkpoint.
void run_model_config(const uint8_t* data, size_t size);
// SAE-Lens cfg.json.
void run_sae_cfg(const uint8_t* data, size_t size);
// Tokenizer files. First byte even: the rest is a tokenizer.json. Odd: the rest is vocab.json, a NUL byte,
// then merges.txt. A tokenizer that loads then encodes a fixed text and decodes the ids.
void run_tokenizer(const uint8_t* data, size_t size);
// Neuronpedia explanations: the bytes as one explanation cache entry (index 7), then gzip-compressed as a
// bulk export file (batch-0.jsonl.gz) searched for indices 0 to 9.
void run_explanations(const uint8_t* data, size_t size);

const std::vector<Target>& targets();

}  // namespace saetraj::fuzz
