// GPU memory queries for builds with CUDA (gpu_memory.h).
#include "saetraj/pipeline/gpu_memory.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>

#include "saetraj/core/error.h"

namespace saetraj::pipeline {

bool gpu_memory_supported() { return true; }

GpuMemoryInfo gpu_memory(int device) {
  int previous = 0;
  cudaGetDevice(&previous);
  SAETRAJ_CHECK(cudaSetDevice(device) == cudaSuccess, Error, "cannot select CUDA device ", device);
  size_t free = 0, total = 0;
  const cudaError_t status = cudaMemGetInfo(&free, &total);
  cudaSetDevice(previous);
  SAETRAJ_CHECK(status == cudaSuccess, Error, "cudaMemGetInfo on device ", device, ": ", cudaGetErrorString(status));
  return {static_cast<int64_t>(free), static_cast<int64_t>(total)};
}

int64_t gpu_peak_allocated(int device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  return stats.allocated_bytes[0].peak;  // index 0: StatType::AGGREGATE (all pools)
}

void gpu_reset_peak(int device) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
}

}  // namespace saetraj::pipeline
