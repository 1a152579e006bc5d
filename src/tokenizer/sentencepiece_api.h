// The boundary between saetraj and the sentencepiece library.
//
// [NOTE] Why sentencepiece lives in a separately loaded module
// Debian's libsentencepiece carries its own copy of protobuf-lite (3.1x) and exports its symbols;
// LibTorch needs the system libprotobuf (3.21). Linked into one program, libprotobuf's start-up code
// binds to sentencepiece's older copies and crashes before main. So the sentencepiece calls sit in a
// small module (libsaetraj_sentencepiece.so) that is opened on first use with RTLD_LOCAL | RTLD_DEEPBIND:
// its protobuf symbols stay out of the global scope and it resolves its own symbols first. Both sides
// share the one libstdc++, so std::string and std::vector cross the boundary safely.
#pragma once

#include <string>
#include <vector>

namespace saetraj::tokenizer {

struct SentencePieceApi {
  // A loaded model (sentencepiece::SentencePieceProcessor*), or nullptr with `error` set.
  void* (*load)(const std::string& path, std::string* error);
  void (*release)(void* model);
  bool (*encode)(const void* model, const std::string& text, std::vector<int>* ids, std::string* error);
  int (*piece_size)(const void* model);
  std::string (*id_to_piece)(const void* model, int id);
  bool (*is_byte)(const void* model, int id);
  bool (*is_control)(const void* model, int id);
  bool (*is_unknown)(const void* model, int id);
  int (*bos_id)(const void* model);
  // Trains with `options` (sentencepiece trainer flags) on the lines of `corpus`.
  bool (*train)(const std::vector<std::pair<std::string, std::string>>& options, const std::string& corpus,
                std::string* serialized_model, std::string* error);
};

// The module's table of functions, loaded once per process (IoError when the module cannot be found).
const SentencePieceApi& sentencepiece_api();

}  // namespace saetraj::tokenizer

extern "C" const saetraj::tokenizer::SentencePieceApi* saetraj_sentencepiece_api();
