// Where a rank computes (--device cpu|cuda, --gpu) and how activations move between ranks (--exchange
// auto|mpi|nccl), parsed once at the CLI edge into enums.
//
// [NOTE] One GPU per rank. With --device cuda each rank binds one GPU: --gpu N when given, else its local
// rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, ...) modulo the devices it sees, so that SLURM's
// CUDA_VISIBLE_DEVICES (one GPU per task, or all of a node's) is respected as it is. Several ranks may
// share one GPU (tests, small models). Its SAEs, the model (on rank 0), the decomposition, both evolution
// methods, activation and top-k, and the readout all run there; only the [rows, k] top-k lists and the
// readout's top tokens come back to the host for the HDF5 writes.
//
// [NOTE] Identical output on GPUs. Every product runs on per-chunk shapes fixed by the prompt alone (as on
// the CPU), so ranks compute each row with the same kernels. cuBLAS is deterministic for fixed shapes once
// its workspace is fixed: saetraj sets CUBLAS_WORKSPACE_CONFIG=:4096:8 (unless already set) before the
// first product and keeps float32 products in full precision (no TF32). With that, the file is identical
// for 1, 2 and 3 ranks on the same GPU model; across GPU models, or against the CPU, lists agree up to ties
// within float rounding.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "saetraj/dist/communicator.h"
#include "saetraj/dist/transport.h"

namespace saetraj::pipeline {

enum class DeviceKind { Cpu, Cuda };
enum class ExchangeKind { Auto, Mpi, Nccl };

DeviceKind parse_device(const std::string& name);      // "cpu" | "cuda"; InputError otherwise
ExchangeKind parse_exchange(const std::string& name);  // "auto" | "mpi" | "nccl"; InputError otherwise
const char* device_name(DeviceKind kind);
const char* exchange_name(ExchangeKind kind);

// The device this rank computes on. Collective: for cuda, every rank checks that it sees a GPU and all
// fail together (InputError saying what to do) when one does not. `gpu` >= 0 overrides the choice by
// local rank. Sets up deterministic cuBLAS (NOTE above) for cuda.
torch::Device select_compute_device(DeviceKind kind, int gpu, const dist::Communicator& comm);

// The transport of the activation exchange: MPI from host memory, or NCCL between the ranks' GPUs
// (collective set-up). auto picks NCCL when computing on CUDA. InputError for NCCL without CUDA, or in a
// build without the NCCL transport.
std::unique_ptr<dist::Transport> make_exchange_transport(ExchangeKind kind, const torch::Device& device,
                                                         const dist::Communicator& comm);

}  // namespace saetraj::pipeline
