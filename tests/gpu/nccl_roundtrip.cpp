// The NCCL transport on real GPUs, outside the sweep: under `mpirun -n R` (R >= 2, one GPU per rank, or
// ranks sharing GPUs), rank 0 sends every other rank three buffers of known bytes in one grouped call
// and each receiver checks them. CI only compiles and links this (no GPU there); run it by hand on a GPU
// node (built with the CUDA parts, the default with the torch wheel): `mpirun -n 2 build/saetraj_nccl_roundtrip`.
#include <cuda_runtime.h>

#include <cstdio>
#include <deque>
#include <vector>

#include "saetraj/core/error.h"
#include "saetraj/dist/communicator.h"
#include "saetraj/dist/nccl_transport.h"

namespace {

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw saetraj::Error(saetraj::str(what, " failed: ", cudaGetErrorString(rc)));
}

// Device memory holding `bytes` bytes, freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) { check(cudaMalloc(&data_, bytes), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

// Byte i of buffer b as sent to rank r.
unsigned char pattern(int r, size_t b, size_t i) { return static_cast<unsigned char>((r * 131 + b * 31 + i) % 251); }

}  // namespace

int main() {
  using namespace saetraj;
  const auto comm = dist::make_world_communicator();
  try {
    SAETRAJ_CHECK(comm->size() >= 2, InputError, "run under mpirun with at least 2 ranks");
    int n_devices = 0;
    // No GPU (CI): exit 77, which ctest counts as skipped; every rank sees the same machine.
    if (cudaGetDeviceCount(&n_devices) != cudaSuccess || n_devices == 0) {
      if (comm->rank() == 0) std::fprintf(stderr, "nccl_roundtrip: no CUDA device is visible; skipped\n");
      return 77;
    }
    const auto transport = dist::make_nccl_transport(*comm, comm->rank() % n_devices);
    // Sizes of the exchange's three messages for N = 256, d = 2304, H = 8 (Gemma-2-2b): resid_pre,
    // pattern, head outputs.
    const std::vector<size_t> sizes = {4 * 256 * 2304, 4 * 8 * 256 * 256, 4 * 8 * 256 * 2304};
    int bad = 0;
    for (int r = 1; r < comm->size(); ++r) {
      if (comm->rank() != 0 && comm->rank() != r) continue;
      std::deque<DeviceBuffer> device;  // (a deque: DeviceBuffer is neither copied nor moved)
      for (size_t b = 0; b < sizes.size(); ++b) device.emplace_back(sizes[b]);
      if (comm->rank() == 0) {
        std::vector<dist::SendBuffer> send;
        for (size_t b = 0; b < sizes.size(); ++b) {
          std::vector<unsigned char> host(sizes[b]);
          for (size_t i = 0; i < host.size(); ++i) host[i] = pattern(r, b, i);
          check(cudaMemcpy(device[b].data(), host.data(), host.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
          send.push_back({device[b].data(), device[b].bytes()});
        }
        transport->send(send, r, 0);
      } else {
        std::vector<dist::RecvBuffer> recv;
        for (auto& d : device) recv.push_back({d.data(), d.bytes()});
        transport->recv(recv, 0, 0);
        for (size_t b = 0; b < sizes.size(); ++b) {
          std::vector<unsigned char> host(sizes[b]);
          check(cudaMemcpy(host.data(), device[b].data(), host.size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
          for (size_t i = 0; i < host.size(); ++i) bad += host[i] != pattern(r, b, i);
        }
      }
    }
    int64_t total_bad = bad;
    comm->allreduce_sum(&total_bad, 1);
    if (comm->rank() == 0) {
      std::printf("nccl roundtrip: %d rank(s), %s\n", comm->size(),
                  total_bad == 0 ? "all bytes arrived" : "WRONG BYTES RECEIVED");
    }
    return total_bad == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saetraj_nccl_roundtrip: rank %d: %s\n", comm->rank(), e.what());
    comm->abort(1);
  }
}
