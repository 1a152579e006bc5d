// GPU memory queries in builds without CUDA (gpu_memory.h): no GPU can be used, so every query is an error
// that says how to build for one.
#include "saetraj/core/error.h"
#include "saetraj/pipeline/gpu_memory.h"

namespace saetraj::pipeline {

namespace {
[[noreturn]] void no_cuda() {
  throw InputError("this saetraj was built without CUDA; build it against a CUDA LibTorch (the torch wheel in .venv)");
}
}  // namespace

bool gpu_memory_supported() { return false; }
GpuMemoryInfo gpu_memory(int) { no_cuda(); }
int64_t gpu_peak_allocated(int) { no_cuda(); }
void gpu_reset_peak(int) { no_cuda(); }

}  // namespace saetraj::pipeline
