// Writing byte-level BPE in the Hugging Face layout, so that trained tokenizers (the synthetic demo
// model's) load here and in `tokenizers` / `transformers` alike.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/byte_level_bpe.h"

namespace saetraj::tokenizer {

namespace {

using ordered_json = nlohmann::ordered_json;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  SAETRAJ_CHECK(out, IoError, "cannot write tokenizer file '", path, "'");
}

// Every token by id: the model vocabulary plus added tokens that live outside it (Llama-3 style).
std::vector<std::pair<std::string, int32_t>> all_tokens_by_id(const BpeModel& model) {
  std::vector<std::pair<std::string, int32_t>> tokens(model.vocab.begin(), model.vocab.end());
  for (const auto& [token, id] : model.special_tokens)
    if (!model.vocab.count(token)) tokens.emplace_back(token, id);
  std::sort(tokens.begin(), tokens.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  return tokens;
}

ordered_json byte_level(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

std::string bos_text(const BpeModel& model) {
  for (const auto& [token, id] : model.special_tokens)
    if (id == *model.bos_id) return token;
  for (const auto& [token, id] : model.vocab)
    if (id == *model.bos_id) return token;
  throw FormatError(str("BOS id ", *model.bos_id, " is not a token of the model being written"));
}

ordered_json tokenizer_json(const BpeModel& model) {
  ordered_json added = ordered_json::array();
  std::vector<std::pair<std::string, int32_t>> specials(model.special_tokens.begin(),
                                                        model.special_tokens.end());
  std::sort(specials.begin(), specials.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  for (const auto& [token, id] : specials)
    added.push_back({{"id", id},
                     {"content", token},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});

  ordered_json pre_tokenizer;
  if (model.pre_tokenizer != PreTokenizer::GPT2) {
    pre_tokenizer = {{"type", "Sequence"},
                     {"pretokenizers",
                      {{{"type", "Split"},
                        {"pattern", {{"Regex", pre_tokenizer_pattern(model.pre_tokenizer)}}},
                        {"behavior", "Isolated"},
                        {"invert", false}},
                       byte_level(false, true, false)}}};
  } else {
    pre_tokenizer = byte_level(false, true, true);
  }

  ordered_json post_processor = byte_level(true, false, true);
  if (model.add_bos) {
    const std::string bos = bos_text(model);
    const auto special = [&](int type_id) {
      return ordered_json{{"SpecialToken", {{"id", bos}, {"type_id", type_id}}}};
    };
    const auto sequence = [](const char* id, int type_id) {
      return ordered_json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
    };
    post_processor = {
        {"type", "TemplateProcessing"},
        {"single", {special(0), sequence("A", 0)}},
        {"pair", {special(0), sequence("A", 0), special(1), sequence("B", 1)}},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {*model.bos_id}}, {"tokens", {bos}}}}}}};
  }

  ordered_json vocab = ordered_json::object();
  for (const auto& [token, id] : all_tokens_by_id(model))
    if (model.vocab.count(token)) vocab[token] = id;
  // "a b" strings are read by every tokenizers version; byte-level tokens never hold a plain space.
  ordered_json merges = ordered_json::array();
  for (const auto& [left, right] : model.merges) merges.push_back(left + " " + right);

  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = added;
  root["normalizer"] = model.normalizer == Normalizer::NFC ? ordered_json{{"type", "NFC"}} : ordered_json();
  root["pre_tokenizer"] = pre_tokenizer;
  root["post_processor"] = post_processor;
  root["decoder"] = byte_level(true, true, true);
  root["model"] = {{"type", "BPE"},
                   {"dropout", nullptr},
                   {"unk_token", nullptr},
                   {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr},
                   {"fuse_unk", false},
                   {"byte_fallback", false},
                   {"ignore_merges", model.ignore_merges},
                   {"vocab", vocab},
                   {"merges", merges}};
  return root;
}

ordered_json tokenizer_config(const BpeModel& model) {
  ordered_json decoder = ordered_json::object();
  std::vector<std::pair<std::string, int32_t>> specials(model.special_tokens.begin(),
                                                        model.special_tokens.end());
  std::sort(specials.begin(), specials.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  for (const auto& [token, id] : specials)
    decoder[std::to_string(id)] = {{"content", token}, {"lstrip", false},      {"normalized", false},
                                   {"rstrip", false},  {"single_word", false}, {"special", true}};
  ordered_json config;
  config["add_bos_token"] = model.add_bos;
  config["add_prefix_space"] = false;
  config["added_tokens_decoder"] = decoder;
  if (model.bos_id) config["bos_token"] = bos_text(model);
  config["clean_up_tokenization_spaces"] = false;
  // GPT2Tokenizer reads vocab.json + merges.txt; the Llama-3 and Qwen2 patterns need the generic fast
  // tokenizer.
  // Qwen2Tokenizer applies Qwen2's pattern and NFC to vocab.json + merges.txt as saetraj does.
  config["tokenizer_class"] = model.pre_tokenizer == PreTokenizer::GPT2    ? "GPT2Tokenizer"
                              : model.pre_tokenizer == PreTokenizer::QWEN2 ? "Qwen2Tokenizer"
                                                                           : "PreTrainedTokenizerFast";
  return config;
}

}  // namespace

void write_bpe_files(const std::string& folder, const BpeModel& model) {
  // Validates the model (merges in the vocabulary, unique ids) before anything is written.
  const ByteLevelBpe check(model);
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  SAETRAJ_CHECK(!ec, IoError, "cannot create tokenizer folder '", folder, "': ", ec.message());
  const std::filesystem::path dir(folder);

  write_text((dir / "tokenizer.json").string(), tokenizer_json(model).dump(2) + "\n");

  ordered_json vocab = ordered_json::object();
  for (const auto& [token, id] : all_tokens_by_id(model)) vocab[token] = id;
  write_text((dir / "vocab.json").string(), vocab.dump() + "\n");

  std::string merges = "#version: 0.2\n";
  for (const auto& [left, right] : model.merges) merges += left + " " + right + "\n";
  write_text((dir / "merges.txt").string(), merges);

  write_text((dir / "tokenizer_config.json").string(), tokenizer_config(model).dump(2) + "\n");
}

}  // namespace saetraj::tokenizer
