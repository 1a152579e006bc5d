// Reading byte-level BPE from Hugging Face files: tokenizer.json, or the older vocab.json + merges.txt.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/core/json_number.h"
#include "saetraj/tokenizer/byte_level_bpe.h"

namespace saetraj::tokenizer {

namespace {

using nlohmann::json;

std::string read_file(const std::string& path) {
  SAETRAJ_CHECK(std::filesystem::is_regular_file(path), FormatError, "tokenizer file '", path,
                "' does not exist");
  std::ifstream in(path, std::ios::binary);
  SAETRAJ_CHECK(in, IoError, "cannot open tokenizer file '", path, "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json parse_json(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw FormatError(str("tokenizer file '", path, "' is not valid JSON: ", e.what()));
  }
}

// Values read with a clear message instead of nlohmann's type_error.
int32_t as_id(const json& value, const std::string& where) {
  SAETRAJ_CHECK(json_fits<int32_t>(value), FormatError, where, ": expected an integer id, found ",
                value.dump());
  return value.get<int32_t>();
}
std::string as_string(const json& value, const std::string& where) {
  SAETRAJ_CHECK(value.is_string(), FormatError, where, ": expected a string, found ", value.dump());
  return value.get<std::string>();
}

std::unordered_map<std::string, int32_t> read_vocab(const json& vocab, const std::string& where) {
  SAETRAJ_CHECK(vocab.is_object(), FormatError, where, ": expected an object of token -> id, found ",
                vocab.type_name());
  std::unordered_map<std::string, int32_t> out;
  for (const auto& [token, id] : vocab.items()) out.emplace(token, as_id(id, where + "['" + token + "']"));
  return out;
}

std::pair<std::string, std::string> split_merge(const std::string& line, const std::string& where) {
  const size_t space = line.find(' ');
  SAETRAJ_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size() &&
                    line.find(' ', space + 1) == std::string::npos,
                FormatError, where, ": expected two tokens separated by one space, found '", line, "'");
  return {line.substr(0, space), line.substr(space + 1)};
}

std::vector<std::pair<std::string, std::string>> read_json_merges(const json& merges) {
  SAETRAJ_CHECK(merges.is_array(), FormatError, "model.merges: expected an array, found ",
                merges.type_name());
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string where = str("model.merges[", i, "]");
    if (m.is_string()) {
      out.push_back(split_merge(m.get<std::string>(), where));
    } else {
      SAETRAJ_CHECK(m.is_array() && m.size() == 2, FormatError, where,
                    ": expected \"a b\" or [\"a\", \"b\"], found ", m.dump());
      out.emplace_back(as_string(m[0], where), as_string(m[1], where));
    }
  }
  return out;
}

// Walks the pre_tokenizer section (a single component or a Sequence of them).
void read_pre_tokenizer(const json& section, BpeModel& model, bool& has_byte_level) {
  if (section.is_null()) return;
  const std::string type = as_string(section.value("type", json()), "pre_tokenizer.type");
  if (type == "Sequence") {
    for (const json& part : section.value("pretokenizers", json::array()))
      read_pre_tokenizer(part, model, has_byte_level);
  } else if (type == "ByteLevel") {
    has_byte_level = true;
    SAETRAJ_CHECK(!section.value("add_prefix_space", false), FormatError,
                  "pre_tokenizer ByteLevel with add_prefix_space true is not supported (GPT-2 and Llama-3 "
                  "and Qwen2 use false)");
  } else if (type == "Split") {
    const json pattern = section.value("pattern", json::object());
    const std::string regex = as_string(pattern.value("Regex", json()), "pre_tokenizer Split pattern.Regex");
    if (regex == pre_tokenizer_pattern(PreTokenizer::LLAMA3))
      model.pre_tokenizer = PreTokenizer::LLAMA3;
    else if (regex == pre_tokenizer_pattern(PreTokenizer::QWEN2))
      model.pre_tokenizer = PreTokenizer::QWEN2;
    else
      SAETRAJ_CHECK(regex == pre_tokenizer_pattern(PreTokenizer::GPT2), FormatError,
                    "pre_tokenizer Split regex is none of GPT-2's, Llama-3's and Qwen2's: ", regex);
  } else {
    throw FormatError(
        str("pre_tokenizer type '", type, "' is not supported (expected ByteLevel, Split, Sequence)"));
  }
}

// No normalizer (GPT-2, Llama-3) or NFC (Qwen2, Qwen3); anything else is refused by its type.
Normalizer read_normalizer(const json& section) {
  if (section.is_null()) return Normalizer::NONE;
  SAETRAJ_CHECK(section.is_object(), FormatError, "normalizer: expected an object or null, found ",
                section.dump());
  const std::string type = as_string(section.value("type", json()), "normalizer.type");
  SAETRAJ_CHECK(type == "NFC", FormatError, "normalizer type '", type,
                "' is not supported for byte-level BPE (supported: none as GPT-2 and Llama-3, NFC as Qwen2 "
                "and Qwen3)");
  return Normalizer::NFC;
}

// The BOS that a TemplateProcessing puts before $A, searched through Sequence post-processors.
std::optional<std::string> template_bos(const json& section) {
  if (!section.is_object()) return std::nullopt;
  const std::string type = section.value("type", "");
  if (type == "Sequence") {
    for (const json& part : section.value("processors", json::array()))
      if (auto bos = template_bos(part)) return bos;
    return std::nullopt;
  }
  if (type != "TemplateProcessing") return std::nullopt;
  const json single = section.value("single", json::array());
  if (!single.is_array() || single.size() < 2 || !single[0].contains("SpecialToken")) return std::nullopt;
  for (size_t i = 1; i < single.size(); ++i)
    if (single[i].contains("Sequence") && single[i]["Sequence"].value("id", "") == "A")
      return as_string(single[0]["SpecialToken"].value("id", json()),
                       "post_processor single[0].SpecialToken.id");
  return std::nullopt;
}

std::optional<int32_t> id_of(const BpeModel& model, const std::string& token) {
  if (auto it = model.special_tokens.find(token); it != model.special_tokens.end()) return it->second;
  if (auto it = model.vocab.find(token); it != model.vocab.end()) return it->second;
  return std::nullopt;
}

BpeModel read_tokenizer_json(const json& root) {
  SAETRAJ_CHECK(root.is_object() && root.contains("model") && root["model"].is_object(), FormatError,
                "expected a top-level object with a 'model' object");
  const json& m = root["model"];
  const std::string type = m.contains("type") ? as_string(m["type"], "model.type") : "(missing)";
  SAETRAJ_CHECK(type == "BPE", FormatError, "model.type is '", type, "'; expected 'BPE'");
  SAETRAJ_CHECK(!m.value("byte_fallback", false), FormatError,
                "model.byte_fallback is true: a SentencePiece-style BPE, not byte-level BPE");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json v = m.value(key, json());
    SAETRAJ_CHECK(v.is_null() || v == "", FormatError, "model.", key, " ", v.dump(),
                  " is not supported by byte-level BPE");
  }
  const Normalizer normalizer = read_normalizer(root.value("normalizer", json()));

  BpeModel model;
  model.vocab = read_vocab(m.value("vocab", json()), "model.vocab");
  model.merges = read_json_merges(m.value("merges", json::array()));
  model.ignore_merges = m.value("ignore_merges", false);
  model.normalizer = normalizer;

  const json added = root.value("added_tokens", json::array());
  SAETRAJ_CHECK(added.is_array(), FormatError, "added_tokens: expected an array, found ", added.type_name());
  for (size_t i = 0; i < added.size(); ++i) {
    const std::string where = str("added_tokens[", i, "]");
    SAETRAJ_CHECK(added[i].is_object(), FormatError, where, ": expected an object, found ", added[i].dump());
    const std::string content = as_string(added[i].value("content", json()), where + ".content");
    const int32_t id = as_id(added[i].value("id", json()), where + ".id");
    const auto [it, inserted] = model.special_tokens.emplace(content, id);
    SAETRAJ_CHECK(inserted || it->second == id, FormatError, where, ": '", content, "' listed with ids ",
                  it->second, " and ", id);
  }

  bool has_byte_level = false;
  read_pre_tokenizer(root.value("pre_tokenizer", json()), model, has_byte_level);
  SAETRAJ_CHECK(has_byte_level, FormatError, "pre_tokenizer has no ByteLevel step: not a byte-level BPE");

  if (const auto bos = template_bos(root.value("post_processor", json()))) {
    const auto id = id_of(model, *bos);
    SAETRAJ_CHECK(id, FormatError, "post_processor BOS '", *bos,
                  "' is neither an added token nor in the vocab");
    model.bos_id = id;
    model.add_bos = true;
  }
  return model;
}

// tokenizer_config.json beside `sibling`, when present: its BOS name, and for vocab.json + merges.txt
// (`full`) also its added tokens and add_bos_token, which those files cannot hold.
void read_tokenizer_config(BpeModel& model, const std::string& sibling, bool full) {
  const std::string config_path =
      (std::filesystem::path(sibling).parent_path() / "tokenizer_config.json").string();
  if (!std::filesystem::is_regular_file(config_path)) return;
  const json config = parse_json(config_path);
  with_context(str("in tokenizer file '", config_path, "'"), [&] {
    SAETRAJ_CHECK(config.is_object(), FormatError, "expected a JSON object, found ", config.type_name());
    if (full) {
      const json decoder = config.value("added_tokens_decoder", json::object());
      SAETRAJ_CHECK(decoder.is_object(), FormatError, "added_tokens_decoder: expected an object, found ",
                    decoder.type_name());
      for (const auto& [id, entry] : decoder.items()) {
        SAETRAJ_CHECK(entry.is_object(), FormatError, "added_tokens_decoder['", id, "']: expected an object");
        int32_t value = 0;
        try {
          value = std::stoi(id);
        } catch (const std::exception&) {
          throw FormatError(str("added_tokens_decoder key '", id, "' is not an integer id"));
        }
        model.special_tokens[as_string(entry.value("content", json()),
                                       "added_tokens_decoder['" + id + "'].content")] = value;
      }
      model.add_bos = config.value("add_bos_token", false);
      // Qwen2/Qwen3 ship vocab.json + merges.txt too; transformers' Qwen2Tokenizer builds them with Qwen2's
      // pattern and NFC, as in their tokenizer.json.
      const json tokenizer_class = config.value("tokenizer_class", json());
      if (tokenizer_class == "Qwen2Tokenizer" || tokenizer_class == "Qwen2TokenizerFast") {
        model.pre_tokenizer = PreTokenizer::QWEN2;
        model.normalizer = Normalizer::NFC;
      }
    }
    json bos = config.value("bos_token", json());
    if (bos.is_object()) bos = bos.value("content", json());
    if (bos.is_string() && !model.bos_id) {
      const auto id = id_of(model, bos.get<std::string>());
      SAETRAJ_CHECK(id, FormatError, "bos_token '", bos.get<std::string>(),
                    "' is not a token of the vocabulary");
      model.bos_id = id;
    }
    return 0;
  });
}

void apply_bos_hint(BpeModel& model, std::optional<int32_t> bos_hint) {
  if (!model.bos_id) model.bos_id = bos_hint;
}

}  // namespace

ByteLevelBpe ByteLevelBpe::from_tokenizer_json(const std::string& path, std::optional<int32_t> bos_hint) {
  const json root = parse_json(path);
  return with_context(str("in tokenizer file '", path, "'"), [&] {
    BpeModel model = read_tokenizer_json(root);
    if (!model.bos_id) read_tokenizer_config(model, path, false);
    apply_bos_hint(model, bos_hint);
    return ByteLevelBpe(std::move(model));
  });
}

ByteLevelBpe ByteLevelBpe::from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                             std::optional<int32_t> bos_hint) {
  BpeModel model;
  const json vocab = parse_json(vocab_json);
  model.vocab = with_context(str("in tokenizer file '", vocab_json, "'"),
                             [&] { return read_vocab(vocab, "top level"); });

  std::istringstream lines(read_file(merges_txt));
  std::string line;
  for (size_t number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.rfind("#version", 0) == 0)) continue;
    model.merges.push_back(split_merge(line, str("tokenizer file '", merges_txt, "' line ", number)));
  }

  // GPT-2 ships <|endoftext|> only as a vocab.json entry; tokens of that form are its special tokens.
  for (const auto& [token, id] : model.vocab)
    if (token.size() > 4 && token.rfind("<|", 0) == 0 && token.compare(token.size() - 2, 2, "|>") == 0)
      model.special_tokens.emplace(token, id);

  // Newer checkpoints list added tokens and the BOS in tokenizer_config.json beside vocab.json.
  read_tokenizer_config(model, vocab_json, true);
  apply_bos_hint(model, bos_hint);
  return with_context(str("in tokenizer files '", vocab_json, "' and '", merges_txt, "'"),
                      [&] { return ByteLevelBpe(std::move(model)); });
}

bool is_byte_level_tokenizer_json(const std::string& path) {
  const json root = parse_json(path);
  if (!root.is_object() || !root.contains("pre_tokenizer")) return false;
  if (root.contains("model") && root["model"].is_object() && root["model"].value("byte_fallback", false))
    return false;
  // A ByteLevel step anywhere in the pre-tokenizer marks GPT-2 style byte-level BPE.
  return root["pre_tokenizer"].dump().find("\"ByteLevel\"") != std::string::npos;
}

}  // namespace saetraj::tokenizer
