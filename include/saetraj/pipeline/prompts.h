// Prompts from the command line, a text file (one per line) or JSONL ({"id": ..., "text": ...}), turned
// into token sequences. Prompts that cannot be analysed are kept in a list with the reason, never dropped
// silently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "saetraj/output/sweep_file.h"
#include "saetraj/tokenizer/tokenizer.h"

namespace saetraj::pipeline {

struct RawPrompt {
  RawPrompt(std::string id_ = {}, std::string text_ = {}, std::optional<std::vector<int32_t>> ids_ = std::nullopt,
            std::string unusable_ = {})
      : id(std::move(id_)), text(std::move(text_)), ids(std::move(ids_)), unusable(std::move(unusable_)) {}

  std::string id;
  std::string text;
  std::optional<std::vector<int32_t>> ids;  // given directly as token ids
  std::string unusable;  // why the input line could not be read (a malformed JSONL line); "" when it could
};

// Reads a .txt (one prompt per line; empty lines are prompts too, and are reported) or .jsonl/.json file.
// A malformed JSONL line (invalid JSON or UTF-8, no string "text") becomes a prompt with `unusable` set,
// which prepare_prompts lists as skipped; with `strict`, it is a FormatError naming the file and line.
std::vector<RawPrompt> read_prompt_file(const std::string& path, bool strict = false);
// "12, 345, 6" -> ids; InputError on anything else.
std::vector<int32_t> parse_token_ids(const std::string& text);

struct TokenizeSettings {
  bool prepend_bos = false;
  int32_t bos_id = -1;
  int64_t max_tokens = 0;      // truncate to this many tokens (BOS included); 0 = no truncation
  int64_t context_length = 0;  // the model's
  int64_t vocab_size = 0;
};

struct PreparedPrompts {
  std::vector<output::PromptEntry> prompts;
  std::vector<output::SkippedPrompt> skipped;
};

PreparedPrompts prepare_prompts(const std::vector<RawPrompt>& raw, const tokenizer::Tokenizer& tokenizer,
                                const TokenizeSettings& settings);

}  // namespace saetraj::pipeline
