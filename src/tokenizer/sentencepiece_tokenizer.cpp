#include "saetraj/tokenizer/sentencepiece_tokenizer.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/tokenizer/pre_tokenizer.h"
#include "sentencepiece_api.h"

namespace saetraj::tokenizer {

namespace {

// "<0x0A>" -> 0x0A; nullopt for any other piece.
std::optional<char> byte_piece_value(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return std::nullopt;
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<char>(hi * 16 + lo);
}

const std::string kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

std::optional<bool> add_bos_from_config(const std::string& model_path) {
  const auto config = std::filesystem::path(model_path).parent_path() / "tokenizer_config.json";
  if (!std::filesystem::is_regular_file(config)) return std::nullopt;
  std::ifstream in(config);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError(str("tokenizer file '", config.string(), "' is not valid JSON: ", e.what()));
  }
  if (j.is_object() && j.contains("add_bos_token") && j["add_bos_token"].is_boolean())
    return j["add_bos_token"].get<bool>();
  return std::nullopt;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path, std::optional<int32_t> bos_hint)
    : path_(model_path) {
  SAETRAJ_CHECK(std::filesystem::is_regular_file(model_path), FormatError, "tokenizer file '", model_path,
                "' does not exist");
  const SentencePieceApi& api = sentencepiece_api();
  std::string error;
  void* model = api.load(model_path, &error);
  SAETRAJ_CHECK(model, FormatError, "tokenizer file '", model_path,
                "' is not a SentencePiece model: ", error);
  model_ = std::shared_ptr<void>(model, api.release);
  const int model_bos = api.bos_id(model_.get());
  if (model_bos >= 0)
    bos_id_ = model_bos;
  else
    bos_id_ = bos_hint;
  if (bos_id_)
    SAETRAJ_CHECK(*bos_id_ >= 0 && *bos_id_ < vocab_size(), FormatError, "tokenizer file '", model_path,
                  "': BOS id ", *bos_id_, " is outside the vocabulary of ", vocab_size(), " pieces");
  add_bos_ = add_bos_from_config(model_path).value_or(bos_id_.has_value());
}

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string& text) const {
  require_valid_utf8(text, "text to tokenize");
  std::vector<int> ids;
  std::string error;
  SAETRAJ_CHECK(sentencepiece_api().encode(model_.get(), text, &ids, &error), InputError,
                "SentencePiece cannot encode the text with '", path_, "': ", error);
  return {ids.begin(), ids.end()};
}

std::string SentencePieceTokenizer::piece(int32_t id) const {
  SAETRAJ_CHECK(id >= 0 && id < vocab_size(), InputError, "token id ", id, " is not in this vocabulary (",
                vocab_size(), " ids)");
  return sentencepiece_api().id_to_piece(model_.get(), id);
}

std::string SentencePieceTokenizer::raw_bytes(int32_t id) const {
  const std::string p = piece(id);
  const SentencePieceApi& api = sentencepiece_api();
  if (api.is_byte(model_.get(), id))
    if (const auto byte = byte_piece_value(p)) return std::string(1, *byte);
  if (api.is_control(model_.get(), id) || api.is_unknown(model_.get(), id)) return p;
  std::string out;
  for (size_t pos = 0; pos < p.size();) {
    if (p.compare(pos, kSpaceMark.size(), kSpaceMark) == 0) {
      out += ' ';
      pos += kSpaceMark.size();
    } else {
      out += p[pos++];
    }
  }
  return out;
}

std::string SentencePieceTokenizer::token_text(int32_t id) const { return sanitize_utf8(raw_bytes(id)); }

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += raw_bytes(id);
  return sanitize_utf8(bytes);
}

int64_t SentencePieceTokenizer::vocab_size() const { return sentencepiece_api().piece_size(model_.get()); }

}  // namespace saetraj::tokenizer
