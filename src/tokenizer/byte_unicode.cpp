// GPT-2's reversible byte <-> unicode table: every byte gets a printable character, so that BPE
// vocabularies can be stored as text. Printable Latin-1 bytes map to themselves; the other 68 bytes
// (controls, space, DEL, NBSP, soft hyphen) map in increasing order to U+0100, U+0101, ...
#include <algorithm>
#include <unordered_map>

#include "saetraj/tokenizer/byte_level_bpe.h"

namespace saetraj::tokenizer {

namespace {

bool maps_to_itself(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

std::string utf8_of(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {  // the table only reaches U+0143, so two bytes suffice
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

const std::unordered_map<std::string, unsigned char>& unicode_to_byte() {
  static const auto table = [] {
    std::unordered_map<std::string, unsigned char> t;
    for (int b = 0; b < 256; ++b) t.emplace(byte_to_unicode()[b], static_cast<unsigned char>(b));
    return t;
  }();
  return table;
}

}  // namespace

const std::vector<std::string>& byte_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = utf8_of(maps_to_itself(b) ? static_cast<uint32_t>(b) : next++);
    return t;
  }();
  return table;
}

std::string bytes_to_byte_level(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += byte_to_unicode()[c];
  return out;
}

std::string byte_level_to_bytes(const std::string& byte_level) {
  std::string out;
  out.reserve(byte_level.size());
  for (size_t i = 0; i < byte_level.size();) {
    const auto c = static_cast<unsigned char>(byte_level[i]);
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    len = std::min(len, byte_level.size() - i);
    const std::string ch = byte_level.substr(i, len);
    const auto it = unicode_to_byte().find(ch);
    if (it != unicode_to_byte().end())
      out += static_cast<char>(it->second);
    else
      out += ch;
    i += len;
  }
  return out;
}

}  // namespace saetraj::tokenizer
