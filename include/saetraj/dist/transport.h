// The bulk transfers of the activation exchange: raw buffers from one rank to another, in host memory
// (the communicator's send/recv, i.e. MPI) or in GPU memory (NCCL, dist/nccl_transport.h). Kept apart
// from the Communicator because only these transfers change with the device; the collectives, the
// HDF5 file and the small once-per-sweep messages always go over the communicator.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "saetraj/dist/communicator.h"

namespace saetraj::dist {

struct SendBuffer {
  const void* data;
  size_t bytes;
};

struct RecvBuffer {
  void* data;
  size_t bytes;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // The CUDA device whose memory the buffers live in, or -1 for host memory.
  virtual int cuda_device() const = 0;
  // Sends the buffers to `dest`, in order; returns when they may be reused. `tag` keeps separate
  // streams of messages apart on the host path (NCCL orders by call order between two ranks).
  virtual void send(const std::vector<SendBuffer>& buffers, int dest, int tag) const = 0;
  // Receives into the buffers (sizes as sent) from `source`; returns when they are filled.
  virtual void recv(const std::vector<RecvBuffer>& buffers, int source, int tag) const = 0;
};

// Host memory over the communicator: each buffer is one send/recv with `tag`.
std::unique_ptr<Transport> make_host_transport(const Communicator& comm);

}  // namespace saetraj::dist
