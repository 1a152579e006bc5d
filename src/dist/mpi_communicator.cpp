#include <hdf5.h>
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
  int64_t hdf5_file_access() const override {
    const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, true);
    H5Pset_coll_metadata_write(fapl, true);
    return fapl;
  }
  int64_t hdf5_collective_transfer() const override {
    const hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    return dxpl;
  }

  // [NOTE] Why the evolution rows skip collective buffering. Each rank writes whole blocks of rows x k
  // (megabytes, contiguous within each chunk row), disjoint from every other rank's. Two-phase collective
  // I/O would first ship every rank's block to the aggregator ranks, which then write it: a copy through
  // MPI and serialised writing on the aggregators, for blocks that are already large and contiguous.
  // Individual I/O under the collective call lets each rank write its own; measured on the scaling
  // benchmark (2 ranks), rank 0's write time fell from 1.0-1.6 s to 0.8 s.
  int64_t hdf5_bulk_transfer() const override {
    const hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    H5Pset_dxpl_mpio_collective_opt(dxpl, H5FD_MPIO_INDIVIDUAL_IO);
    return dxpl;
  }

 private:
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_world_communicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace saetraj::dist
