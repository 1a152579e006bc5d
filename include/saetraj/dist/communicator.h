// The communicator the pipeline sees: ranks and collectives on plain buffers. Only dist/ includes <mpi.h>
// (and only output/ includes <hdf5.h>): parallel HDF5 gets the MPI communicator through the opaque
// mpi_comm_handle(). The serial communicator runs the whole pipeline in one process (unit tests, plain
// invocation).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace saetraj::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual bool is_mpi() const = 0;
  virtual void barrier() const = 0;
  virtual void broadcast(void* data, size_t bytes, int root) const = 0;
  // Element-wise reductions over all ranks, in place.
  virtual void allreduce_max(int64_t* data, size_t count) const = 0;
  virtual void allreduce_sum(int64_t* data, size_t count) const = 0;
  virtual void allreduce_sum(double* data, size_t count) const = 0;
  // Gathers `bytes` from every rank into `out` (size() * bytes), on every rank.
  virtual void allgather(const void* data, size_t bytes, void* out) const = 0;
  // Point-to-point transfer of raw bytes (messages between two ranks arrive in the order sent).
  virtual void send(const void* data, size_t bytes, int dest, int tag) const = 0;
  virtual void recv(void* data, size_t bytes, int source, int tag) const = 0;
  // Ends every rank of the job (MPI_Abort) with `code`.
  [[noreturn]] virtual void abort(int code) const = 0;
  // The address of the MPI_Comm this communicator wraps, for a library that takes one (parallel HDF5, in
  // output/sweep_file.cpp); nullptr for the serial communicator. Valid as long as this object lives.
  virtual const void* mpi_comm_handle() const = 0;

  // Convenience wrappers.
  void broadcast_string(std::string& s, int root) const;
  bool any(bool local) const;
};

std::unique_ptr<Communicator> make_serial_communicator();

// MPI_COMM_WORLD. Initialises MPI on first use (MPI_THREAD_FUNNELED) and finalises at exit.
std::unique_ptr<Communicator> make_world_communicator();

// True when this process was started by mpirun/srun (OMPI_/PMI_/PMIX_ environment present).
bool launched_under_mpi();

// This process's index among the ranks on its node, as the launcher tells it (Open MPI, SLURM, MPICH, PMI);
// the rank itself when no launcher variable is set (one node).
int local_rank(const Communicator& comm);

}  // namespace saetraj::dist
