// --device: which transport the activation exchange uses (NOTE in activation_exchange.h).
#include <torch/cuda.h>

#include <cstdlib>

#include "saetraj/core/error.h"
#include "saetraj/pipeline/activation_exchange.h"
#ifdef SAETRAJ_WITH_CUDA
#include "saetraj/dist/nccl_transport.h"
#endif

namespace saetraj::pipeline {

namespace {

#ifdef SAETRAJ_WITH_CUDA
// This process's index among the ranks on its node, as the launcher tells it; the rank itself when no
// launcher variable is set (one node).
int local_rank(const dist::Communicator& comm) {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return comm.rank();
}
#endif

}  // namespace

std::unique_ptr<dist::Transport> make_exchange_transport(const std::string& device, const dist::Communicator& comm) {
  SAETRAJ_CHECK(device == "cpu" || device == "cuda", InputError, "--device must be cpu or cuda, got \"", device,
                "\"");
  if (device == "cpu") return dist::make_host_transport(comm);
#ifdef SAETRAJ_WITH_CUDA
  // Every rank must see a GPU before any enters NCCL's set-up, else the others would wait there forever.
  const bool available = torch::cuda::is_available();
  if (comm.any(!available)) {
    throw InputError(str("--device cuda: ",
                         available ? "another rank" : str("rank ", comm.rank()),
                         " sees no CUDA device (torch::cuda::is_available() is false). saetraj was built with "
                         "-DSAETRAJ_CUDA=ON, but it also needs a CUDA build of LibTorch and a GPU on every node; "
                         "use --device cpu otherwise"));
  }
  const int device_index = local_rank(comm) % static_cast<int>(torch::cuda::device_count());
  return dist::make_nccl_transport(comm, device_index);
#else
  throw InputError(
      "--device cuda: this saetraj was built without CUDA; rebuild with cmake -DSAETRAJ_CUDA=ON against a "
      "CUDA build of LibTorch with NCCL installed (NCCL_HOME or /usr/local/cuda), or use --device cpu");
#endif
}

}  // namespace saetraj::pipeline
