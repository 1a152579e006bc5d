// Helpers shared by the explanation readers (bulk files, cache, feature API); private to src/graph.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "saetraj/graph/explanations.h"

namespace saetraj::graph {

// At most `max_bytes` of `text` (cut on a UTF-8 boundary), with "..." when cut: keeps messages short.
std::string clip(const std::string& text, size_t max_bytes);

// "123" -> 123; nullopt for anything but 1 to 18 decimal digits.
std::optional<int64_t> parse_index(const std::string& text);

// object["description"] checked to be a string within the limit; `where` prefixes the error message.
std::string checked_description(const nlohmann::json& object, const std::string& where,
                                const ExplanationLimits& limits);

}  // namespace saetraj::graph
