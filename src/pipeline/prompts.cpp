#include "saetraj/pipeline/prompts.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::pipeline {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Offset of the first byte that does not start a valid UTF-8 sequence (overlong forms, surrogates and
// code points past U+10FFFF included), or npos.
size_t first_invalid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size() || !is_valid_utf8(s.substr(i, n))) return i;
    i += n;
  }
  return std::string::npos;
}

// Why one JSONL line cannot be a prompt ("" when it can), with the prompt it holds.
std::string parse_jsonl_line(const std::string& line, RawPrompt& p) {
  const size_t bad = first_invalid_utf8(line);
  if (bad != std::string::npos) return str("not valid UTF-8 (byte offset ", bad, " of the line)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 9: ..." -> "parse error at column 9: ..."
    std::string why = e.what();
    if (const auto b = why.find("] "); why.rfind("[json.exception", 0) == 0 && b != std::string::npos) {
      why = why.substr(b + 2);
    }
    if (const auto at = why.find("at line 1, column"); at != std::string::npos) why.replace(at, 17, "at column");
    return str("not valid JSON (", why, ")");
  }
  if (!(j.is_object() && j.contains("text") && j["text"].is_string())) {
    return "expected an object with a string \"text\"";
  }
  p.text = j["text"].get<std::string>();
  if (j.contains("id")) p.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
  return "";
}
}  // namespace

std::vector<RawPrompt> read_prompt_file(const std::string& path, bool strict) {
  std::ifstream in(path, std::ios::binary);
  SAETRAJ_CHECK(in.good(), IoError, "cannot open prompt file ", path);
  const bool jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
  std::vector<RawPrompt> prompts;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!jsonl) {
      prompts.push_back({std::to_string(line_no), line, std::nullopt});
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank JSONL lines carry nothing
    RawPrompt p;
    p.id = std::to_string(line_no);
    const std::string why = parse_jsonl_line(line, p);
    if (!why.empty()) {
      SAETRAJ_CHECK(!strict, FormatError, path, ":", line_no, ": ", why,
                    "; fix the line, or run without --strict-input to skip such lines");
      // One bad line of a large corpus costs that line only: it is listed under /skipped, as its id the line.
      p.text = sanitize_utf8(line);
      p.unusable = str("line ", line_no, ": ", why);
    }
    prompts.push_back(std::move(p));
  }
  return prompts;
}

std::vector<int32_t> parse_token_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    SAETRAJ_CHECK(b != std::string::npos, InputError, "token id list \"", text, "\" has an empty entry");
    const std::string t = item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SAETRAJ_CHECK(used == t.size() && v >= 0 && v <= INT32_MAX, InputError, "\"", t,
                  "\" is not a token id (non-negative integer) in \"", text, "\"");
    ids.push_back(static_cast<int32_t>(v));
  }
  SAETRAJ_CHECK(!ids.empty(), InputError, "empty token id list");
  return ids;
}

PreparedPrompts prepare_prompts(const std::vector<RawPrompt>& raw, const tokenizer::Tokenizer& tokenizer,
                                const TokenizeSettings& settings) {
  PreparedPrompts out;
  for (size_t i = 0; i < raw.size(); ++i) {
    const RawPrompt& r = raw[i];
    auto skip = [&](const std::string& reason) {
      out.skipped.push_back({static_cast<int64_t>(i), r.id, r.text, reason});
    };
    if (!r.unusable.empty()) {
      skip(r.unusable);
      continue;
    }
    std::vector<int32_t> ids;
    if (r.ids) {
      ids = *r.ids;
    } else {
      if (r.text.empty()) {
        skip("empty prompt");
        continue;
      }
      if (!is_valid_utf8(r.text)) {
        skip("prompt is not valid UTF-8");
        continue;
      }
      ids = tokenizer.encode(r.text);
    }
    if (settings.prepend_bos) ids.insert(ids.begin(), settings.bos_id);
    bool bad_id = false;
    for (int32_t id : ids) bad_id |= id < 0 || id >= settings.vocab_size;
    if (bad_id) {
      skip(str("a token id is outside the vocabulary [0, ", settings.vocab_size, ")"));
      continue;
    }
    if (settings.max_tokens > 0 && static_cast<int64_t>(ids.size()) > settings.max_tokens) {
      ids.resize(settings.max_tokens);
    }
    if (static_cast<int64_t>(ids.size()) > settings.context_length) {
      skip(str("too long: ", ids.size(), " tokens, the model's context is ", settings.context_length,
               " (use --max-tokens to truncate)"));
      continue;
    }
    if (ids.size() < 2) {
      skip(str("only ", ids.size(), " token(s): a prompt needs at least 2 tokens to have a length to analyse"));
      continue;
    }
    output::PromptEntry e;
    e.id = r.id;
    e.text = r.ids ? tokenizer.decode(*r.ids) : r.text;
    e.ids = ids;
    for (int32_t id : ids) e.tokens.push_back(tokenizer.token_text(id));
    out.prompts.push_back(std::move(e));
  }
  return out;
}

}  // namespace saetraj::pipeline
