// Training a Gemma-like SentencePiece model, for the synthetic Gemma fixture and the tests.
#include <sentencepiece_trainer.h>

#include <fstream>
#include <sstream>
#include <unordered_map>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/pre_tokenizer.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"

namespace saetraj::tokenizer {

namespace {

// Feeds the corpus line by line; the library's own input reading would need a temporary file.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::string& text) : in_(text) { Next(); }
  bool done() const override { return done_; }
  void Next() override { done_ = !std::getline(in_, line_); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::istringstream in_;
  std::string line_;
  bool done_ = false;
};

}  // namespace

void train_sentencepiece(const std::string& corpus_text, int vocab_size, const std::string& out_model_path) {
  require_valid_utf8(corpus_text, "SentencePiece training corpus");
  const std::unordered_map<std::string, std::string> options = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "1.0"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "false"},
      {"remove_extra_whitespaces", "false"},
      {"pad_id", "0"},
      {"eos_id", "1"},
      {"bos_id", "2"},
      {"unk_id", "3"},
      {"pad_piece", "<pad>"},
      {"eos_piece", "<eos>"},
      {"bos_piece", "<bos>"},
      {"unk_piece", "<unk>"},
      // One thread and no sentence sampling keep the result a function of the corpus alone.
      {"num_threads", "1"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"minloglevel", "2"},
  };
  LineIterator lines(corpus_text);
  std::string serialized;
  const auto status = sentencepiece::SentencePieceTrainer::Train(options, &lines, &serialized);
  SAETRAJ_CHECK(status.ok(), InputError, "SentencePiece training for '", out_model_path,
                "' failed: ", status.ToString());
  std::ofstream out(out_model_path, std::ios::binary);
  out.write(serialized.data(), static_cast<std::streamsize>(serialized.size()));
  out.close();
  SAETRAJ_CHECK(out, IoError, "cannot write SentencePiece model '", out_model_path, "'");
}

}  // namespace saetraj::tokenizer
