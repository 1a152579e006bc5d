// Byte-level BPE (GPT-2, Llama-3, Qwen2/Qwen3): bytes mapped to printable unicode characters, text split by a
// pre-tokenization pattern (PCRE2 with Unicode classes), each piece merged by rank.
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "saetraj/tokenizer/pre_tokenizer.h"
#include "saetraj/tokenizer/tokenizer.h"

namespace saetraj::tokenizer {

// What a tokenizer.json's normalizer does to text before pre-tokenization: nothing (GPT-2, Llama-3) or
// Unicode NFC (Qwen2, Qwen3). Added tokens are cut out of the raw text first, as tokenizers does for tokens
// saved with "normalized": false.
enum class Normalizer { NONE, NFC };

// `utf8` (valid UTF-8) in Unicode Normalization Form C, computed with ICU.
std::string to_nfc(const std::string& utf8);

struct BpeModel {
  std::unordered_map<std::string, int32_t> vocab;           // byte-level string -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::map<std::string, int32_t> special_tokens;            // e.g. "<|endoftext|>" -> 50256
  PreTokenizer pre_tokenizer = PreTokenizer::GPT2;
  Normalizer normalizer = Normalizer::NONE;
  std::optional<int32_t> bos_id;
  bool add_bos = false;
  // Llama-3 (tiktoken) takes a word that is itself in the vocabulary as one token without merging.
  bool ignore_merges = false;
};

class ByteLevelBpe : public Tokenizer {
 public:
  explicit ByteLevelBpe(BpeModel model);
  // tokenizer.json (model.type "BPE"; merges as "a b" strings or [a, b] pairs; added_tokens;
  // pre_tokenizer decides GPT2, LLAMA3 or QWEN2 pattern; normalizer none or NFC; post_processor decides
  // add_bos).
  static ByteLevelBpe from_tokenizer_json(const std::string& path, std::optional<int32_t> bos_hint);
  static ByteLevelBpe from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                        std::optional<int32_t> bos_hint);

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string token_text(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override;
  std::optional<int32_t> bos_id() const override { return model_.bos_id; }
  bool adds_bos_by_default() const override { return model_.add_bos; }
  std::string kind() const override { return "byte-level-bpe"; }

  const BpeModel& model() const { return model_; }

 private:
  BpeModel model_;
  struct Impl;  // id table, merge ranks, word cache
  std::shared_ptr<const Impl> impl_;
};

// The GPT-2 byte <-> unicode mapping (bytes_to_unicode in the reference implementation).
const std::vector<std::string>& byte_to_unicode();  // 256 UTF-8 strings
// Raw bytes -> their byte-level string ("hi there" -> "hiĠthere").
std::string bytes_to_byte_level(const std::string& bytes);
// Byte-level string -> raw bytes; characters outside the table are kept as their UTF-8.
std::string byte_level_to_bytes(const std::string& byte_level);

// True when the tokenizer.json at `path` describes byte-level BPE (a ByteLevel pre-tokenizer, no byte
// fallback), false for other tokenizer.json files (Gemma's converted SentencePiece, for instance).
bool is_byte_level_tokenizer_json(const std::string& path);

// Learns merges from `corpus` until the vocabulary (256 byte tokens + merges + special tokens) reaches
// `vocab_size`; deterministic (ties broken by the pair's lexicographic order). Byte tokens take ids
// 0..255 in GPT-2's order, learned tokens follow, special tokens come last (as GPT-2's <|endoftext|>).
// bos_id / add_bos are left for the caller to set.
BpeModel train_byte_level_bpe(const std::string& corpus, int vocab_size,
                              const std::vector<std::string>& special_tokens, PreTokenizer pre);

// Writes tokenizer.json, vocab.json, merges.txt and tokenizer_config.json in the Hugging Face layout.
void write_bpe_files(const std::string& folder, const BpeModel& model);

}  // namespace saetraj::tokenizer
