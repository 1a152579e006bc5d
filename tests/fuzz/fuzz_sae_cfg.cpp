// libFuzzer target for the sae_cfg reader (entry point and input layout in fuzz_entries.h).
#include "fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  saetraj::fuzz::run_sae_cfg(data, size);
  return 0;
}
