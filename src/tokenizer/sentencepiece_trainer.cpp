// Training a Gemma-like SentencePiece model, for the synthetic Gemma fixture and the tests.
#include <fstream>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/pre_tokenizer.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"
#include "sentencepiece_api.h"

namespace saetraj::tokenizer {

void train_sentencepiece(const std::string& corpus_text, int vocab_size, const std::string& out_model_path) {
  require_valid_utf8(corpus_text, "SentencePiece training corpus");
  const std::vector<std::pair<std::string, std::string>> options = {
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
  std::string serialized, error;
  SAETRAJ_CHECK(sentencepiece_api().train(options, corpus_text, &serialized, &error), InputError,
                "SentencePiece training for '", out_model_path, "' failed: ", error);
  std::ofstream out(out_model_path, std::ios::binary);
  out.write(serialized.data(), static_cast<std::streamsize>(serialized.size()));
  out.close();
  SAETRAJ_CHECK(out, IoError, "cannot write SentencePiece model '", out_model_path, "'");
}

}  // namespace saetraj::tokenizer
