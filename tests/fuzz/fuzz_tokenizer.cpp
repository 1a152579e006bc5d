// libFuzzer target for the tokenizer reader (entry point and input layout in fuzz_entries.h).
#include "fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  saetraj::fuzz::run_tokenizer(data, size);
  return 0;
}
