// Unicode normalization of text before byte-level BPE (Qwen2/Qwen3's tokenizer.json asks for NFC).
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cstdint>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/byte_level_bpe.h"

namespace saetraj::tokenizer {

std::string to_nfc(const std::string& utf8) {
  // ASCII is its own NFC: most text never reaches ICU.
  if (std::all_of(utf8.begin(), utf8.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return utf8;
  SAETRAJ_CHECK(utf8.size() <= static_cast<size_t>(INT32_MAX), InputError, "text of ", utf8.size(),
                " bytes is too long to normalize (ICU takes at most 2^31 - 1)");
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  SAETRAJ_CHECK(U_SUCCESS(status), IoError, "ICU cannot load its NFC data: ", u_errorName(status));
  const icu::UnicodeString text = icu::UnicodeString::fromUTF8(icu::StringPiece(utf8.data(),
                                                                               static_cast<int32_t>(utf8.size())));
  if (nfc->isNormalized(text, status) && U_SUCCESS(status)) return utf8;
  status = U_ZERO_ERROR;
  const icu::UnicodeString normalized = nfc->normalize(text, status);
  SAETRAJ_CHECK(U_SUCCESS(status), InputError, "NFC normalization failed: ", u_errorName(status));
  std::string out;
  normalized.toUTF8String(out);
  return out;
}

}  // namespace saetraj::tokenizer
