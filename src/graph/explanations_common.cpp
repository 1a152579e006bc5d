#include "explanations_common.h"

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::graph {

namespace {
bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

void check_id(const char* what, const std::string& id) {
  bool ok = !id.empty() && id.size() <= 200 && id != "." && id != "..";
  for (char c : id) ok = ok && is_id_char(c);
  SAETRAJ_CHECK(ok, InputError, "Neuronpedia ", what, " '", clip(id, 80),
                "' is not valid: expected 1 to 200 characters from [A-Za-z0-9._-], such as ",
                what == std::string("model id") ? "gemma-2-2b" : "12-gemmascope-res-65k");
}
}  // namespace

void check_neuronpedia_source(const NeuronpediaSource& source) {
  check_id("model id", source.model_id);
  check_id("source id", source.source_id);
}

std::string clip(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return sanitize_utf8(text);
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return sanitize_utf8(text.substr(0, cut)) + "...";
}

std::optional<int64_t> parse_index(const std::string& text) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoll(text);
}

std::string checked_description(const nlohmann::json& object, const std::string& where,
                                const ExplanationLimits& limits) {
  const auto description = object.find("description");
  SAETRAJ_CHECK(description != object.end(), FormatError, where, ": no \"description\" key");
  SAETRAJ_CHECK(description->is_string(), FormatError, where,
                ": expected \"description\" to be a string, found ", description->type_name());
  const auto& text = description->get_ref<const std::string&>();
  SAETRAJ_CHECK(text.size() <= limits.max_description_bytes, FormatError, where, ": description of ",
                human_bytes(static_cast<double>(text.size())), " exceeds the limit of ",
                human_bytes(static_cast<double>(limits.max_description_bytes)));
  return text;
}

}  // namespace saetraj::graph
