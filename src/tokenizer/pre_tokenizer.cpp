#include "saetraj/tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <memory>

#include "saetraj/core/error.h"

namespace saetraj::tokenizer {

namespace {

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using Code = std::unique_ptr<pcre2_code, CodeDeleter>;
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

// [NOTE] Whitespace as Hugging Face tokenizers sees it. Its regexes (Oniguruma) take \s to be Unicode's
// White_Space property; PCRE2 with UCP also counts everything in its \h list, which keeps U+180E (MONGOLIAN
// VOWEL SEPARATOR, a format character since Unicode 6.3). Left alone, "\u180e\n" split differently from
// Hugging Face (tests/fidelity found it), so \s and \S are spelled out as White_Space before compiling.
// The patterns keep their published text, which is how tokenizer.json files are recognised.
std::string with_unicode_white_space(const std::string& pattern) {
  static const std::string white_space =
      R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') {
        out += in_class ? white_space : "[" + white_space + "]";
      } else if (next == 'S' && !in_class) {
        out += "[^" + white_space + "]";
      } else {
        if (next == 'S') throw std::logic_error("\\S inside a character class in '" + pattern + "'");
        out += c;
        out += next;
      }
      continue;
    }
    if (c == '[') in_class = true;
    if (c == ']') in_class = false;
    out += c;
  }
  return out;
}

Code compile(const std::string& published) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  const std::string pattern = with_unicode_white_space(published);
  Code code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr));
  // The patterns are constants of this file: failing to compile them is a build problem, not user input.
  if (!code) throw std::logic_error("PCRE2 cannot compile '" + pattern + "': " + pcre2_message(error));
  // JIT is only an acceleration; where the platform lacks it the interpreter gives the same matches.
  pcre2_jit_compile(code.get(), PCRE2_JIT_COMPLETE);
  return code;
}

const pcre2_code* compiled(PreTokenizer pre) {
  static const Code gpt2 = compile(pre_tokenizer_pattern(PreTokenizer::GPT2));
  static const Code llama3 = compile(pre_tokenizer_pattern(PreTokenizer::LLAMA3));
  static const Code qwen2 = compile(pre_tokenizer_pattern(PreTokenizer::QWEN2));
  switch (pre) {
    case PreTokenizer::LLAMA3: return llama3.get();
    case PreTokenizer::QWEN2: return qwen2.get();
    case PreTokenizer::GPT2: break;
  }
  return gpt2.get();
}

bool is_utf8_error(int rc) { return rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21; }

[[noreturn]] void throw_utf8_error(int rc, const pcre2_match_data* data, const std::string& what) {
  throw InputError(str(what, " is not valid UTF-8: ", pcre2_message(rc), " at byte offset ",
                       pcre2_get_startchar(const_cast<pcre2_match_data*>(data))));
}

size_t utf8_length_at(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  return c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
}

}  // namespace

const std::string& pre_tokenizer_pattern(PreTokenizer pre) {
  static const std::string gpt2 =
      R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
  static const std::string llama3 =
      R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
  // Qwen2's tokenizer.json (and transformers' PRETOKENIZE_REGEX in models/qwen2) spells it exactly so.
  static const std::string qwen2 =
      R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
  switch (pre) {
    case PreTokenizer::LLAMA3: return llama3;
    case PreTokenizer::QWEN2: return qwen2;
    case PreTokenizer::GPT2: break;
  }
  return gpt2;
}

void require_valid_utf8(const std::string& text, const std::string& what) {
  // pcre2_match validates the whole subject before matching; its report carries the offending offset.
  const pcre2_code* code = compiled(PreTokenizer::GPT2);
  MatchData data(pcre2_match_data_create_from_pattern(code, nullptr));
  const int rc =
      pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, data.get(), nullptr);
  if (is_utf8_error(rc)) throw_utf8_error(rc, data.get(), what);
}

std::vector<std::string> pre_tokenize(const std::string& text, PreTokenizer pre) {
  const pcre2_code* code = compiled(pre);
  MatchData data(pcre2_match_data_create_from_pattern(code, nullptr));
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::vector<std::string> words;
  size_t emitted = 0;  // text before this offset is in `words`
  size_t offset = 0;
  uint32_t options = 0;  // the first call checks the UTF-8 of the whole subject, later calls skip it
  while (offset < text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), offset, options, data.get(), nullptr);
    options = PCRE2_NO_UTF_CHECK;
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (is_utf8_error(rc)) throw_utf8_error(rc, data.get(), "text");
    SAETRAJ_CHECK(rc >= 0, InputError, "pre-tokenizing text failed: ", pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const size_t start = ovector[0], end = ovector[1];
    // Text the pattern skipped stays a word of its own, as Hugging Face's "Isolated" split keeps it.
    if (start > emitted) words.push_back(text.substr(emitted, start - emitted));
    if (end > start) {
      words.push_back(text.substr(start, end - start));
      emitted = offset = end;
    } else {
      emitted = std::max(emitted, start);
      offset = start + utf8_length_at(text, start);
    }
  }
  if (emitted < text.size()) words.push_back(text.substr(emitted));
  return words;
}

std::vector<TextSegment> split_on_added_tokens(const std::string& text,
                                               const std::map<std::string, int32_t>& added_tokens) {
  std::vector<const std::string*> by_length;
  for (const auto& entry : added_tokens)
    if (!entry.first.empty()) by_length.push_back(&entry.first);
  std::stable_sort(by_length.begin(), by_length.end(),
                   [](const std::string* a, const std::string* b) { return a->size() > b->size(); });

  std::vector<TextSegment> segments;
  size_t plain_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const std::string* found = nullptr;
    for (const std::string* token : by_length)
      if (text.compare(pos, token->size(), *token) == 0) {
        found = token;
        break;
      }
    if (!found) {
      ++pos;
      continue;
    }
    if (pos > plain_start) segments.push_back({text.substr(plain_start, pos - plain_start), false});
    segments.push_back({*found, true});
    pos += found->size();
    plain_start = pos;
  }
  if (plain_start < text.size()) segments.push_back({text.substr(plain_start), false});
  return segments;
}

}  // namespace saetraj::tokenizer
