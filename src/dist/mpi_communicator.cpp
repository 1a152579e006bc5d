#include <mpi.h>

#include <algorithm>
#include <cstdlib>

#include "saetraj/core/error.h"
#include "saetraj/dist/communicator.h"

namespace saetraj::dist {
namespace {

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw IoError(str("MPI call ", what, " failed: ", std::string(msg, len)));
  }
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      std::atexit(finalize_at_exit);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool is_mpi() const override { return true; }
  void barrier() const override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  void broadcast(void* data, size_t bytes, int root) const override {
    // MPI counts are int: send large buffers in pieces.
    auto* p = static_cast<char*>(data);
    constexpr size_t kPiece = size_t{1} << 30;
    for (size_t off = 0; off < bytes; off += kPiece) {
      const int n = static_cast<int>(std::min(kPiece, bytes - off));
      check_mpi(MPI_Bcast(p + off, n, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }
  void allreduce_max(int64_t* data, size_t count) const override {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD),
              "MPI_Allreduce");
  }
  void allreduce_sum(int64_t* data, size_t count) const override {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
  }
  void allreduce_sum(double* data, size_t count) const override {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
  }
  void allgather(const void* data, size_t bytes, void* out) const override {
    check_mpi(MPI_Allgather(data, static_cast<int>(bytes), MPI_BYTE, out, static_cast<int>(bytes), MPI_BYTE,
                            MPI_COMM_WORLD),
              "MPI_Allgather");
  }
  void send(const void* data, size_t bytes, int dest, int tag) const override {
    const auto* p = static_cast<const char*>(data);
    constexpr size_t kPiece = size_t{1} << 30;
    for (size_t off = 0; off < bytes; off += kPiece) {
      const int n = static_cast<int>(std::min(kPiece, bytes - off));
      check_mpi(MPI_Send(p + off, n, MPI_BYTE, dest, tag, MPI_COMM_WORLD), "MPI_Send");
    }
  }
  void recv(void* data, size_t bytes, int source, int tag) const override {
    auto* p = static_cast<char*>(data);
    constexpr size_t kPiece = size_t{1} << 30;
    for (size_t off = 0; off < bytes; off += kPiece) {
      const int n = static_cast<int>(std::min(kPiece, bytes - off));
      check_mpi(MPI_Recv(p + off, n, MPI_BYTE, source, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    }
  }
  [[noreturn]] void abort(int code) const override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }
  const void* mpi_comm_handle() const override { return &comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_WORLD;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_world_communicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace saetraj::dist
