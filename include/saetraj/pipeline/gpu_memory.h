// GPU memory as the CUDA runtime and LibTorch's caching allocator see it: what the memory plan checks
// before loading, and what the benchmark reports. Implemented in src/cuda/gpu_memory.cpp in builds with
// CUDA (SAETRAJ_CUDA), and by src/cuda/gpu_memory_none.cpp otherwise, where every call says that this
// build has no CUDA.
#pragma once

#include <cstdint>

namespace saetraj::pipeline {

struct GpuMemoryInfo {
  int64_t free = 0, total = 0;  // bytes
};

bool gpu_memory_supported();          // false in builds without CUDA
GpuMemoryInfo gpu_memory(int device);  // cudaMemGetInfo
int64_t gpu_peak_allocated(int device);  // the caching allocator's peak of allocated bytes
void gpu_reset_peak(int device);

}  // namespace saetraj::pipeline
