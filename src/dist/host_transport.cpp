#include "saetraj/dist/transport.h"

namespace saetraj::dist {

namespace {

class HostTransport final : public Transport {
 public:
  explicit HostTransport(const Communicator& comm) : comm_(comm) {}
  int cuda_device() const override { return -1; }
  void send(const std::vector<SendBuffer>& buffers, int dest, int tag) const override {
    for (const auto& b : buffers) comm_.send(b.data, b.bytes, dest, tag);
  }
  void recv(const std::vector<RecvBuffer>& buffers, int source, int tag) const override {
    for (const auto& b : buffers) comm_.recv(b.data, b.bytes, source, tag);
  }

 private:
  const Communicator& comm_;
};

}  // namespace

std::unique_ptr<Transport> make_host_transport(const Communicator& comm) {
  return std::make_unique<HostTransport>(comm);
}

}  // namespace saetraj::dist
