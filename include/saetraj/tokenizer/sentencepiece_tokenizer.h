// SentencePiece tokenizers (Gemma's tokenizer.model), through the sentencepiece library (opened at first
// use from libsaetraj_sentencepiece.so; see the NOTE in src/tokenizer/sentencepiece_api.h).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saetraj/tokenizer/tokenizer.h"

namespace saetraj::tokenizer {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // `bos_hint` (config.json's bos_token_id) is used when the model defines no BOS piece. A
  // tokenizer_config.json beside the model with "add_bos_token" decides adds_bos_by_default; without
  // one, a model with a BOS piece adds it (Gemma, Llama-2).
  SentencePieceTokenizer(const std::string& model_path, std::optional<int32_t> bos_hint);

  std::vector<int32_t> encode(const std::string& text) const override;
  // "▁" becomes a space, byte pieces "<0xNN>" become their byte, control pieces ("<bos>") stay as is.
  std::string token_text(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  bool adds_bos_by_default() const override { return add_bos_; }
  std::string kind() const override { return "sentencepiece"; }

  // The piece as stored in the model ("▁the", "<0x0A>", "<bos>").
  std::string piece(int32_t id) const;

 private:
  std::string raw_bytes(int32_t id) const;

  std::string path_;
  std::shared_ptr<void> model_;  // the library's processor, released through the module
  std::optional<int32_t> bos_id_;
  bool add_bos_ = false;
};

// Trains a Gemma-like SentencePiece model on `corpus_text` (one sentence per line) and writes it to
// `out_model_path`: BPE, byte fallback, digits split, whitespace kept verbatim (no dummy prefix, no
// collapsing), ids pad=0 eos=1 bos=2 unk=3. Deterministic for a given corpus.
void train_sentencepiece(const std::string& corpus_text, int vocab_size, const std::string& out_model_path);

}  // namespace saetraj::tokenizer
