#include "reader_support.h"

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

#include <algorithm>

namespace saetraj::io {

namespace {

// Prefixes that Hugging Face checkpoints of the same model add or drop between versions and classes.
const char* const kKnownPrefixes[] = {"model.language_model.", "language_model.model.",
                                      "language_model.",       "model.",
                                      "transformer.",          "gpt_neox.",
                                      "base_model.model."};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

std::string missing_tensor_message(const std::string& name, const std::string& where,
                                   const std::vector<std::string>& available) {
  std::string message = str("tensor '", name, "' not found in ", where, " (", available.size(), " tensors");
  // The most useful names to show are the ones that look like the requested one.
  std::vector<std::string> similar = available;
  std::stable_sort(similar.begin(), similar.end(), [&](const std::string& a, const std::string& b) {
    return common_prefix(a, name) > common_prefix(b, name);
  });
  if (similar.size() > 5) similar.resize(5);
  if (!similar.empty()) message += "; similar: " + join(similar, ", ");
  message += ")";
  for (const char* prefix : kKnownPrefixes) {
    const std::string p = prefix;
    if (std::find(available.begin(), available.end(), p + name) != available.end()) {
      return message + str("; the file has '", p + name, "': its names carry the prefix '", p, "'");
    }
    if (starts_with(name, p) &&
        std::find(available.begin(), available.end(), name.substr(p.size())) != available.end()) {
      return message +
             str("; the file has '", name.substr(p.size()), "': its names lack the prefix '", p, "'");
    }
  }
  return message;
}

void check_convertible(torch::ScalarType stored, torch::ScalarType as, const std::string& what) {
  const bool as_float = c10::isFloatingType(as);
  SAETRAJ_CHECK(as_float || c10::isIntegralType(as, /*includeBool=*/true), InputError, "cannot load ", what,
                " as ", c10::toString(as), ": only real floating-point and integer types are supported");
  SAETRAJ_CHECK(c10::isFloatingType(stored) == as_float, FormatError, what, " is stored as ",
                c10::toString(stored), ", which cannot be loaded as ", c10::toString(as),
                " without changing its values; expected a ", as_float ? "floating-point" : "integer",
                " tensor");
}

void check_shape(const std::vector<int64_t>& found, const std::vector<int64_t>& expected,
                 const std::string& name, const std::string& file) {
  SAETRAJ_CHECK(found == expected, FormatError, "tensor '", name, "' in ", file,
                " has wrong shape; expected ", shape_str(expected), ", got ", shape_str(found));
}

}  // namespace saetraj::io
