#include <cstdlib>
#include <cstring>

#include "saetraj/core/error.h"
#include "saetraj/dist/communicator.h"

namespace saetraj::dist {

void Communicator::broadcast_string(std::string& s, int root) const {
  uint64_t n = s.size();
  broadcast(&n, sizeof n, root);
  s.resize(n);
  if (n) broadcast(s.data(), n, root);
}

bool Communicator::any(bool local) const {
  int64_t v = local ? 1 : 0;
  allreduce_max(&v, 1);
  return v != 0;
}

namespace {

class SerialCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  bool is_mpi() const override { return false; }
  void barrier() const override {}
  void broadcast(void*, size_t, int) const override {}
  void allreduce_max(int64_t*, size_t) const override {}
  void allreduce_sum(int64_t*, size_t) const override {}
  void allreduce_sum(double*, size_t) const override {}
  void allgather(const void* data, size_t bytes, void* out) const override { std::memcpy(out, data, bytes); }
  void send(const void*, size_t, int, int) const override {
    throw Error("the serial communicator has no other rank to send to");
  }
  void recv(void*, size_t, int, int) const override {
    throw Error("the serial communicator has no other rank to receive from");
  }
  [[noreturn]] void abort(int code) const override { std::exit(code); }
  const void* mpi_comm_handle() const override { return nullptr; }
};

}  // namespace

std::unique_ptr<Communicator> make_serial_communicator() { return std::make_unique<SerialCommunicator>(); }

bool launched_under_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (std::getenv(var)) return true;
  }
  return false;
}

int local_rank(const Communicator& comm) {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return comm.rank();
}

}  // namespace saetraj::dist
