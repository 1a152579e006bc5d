// GPU-to-GPU transfers for the activation exchange over NCCL (NOTE in pipeline/activation_exchange.h).
// Built with the CUDA parts (SAETRAJ_CUDA, on by default with a CUDA LibTorch and NCCL), which define
// SAETRAJ_WITH_CUDA; the implementation uses the CUDA runtime and nccl.h alone (no LibTorch CUDA
// headers), so it compiles wherever the CUDA toolkit and NCCL are installed, with or without a GPU.
#pragma once

#include <memory>

#include "saetraj/dist/transport.h"

namespace saetraj::dist {

// Collective over `comm`: every rank selects `cuda_device` and creates its stream, rank 0 creates the
// NCCL unique id and broadcasts it over `comm`, and all ranks join one NCCL communicator of comm.size()
// ranks. When any rank fails to set up, every rank throws (no rank is left waiting in NCCL).
// Buffers given to send/recv are device memory of `cuda_device`; transfers are ordered after work
// already queued on the legacy default stream (where LibTorch copies tensors by default).
std::unique_ptr<Transport> make_nccl_transport(const Communicator& comm, int cuda_device);

}  // namespace saetraj::dist
