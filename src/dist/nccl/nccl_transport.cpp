// Compiled only in CUDA builds (CMakeLists.txt adds this folder when SAETRAJ_CUDA is ON).
#include "saetraj/dist/nccl_transport.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>
#include <utility>

#include "saetraj/core/error.h"

namespace saetraj::dist {

namespace {

std::string cuda_text(cudaError_t rc) {
  return str(cudaGetErrorString(rc), " (", cudaGetErrorName(rc), ")");
}

void check_cuda(cudaError_t rc, const std::string& what) {
  if (rc != cudaSuccess) throw Error(str("CUDA call ", what, " failed: ", cuda_text(rc)));
}

void check_nccl(ncclResult_t rc, const std::string& what, ncclComm_t comm = nullptr) {
  if (rc == ncclSuccess) return;
  std::string detail = ncclGetErrorString(rc);
  if (comm) {
    const char* last = ncclGetLastError(comm);
    if (last && *last) detail += str("; ", last);
  }
  throw Error(str("NCCL call ", what, " failed: ", detail,
                  " (set NCCL_DEBUG=INFO for NCCL's own account of the failure)"));
}

// The stream the transfers run on. Created blocking (not cudaStreamNonBlocking) on purpose: work on it
// then waits for what is queued on the legacy default stream, where LibTorch's tensor.to(cuda) copies go.
class Stream {
 public:
  Stream() { check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class NcclComm {
 public:
  NcclComm(int n_ranks, const ncclUniqueId& id, int rank) {
    check_nccl(ncclCommInitRank(&comm_, n_ranks, id, rank), str("ncclCommInitRank (rank ", rank, " of ", n_ranks, ")"));
  }
  ~NcclComm() {
    if (comm_) ncclCommDestroy(comm_);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  ncclComm_t get() const { return comm_; }

 private:
  ncclComm_t comm_ = nullptr;
};

class NcclTransport final : public Transport {
 public:
  NcclTransport(const Communicator& comm, int cuda_device) : device_(cuda_device) {
    // Local set-up first; all ranks learn whether every rank managed before any enters NCCL.
    std::string local_error;
    try {
      check_cuda(cudaSetDevice(device_), str("cudaSetDevice(", device_, ")"));
      stream_ = std::make_unique<Stream>();
    } catch (const Error& e) {
      local_error = e.what();
    }
    ncclUniqueId id{};
    if (comm.rank() == 0 && local_error.empty()) {
      const ncclResult_t rc = ncclGetUniqueId(&id);
      if (rc != ncclSuccess) local_error = str("NCCL call ncclGetUniqueId failed: ", ncclGetErrorString(rc));
    }
    if (comm.any(!local_error.empty())) {
      throw Error(local_error.empty()
                      ? std::string("another rank could not set up its GPU for the NCCL activation exchange")
                      : str("rank ", comm.rank(), " could not set up GPU ", device_,
                            " for the NCCL activation exchange: ", local_error));
    }
    comm.broadcast(&id, sizeof id, 0);
    nccl_ = std::make_unique<NcclComm>(comm.size(), id, comm.rank());
  }

  int cuda_device() const override { return device_; }

  void send(const std::vector<SendBuffer>& buffers, int dest, int) const override {
    grouped("ncclSend", [&] {
      for (const auto& b : buffers) {
        const ncclResult_t rc = ncclSend(b.data, b.bytes, ncclChar, dest, nccl_->get(), stream_->get());
        if (rc != ncclSuccess) return std::make_pair(rc, str("ncclSend (", b.bytes, " bytes to rank ", dest, ")"));
      }
      return std::make_pair(ncclSuccess, std::string());
    });
  }

  void recv(const std::vector<RecvBuffer>& buffers, int source, int) const override {
    grouped("ncclRecv", [&] {
      for (const auto& b : buffers) {
        const ncclResult_t rc = ncclRecv(b.data, b.bytes, ncclChar, source, nccl_->get(), stream_->get());
        if (rc != ncclSuccess) {
          return std::make_pair(rc, str("ncclRecv (", b.bytes, " bytes from rank ", source, ")"));
        }
      }
      return std::make_pair(ncclSuccess, std::string());
    });
  }

 private:
  // One NCCL group of point-to-point calls, then a wait for the stream. The group is always closed,
  // also when a call in it fails, so that the communicator stays usable for the error report.
  template <typename Calls>
  void grouped(const char* what, Calls calls) const {
    check_cuda(cudaSetDevice(device_), str("cudaSetDevice(", device_, ")"));
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    const auto [rc, call] = calls();
    const ncclResult_t end = ncclGroupEnd();
    check_nccl(rc, call, nccl_->get());
    check_nccl(end, "ncclGroupEnd", nccl_->get());
    check_cuda(cudaStreamSynchronize(stream_->get()), str("cudaStreamSynchronize after ", what));
  }

  int device_;
  // The communicator is destroyed before the stream it was used with.
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<NcclComm> nccl_;
};

}  // namespace

std::unique_ptr<Transport> make_nccl_transport(const Communicator& comm, int cuda_device) {
  return std::make_unique<NcclTransport>(comm, cuda_device);
}

}  // namespace saetraj::dist
