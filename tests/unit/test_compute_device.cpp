// --device: the transport the activation exchange uses, and the errors for a device this build or this
// machine cannot serve. (The host path's bytes are checked end to end by tests/mpi/identical_across_ranks.sh;
// the NCCL path on GPUs by tests/gpu/nccl_roundtrip.cpp, built only with -DSAETRAJ_CUDA=ON.)
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <filesystem>

#include "saetraj/core/error.h"
#include "saetraj/pipeline/activation_exchange.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "test_support.h"

using namespace saetraj;

namespace {

// The InputError text that --device cuda must give on this build and machine.
std::string expected_cuda_error() {
#ifdef SAETRAJ_WITH_CUDA
  return "sees no CUDA device (torch::cuda::is_available() is false)";
#else
  return "built without CUDA; rebuild with cmake -DSAETRAJ_CUDA=ON against a CUDA build of LibTorch";
#endif
}

bool cuda_usable() {
#ifdef SAETRAJ_WITH_CUDA
  return torch::cuda::is_available();
#else
  return false;
#endif
}

template <typename F>
std::string input_error_of(F f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

}  // namespace

TEST(ExchangeTransport, CpuIsHostMemory) {
  const auto comm = dist::make_serial_communicator();
  EXPECT_EQ(pipeline::make_exchange_transport("cpu", *comm)->cuda_device(), -1);
}

TEST(ExchangeTransport, UnknownDeviceIsAnInputError) {
  const auto comm = dist::make_serial_communicator();
  EXPECT_EQ(input_error_of([&] { pipeline::make_exchange_transport("gpu", *comm); }),
            "--device must be cpu or cuda, got \"gpu\"");
}

TEST(ExchangeTransport, CudaWithoutCudaSaysWhyAndWhatToDo) {
  const auto comm = dist::make_serial_communicator();
  if (cuda_usable()) {
    // A CUDA build on a GPU machine: one rank joins a one-rank NCCL communicator on GPU 0.
    EXPECT_EQ(pipeline::make_exchange_transport("cuda", *comm)->cuda_device(), 0);
    return;
  }
  const std::string message = input_error_of([&] { pipeline::make_exchange_transport("cuda", *comm); });
  EXPECT_NE(message.find(expected_cuda_error()), std::string::npos) << message;
  EXPECT_NE(message.find("--device cpu"), std::string::npos) << message;
}

TEST(ExchangeTransport, SweepRefusesCudaBeforeTouchingAnything) {
  if (cuda_usable()) GTEST_SKIP() << "a GPU is visible: --device cuda is valid here";
  saetraj::testing::TempDir dir;
  const auto comm = dist::make_serial_communicator();
  pipeline::SweepOptions o;
  o.model = dir.file("no-model-here");  // never read: the device is checked first
  o.prompts = {"a b"};
  o.out = dir.file("out.h5");
  o.device = "cuda";
  const std::string message = input_error_of([&] { pipeline::run_sweep(o, *comm); });
  EXPECT_NE(message.find(expected_cuda_error()), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(o.out));
}
