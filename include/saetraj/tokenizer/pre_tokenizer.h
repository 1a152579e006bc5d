// Pre-tokenization for byte-level BPE: added tokens are cut out literally, the rest is split into words
// by the GPT-2, Llama-3 or Qwen2 regular expression (PCRE2 with UTF and Unicode classes), and BPE then runs
// on each word separately.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace saetraj::tokenizer {

// QWEN2 (Qwen2, Qwen2.5, Qwen3) is Llama-3's pattern with digits taken one at a time (\p{N}).
enum class PreTokenizer { GPT2, LLAMA3, QWEN2 };

// The pattern exactly as Hugging Face tokenizers / tiktoken write it.
const std::string& pre_tokenizer_pattern(PreTokenizer pre);

// Throws InputError naming `what` and the byte offset of the first invalid sequence.
void require_valid_utf8(const std::string& text, const std::string& what);

// The words of `text` (valid UTF-8, else InputError); concatenated they give `text` back.
std::vector<std::string> pre_tokenize(const std::string& text, PreTokenizer pre);

struct TextSegment {
  std::string text;
  bool is_added_token = false;  // `text` is one of the added tokens, matched literally
};

// Cuts `text` at every occurrence of an added token (leftmost first; the longest token where several
// start at the same byte). Segments that are not added tokens are never empty.
std::vector<TextSegment> split_on_added_tokens(const std::string& text,
                                               const std::map<std::string, int32_t>& added_tokens);

}  // namespace saetraj::tokenizer
