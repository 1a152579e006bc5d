#include "npy_header.h"

#include "saetraj/core/error.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>

namespace saetraj::io {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicBytes = 6;
// numpy itself refuses headers above 10,000 bytes by default; a larger length is a corrupt or hostile file
// and must not become an allocation of up to 4 GiB before the member's real size is known.
constexpr uint64_t kMaxDictBytes = 1 << 20;

struct NpyType {
  torch::ScalarType dtype;
  size_t itemsize;
};

// Little-endian types only: numpy writes '<' on every platform saetraj runs on.
const std::map<std::string, NpyType>& supported_types() {
  static const std::map<std::string, NpyType> types = {{"<f2", {torch::kFloat16, 2}},
                                                       {"<f4", {torch::kFloat32, 4}},
                                                       {"<f8", {torch::kFloat64, 8}},
                                                       {"<i4", {torch::kInt32, 4}},
                                                       {"<i8", {torch::kInt64, 8}}};
  return types;
}

// A cursor over the dict literal; every failure reports the whole dict, which is short.
class DictParser {
 public:
  DictParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(str(where_, " has a malformed .npy header (", what, " at character ", pos_, "): ", s_));
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t')) ++pos_;
  }
  bool at_end() const { return pos_ >= s_.size(); }
  bool consume(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) fail(str("expected '", c, "'"));
  }
  std::string quoted() {
    skip_space();
    if (at_end() || (s_[pos_] != '\'' && s_[pos_] != '"')) fail("expected a quoted string");
    const char quote = s_[pos_++];
    const size_t close = s_.find(quote, pos_);
    if (close == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(pos_, close - pos_);
    pos_ = close + 1;
    return out;
  }
  std::string word() {
    skip_space();
    const size_t start = pos_;
    while (pos_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    return s_.substr(start, pos_ - start);
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> out;
    while (!consume(')')) {
      skip_space();
      const size_t start = pos_;
      int64_t value = 0;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
        if (__builtin_mul_overflow(value, 10, &value) ||
            __builtin_add_overflow(value, s_[pos_] - '0', &value)) {
          fail("dimension too large");
        }
        ++pos_;
      }
      if (pos_ == start) fail("expected a non-negative integer dimension");
      if (pos_ < s_.size() && s_[pos_] == 'L') ++pos_;  // Python 2 longs
      out.push_back(value);
      if (!consume(',')) {
        expect(')');
        break;
      }
    }
    return out;
  }

 private:
  const std::string& s_;
  const std::string& where_;
  size_t pos_ = 0;
};

}  // namespace

NpyPreamble parse_npy_preamble(const uint8_t* first, size_t available, const std::string& where) {
  SAETRAJ_CHECK(std::memcmp(first, kMagic, std::min(available, kMagicBytes)) == 0 && available > 0,
                FormatError, where, " is not a .npy array: it does not start with the magic \\x93NUMPY");
  SAETRAJ_CHECK(available >= 10, FormatError, where, " ends inside its .npy header (", available, " bytes)");
  const int major = first[6];
  const int minor = first[7];
  NpyPreamble p;
  if (major == 1 && minor == 0) {
    p.preamble_bytes = 10;
    p.dict_bytes = static_cast<uint64_t>(first[8]) | (static_cast<uint64_t>(first[9]) << 8);
  } else if ((major == 2 || major == 3) && minor == 0) {
    SAETRAJ_CHECK(available >= 12, FormatError, where, " ends inside its .npy header");
    p.preamble_bytes = 12;
    p.dict_bytes = 0;
    for (int i = 3; i >= 0; --i) p.dict_bytes = (p.dict_bytes << 8) | first[8 + i];
  } else {
    throw FormatError(
        str(where, " has .npy format version ", major, ".", minor, "; expected 1.0, 2.0 or 3.0"));
  }
  SAETRAJ_CHECK(p.dict_bytes <= kMaxDictBytes, FormatError, where, " announces a .npy header of ", p.dict_bytes,
                " bytes, above the limit of ", kMaxDictBytes, "; the member is corrupt");
  return p;
}

NpyHeader parse_npy_dict(const std::string& dict, const std::string& where) {
  DictParser parser(dict, where);
  NpyHeader h;
  bool has_descr = false, has_order = false, has_shape = false;
  parser.expect('{');
  while (!parser.consume('}')) {
    const std::string key = parser.quoted();
    parser.expect(':');
    if (key == "descr" && !has_descr) {
      h.descr = parser.quoted();
      has_descr = true;
    } else if (key == "fortran_order" && !has_order) {
      const std::string value = parser.word();
      if (value != "False" && value != "True") parser.fail("fortran_order must be True or False");
      SAETRAJ_CHECK(value == "False", FormatError, where,
                    " is stored in Fortran (column-major) order, which saetraj does not read; save it in C "
                    "order (numpy.ascontiguousarray) instead");
      has_order = true;
    } else if (key == "shape" && !has_shape) {
      h.shape = parser.tuple();
      has_shape = true;
    } else {
      parser.fail(str("unexpected or repeated key '", key, "'"));
    }
    if (!parser.consume(',')) {
      parser.expect('}');
      break;
    }
  }
  parser.skip_space();
  if (!parser.at_end()) parser.fail("text after the dict");
  if (!has_descr || !has_order || !has_shape)
    parser.fail("expected the keys 'descr', 'fortran_order' and 'shape'");

  const auto type = supported_types().find(h.descr);
  SAETRAJ_CHECK(type != supported_types().end(), FormatError, where, " has unsupported dtype '", h.descr,
                "'; expected one of <f2, <f4, <f8, <i4, <i8");
  h.dtype = type->second.dtype;
  h.itemsize = type->second.itemsize;
  uint64_t bytes = h.itemsize;
  for (int64_t d : h.shape) {
    SAETRAJ_CHECK(!__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes), FormatError, where,
                  " has a shape whose byte size overflows 64 bits: ", dict);
  }
  h.data_bytes = bytes;
  return h;
}

std::string format_npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";  // a one-element Python tuple
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const bool v1 = dict.size() + 1 + 10 < 65536;
  const size_t preamble = v1 ? 10 : 12;
  // numpy pads so that the data starts on a 64-byte boundary; the dict ends with '\n'.
  dict.append((64 - (preamble + dict.size() + 1) % 64) % 64, ' ');
  dict += '\n';
  std::string out(kMagic, kMagicBytes);
  out += static_cast<char>(v1 ? 1 : 2);
  out += '\0';
  const uint64_t len = dict.size();
  for (size_t i = 0; i < preamble - 8; ++i) out += static_cast<char>((len >> (8 * i)) & 0xff);
  return out + dict;
}

}  // namespace saetraj::io
