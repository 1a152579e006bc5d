// Reading a small JSON configuration file (an SAE's cfg.json, hyperparams.json, config.json) with one-line
// errors that name the file. Private to src/sae/.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "saetraj/core/error.h"

namespace saetraj::sae::detail {

// The file's JSON object; IoError when it cannot be read, FormatError when it is not a JSON object.
inline nlohmann::json read_json_object(const std::string& path) {
  std::ifstream in(path);
  SAETRAJ_CHECK(in.good(), IoError, "cannot open ", path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(str(path, ": not valid JSON (", e.what(), ")"));
  }
  SAETRAJ_CHECK(j.is_object(), FormatError, path, ": expected a JSON object");
  return j;
}

// A required positive integer field.
inline int64_t positive_int(const nlohmann::json& j, const char* key, const std::string& path) {
  SAETRAJ_CHECK(j.contains(key), FormatError, path, ": missing field \"", key, "\"");
  const auto& v = j[key];
  SAETRAJ_CHECK(v.is_number_integer() && v.get<int64_t>() > 0, FormatError, path, ": field \"", key,
                "\" must be a positive integer, got ", v.dump());
  return v.get<int64_t>();
}

// An optional field of the given JSON type: `fallback` when absent or null.
template <typename T>
T field_or(const nlohmann::json& j, const char* key, const T& fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    throw FormatError(str(path, ": field \"", key, "\" has the wrong type (", j[key].type_name(), ")"));
  }
}

}  // namespace saetraj::sae::detail
