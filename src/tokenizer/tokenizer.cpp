#include "saetraj/tokenizer/tokenizer.h"

#include <filesystem>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/byte_level_bpe.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"

namespace saetraj::tokenizer {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& folder, std::optional<int32_t> bos_hint) {
  const std::filesystem::path dir(folder);
  const auto file = [&](const char* name) { return (dir / name).string(); };
  const auto exists = [&](const char* name) { return std::filesystem::is_regular_file(dir / name); };

  // Gemma ships a converted, SentencePiece-style tokenizer.json next to its tokenizer.model; the
  // SentencePiece model is the original, so a tokenizer.json that is not byte-level yields to it.
  if (exists("tokenizer.json") &&
      !(exists("tokenizer.model") && !is_byte_level_tokenizer_json(file("tokenizer.json"))))
    return std::make_unique<ByteLevelBpe>(
        ByteLevelBpe::from_tokenizer_json(file("tokenizer.json"), bos_hint));
  if (exists("vocab.json") && exists("merges.txt"))
    return std::make_unique<ByteLevelBpe>(
        ByteLevelBpe::from_vocab_merges(file("vocab.json"), file("merges.txt"), bos_hint));
  if (exists("tokenizer.model"))
    return std::make_unique<SentencePieceTokenizer>(file("tokenizer.model"), bos_hint);
  throw FormatError(str("no tokenizer in '", folder,
                        "': looked for tokenizer.json, vocab.json + merges.txt, tokenizer.model"));
}

}  // namespace saetraj::tokenizer
