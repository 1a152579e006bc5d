// --device, --gpu and --exchange: the parsing, the device a rank computes on, the transport the activation
// exchange uses, and the errors for a device this build or this machine cannot serve. (The host path's
// bytes are checked end to end by tests/mpi/identical_across_ranks.sh; the NCCL path and the GPU compute
// path on GPUs by tests/gpu/device_check.sh.)
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <filesystem>

#include "saetraj/core/error.h"
#include "saetraj/dist/memory_plan.h"
#include "saetraj/pipeline/compute_device.h"
#include "saetraj/pipeline/gpu_memory.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "test_support.h"

using namespace saetraj;

namespace {

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

TEST(ComputeDevice, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(pipeline::parse_device("cpu"), pipeline::DeviceKind::Cpu);
  EXPECT_EQ(pipeline::parse_device("cuda"), pipeline::DeviceKind::Cuda);
  EXPECT_EQ(input_error_of([] { pipeline::parse_device("gpu"); }), "--device must be cpu or cuda, got \"gpu\"");
  EXPECT_EQ(pipeline::parse_exchange("auto"), pipeline::ExchangeKind::Auto);
  EXPECT_EQ(pipeline::parse_exchange("nccl"), pipeline::ExchangeKind::Nccl);
  EXPECT_EQ(input_error_of([] { pipeline::parse_exchange("cpu"); }),
            "--exchange must be auto, mpi or nccl, got \"cpu\"");
}

TEST(ComputeDevice, CpuComputesOnTheHostAndExchangesOverMpi) {
  const auto comm = dist::make_serial_communicator();
  const auto device = pipeline::select_compute_device(pipeline::DeviceKind::Cpu, -1, *comm);
  EXPECT_TRUE(device.is_cpu());
  EXPECT_EQ(pipeline::make_exchange_transport(pipeline::ExchangeKind::Auto, device, *comm)->cuda_device(), -1);
  EXPECT_EQ(pipeline::make_exchange_transport(pipeline::ExchangeKind::Mpi, device, *comm)->cuda_device(), -1);
  EXPECT_EQ(input_error_of([&] { pipeline::make_exchange_transport(pipeline::ExchangeKind::Nccl, device, *comm); }),
            "--exchange nccl moves activations between GPUs and needs --device cuda; use --exchange mpi");
}

TEST(ComputeDevice, CudaWithoutAGpuSaysWhyAndWhatToDo) {
  const auto comm = dist::make_serial_communicator();
  if (torch::cuda::is_available()) {
    const auto device = pipeline::select_compute_device(pipeline::DeviceKind::Cuda, -1, *comm);
    EXPECT_TRUE(device.is_cuda());
    EXPECT_EQ(device.index(), 0);  // one rank: local rank 0
    return;
  }
  const std::string message =
      input_error_of([&] { pipeline::select_compute_device(pipeline::DeviceKind::Cuda, -1, *comm); });
  EXPECT_NE(message.find("--device cuda: rank 0 sees no CUDA device"), std::string::npos) << message;
  EXPECT_NE(message.find("use --device cpu"), std::string::npos) << message;
}

TEST(ComputeDevice, GpuMemoryQueriesMatchTheBuild) {
  if (!pipeline::gpu_memory_supported()) {
    EXPECT_NE(input_error_of([] { pipeline::gpu_memory(0); }).find("built without CUDA"), std::string::npos);
    return;
  }
  if (!torch::cuda::is_available()) GTEST_SKIP() << "a CUDA build without a GPU: nothing to query";
  const auto m = pipeline::gpu_memory(0);
  EXPECT_GT(m.total, 0);
  EXPECT_LE(m.free, m.total);
}

TEST(ComputeDevice, SweepRefusesCudaBeforeTouchingAnything) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible: --device cuda is valid here";
  saetraj::testing::TempDir dir;
  const auto comm = dist::make_serial_communicator();
  pipeline::SweepOptions o;
  o.model = dir.file("no-model-here");  // never read: the device is checked first
  o.prompts = {"a b"};
  o.out = dir.file("out.h5");
  o.device = "cuda";
  const std::string message = input_error_of([&] { pipeline::run_sweep(o, *comm); });
  EXPECT_NE(message.find("sees no CUDA device"), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(o.out));
  o.device = "cpu";
  o.exchange = "nccl";
  EXPECT_NE(input_error_of([&] { pipeline::run_sweep(o, *comm); }).find("needs --device cuda"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(o.out));
}

// The memory plan (dist/memory_plan.h): sizes from the shapes, the split checked against a GPU's memory,
// the number of GPUs that would fit, and the message when they do not.
TEST(MemoryPlan, GemmaScopeSizesAndTheGpusThatFit) {
  const dist::LayerShape gemma{2304, 65536};
  EXPECT_EQ(dist::encoder_bytes(gemma, false), 2304LL * 65536 * 4 + 4 * (2 * 65536 + 2304));
  EXPECT_EQ(dist::encoder_bytes(gemma, true), 2304LL * 65536 * 2 + 4 * (2 * 65536 + 2304));
  // One chunk: max(chunk_rows, N + 1) rows x d_sae x 15 bytes, plus the factored projections.
  EXPECT_EQ(dist::gpu_working_bytes(gemma, 2048, 256, 8), 2048LL * 65536 * 15 + (9LL * 256 + 2) * 65536 * 4);
  EXPECT_EQ(dist::gpu_working_bytes(gemma, 100, 256, 8), 257LL * 65536 * 15 + (9LL * 256 + 2) * 65536 * 4);

  dist::MemoryPlanInput in;
  in.layers.assign(26, gemma);
  in.max_tokens = 256;
  in.heads = 8;
  in.model_bytes = 10LL << 30;
  const int64_t gib = 1LL << 30;
  const auto one = dist::plan_memory(dist::plan_work(1, std::vector<double>(26, 1.0)), in);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].encoders, 26 * dist::encoder_bytes(gemma, false));
  EXPECT_EQ(one[0].model, 10LL << 30);
  // 26 x 604 MiB of encoders, a 2.5 GiB working set and the model: about 28 GiB on one GPU.
  EXPECT_EQ(dist::min_ranks_that_fit(in, 80 * gib), 1);
  EXPECT_EQ(dist::min_ranks_that_fit(in, 16 * gib), 5);  // rank 0 also holds the 10 GiB model
  EXPECT_EQ(dist::min_ranks_that_fit(in, 1 * gib), -1);
  const auto plan = dist::plan_work(1, std::vector<double>(26, 1.0));
  EXPECT_EQ(dist::memory_shortfall(plan, in, std::vector<int>(26, 0), 80 * gib), "");
  std::vector<int> layers(26);
  for (int l = 0; l < 26; ++l) layers[l] = l;
  const std::string message = dist::memory_shortfall(plan, in, layers, 16 * gib);
  EXPECT_NE(message.find("rank 0's GPU cannot hold its share: layers 0,1,2"), std::string::npos) << message;
  EXPECT_NE(message.find("5 GPU(s) of this size would fit (mpirun -n 5 or more)"), std::string::npos) << message;
  EXPECT_NE(message.find("--sae-dtype bfloat16"), std::string::npos) << message;
}

TEST(MemoryPlan, ParsesSizes) {
  EXPECT_EQ(dist::parse_bytes("80GiB"), 80LL << 30);
  EXPECT_EQ(dist::parse_bytes("141G"), 141LL << 30);
  EXPECT_EQ(dist::parse_bytes("512MiB"), 512LL << 20);
  EXPECT_EQ(dist::parse_bytes("1.5T"), 3LL << 39);
  EXPECT_EQ(dist::parse_bytes("1000000"), 1000000);
  EXPECT_NE(input_error_of([] { dist::parse_bytes("lots"); }).find("\"lots\" is not a size"), std::string::npos);
}

// sweep --mlp-transcoder: each layer's transcoder (float32 W_enc, W_dec, b_enc, threshold, b_dec and a W_skip
// counted whether or not there is one) is added to its rank's encoders, so fewer layers fit on a GPU.
TEST(MemoryPlan, TranscodersAreCountedOnTheirRanks) {
  const dist::LayerShape plain{2304, 65536}, with{2304, 65536, 16384};
  EXPECT_EQ(dist::transcoder_bytes(plain), 0);
  EXPECT_EQ(dist::transcoder_bytes(with), 4LL * (2 * 2304 * 16384 + 2 * 16384 + 2 * 2304 + 2304LL * 2304));
  dist::MemoryPlanInput in;
  in.layers.assign(26, with);
  in.max_tokens = 256;
  in.heads = 8;
  in.model_bytes = 10LL << 30;
  const auto two = dist::plan_memory(dist::plan_work(2, std::vector<double>(26, 1.0)), in);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].encoders + two[1].encoders, 26 * (dist::encoder_bytes(with, false) + dist::transcoder_bytes(with)));
  // Each owned layer's MLP input, resid_mid and resid_post ([256, 2304] float32 each) join the working set.
  EXPECT_EQ(dist::mlp_activation_bytes(plain, 256), 0);
  EXPECT_EQ(dist::mlp_activation_bytes(with, 256), 3LL * 4 * 256 * 2304);
  const auto plain_two = [&] {
    dist::MemoryPlanInput p = in;
    p.layers.assign(26, plain);
    return dist::plan_memory(dist::plan_work(2, std::vector<double>(26, 1.0)), p);
  }();
  const auto owned = [](const dist::WorkPlan& plan, int rank) {
    return static_cast<int64_t>(plan.group_for(rank).layer_indices.size());
  };
  const auto split = dist::plan_work(2, std::vector<double>(26, 1.0));
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(two[r].working, plain_two[r].working + owned(split, r) * dist::mlp_activation_bytes(with, 256)) << r;
  }
  // Without transcoders 5 GPUs of 16 GiB fit (the test above); each 16k transcoder adds 302 MiB per layer.
  EXPECT_EQ(dist::min_ranks_that_fit(in, 16LL << 30), 6);
}
