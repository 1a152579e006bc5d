// --device, --gpu and --exchange (NOTEs in compute_device.h). The only place that knows whether this build
// has the NCCL transport.
#include "saetraj/pipeline/compute_device.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <cstdlib>

#include "saetraj/core/error.h"
#ifdef SAETRAJ_WITH_CUDA
#include "saetraj/dist/nccl_transport.h"
#endif

namespace saetraj::pipeline {

const char* device_name(DeviceKind kind) { return kind == DeviceKind::Cuda ? "cuda" : "cpu"; }

const char* exchange_name(ExchangeKind kind) {
  switch (kind) {
    case ExchangeKind::Auto: return "auto";
    case ExchangeKind::Mpi: return "mpi";
    case ExchangeKind::Nccl: return "nccl";
  }
  return "?";
}

DeviceKind parse_device(const std::string& name) {
  if (name == "cpu") return DeviceKind::Cpu;
  if (name == "cuda") return DeviceKind::Cuda;
  throw InputError(str("--device must be cpu or cuda, got \"", name, "\""));
}

ExchangeKind parse_exchange(const std::string& name) {
  for (auto kind : {ExchangeKind::Auto, ExchangeKind::Mpi, ExchangeKind::Nccl}) {
    if (name == exchange_name(kind)) return kind;
  }
  throw InputError(str("--exchange must be auto, mpi or nccl, got \"", name, "\""));
}

torch::Device select_compute_device(DeviceKind kind, int gpu, const dist::Communicator& comm) {
  if (kind == DeviceKind::Cpu) return torch::kCPU;
  // Every rank must see a GPU before any goes on, else the others would wait in the next collective.
  const int count = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  const bool ok = count > 0 && gpu < count;
  if (comm.any(!ok)) {
    if (ok) throw InputError("--device cuda: another rank sees no usable CUDA device (its message says why)");
    if (count == 0) {
      throw InputError(str("--device cuda: rank ", comm.rank(),
                           " sees no CUDA device (no GPU on this node, CUDA_VISIBLE_DEVICES empty, or a CPU-only "
                           "LibTorch); use --device cpu, or run on GPU nodes (one GPU per rank)"));
    }
    throw InputError(str("--gpu ", gpu, ": rank ", comm.rank(), " sees only ", count, " CUDA device(s) (0..",
                         count - 1, ")"));
  }
  // Deterministic cuBLAS for fixed shapes, full float32 precision (NOTE in compute_device.h).
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setFloat32MatmulPrecision("highest");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu >= 0 ? gpu : dist::local_rank(comm) % count));
}

std::unique_ptr<dist::Transport> make_exchange_transport(ExchangeKind kind, const torch::Device& device,
                                                         const dist::Communicator& comm) {
  if (kind == ExchangeKind::Auto) kind = device.is_cuda() ? ExchangeKind::Nccl : ExchangeKind::Mpi;
  if (kind == ExchangeKind::Mpi) return dist::make_host_transport(comm);
  SAETRAJ_CHECK(device.is_cuda(), InputError,
                "--exchange nccl moves activations between GPUs and needs --device cuda; use --exchange mpi");
#ifdef SAETRAJ_WITH_CUDA
  return dist::make_nccl_transport(comm, device.index());
#else
  throw InputError(
      "--exchange nccl: this saetraj was built without the NCCL transport (cmake found no NCCL, or "
      "-DSAETRAJ_CUDA=OFF); rebuild against a CUDA LibTorch with NCCL (NCCL_HOME, /usr/local/cuda or the "
      "nvidia-nccl wheel), or use --exchange mpi");
#endif
}

}  // namespace saetraj::pipeline
