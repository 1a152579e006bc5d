// Finds and opens libsaetraj_sentencepiece.so (see the NOTE in sentencepiece_api.h).
#include "sentencepiece_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::tokenizer {

namespace {

constexpr const char* kModuleName = "libsaetraj_sentencepiece.so";

// Where to look, first match wins: $SAETRAJ_SENTENCEPIECE_MODULE, beside the running program, its
// ../lib, and the build tree that compiled this file.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("SAETRAJ_SENTENCEPIECE_MODULE")) out.emplace_back(env);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path() / kModuleName).string());
    out.push_back((exe.parent_path().parent_path() / "lib" / kModuleName).string());
  }
  out.emplace_back(SAETRAJ_SENTENCEPIECE_MODULE);
  return out;
}

const SentencePieceApi* open_module() {
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizer runtime aborts on RTLD_DEEPBIND, and without it the protobuf clash comes back.
  throw IoError(
      "SentencePiece tokenizers are not available in AddressSanitizer builds (SAETRAJ_SANITIZE): "
      "the sanitizer runtime refuses the RTLD_DEEPBIND loading of " +
      std::string(kModuleName));
#endif
  const std::vector<std::string> paths = candidates();
  std::vector<std::string> failures;
  for (const std::string& path : paths) {
    if (!std::filesystem::is_regular_file(path)) continue;
    // Deliberately never closed: the library's static state lives as long as the process.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!handle) {
      failures.push_back(path + ": " + dlerror());
      continue;
    }
    using Entry = const SentencePieceApi* (*)();
    const auto entry = reinterpret_cast<Entry>(dlsym(handle, "saetraj_sentencepiece_api"));
    if (entry) return entry();
    failures.push_back(path + ": no saetraj_sentencepiece_api symbol");
  }
  throw IoError(str("cannot load the SentencePiece module ", kModuleName, "; looked at ", join(paths, ", "),
                    failures.empty() ? "" : "; failures: " + join(failures, "; ")));
}

}  // namespace

const SentencePieceApi& sentencepiece_api() {
  static std::once_flag once;
  static const SentencePieceApi* api = nullptr;
  std::call_once(once, [] { api = open_module(); });
  return *api;
}

}  // namespace saetraj::tokenizer
