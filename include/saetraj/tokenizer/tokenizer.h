// Tokenizers turn prompt text into token ids and give each id a display string for the output.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace saetraj::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Ids for `text`, without any BOS (the caller decides about BOS, SPEC 1.1).
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Readable UTF-8 text of one token (byte-level tokens decoded back to bytes; invalid UTF-8 replaced by
  // U+FFFD so the string is always valid UTF-8).
  virtual std::string token_text(int32_t id) const = 0;
  // Text of a sequence of ids (bytes joined before UTF-8 decoding).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // The BOS id and whether this tokenizer adds it by default (Gemma yes, GPT-2 no).
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual bool adds_bos_by_default() const = 0;
  virtual std::string kind() const = 0;  // "byte-level-bpe", "sentencepiece"
};

// Loads the tokenizer of a Hugging Face checkpoint folder: tokenizer.json, or vocab.json + merges.txt
// (byte-level BPE), or tokenizer.model (SentencePiece, when built with it). `bos_hint` is config.json's
// bos_token_id, used when the tokenizer files do not name one.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& folder, std::optional<int32_t> bos_hint);

}  // namespace saetraj::tokenizer
