// The GPU path (sweep/*_cuda.cpp, LibTorch ops) run on CPU tensors against the CPU kernels: the same top-k
// lists (ties within float rounding aside) for every SAE kind and both methods, the exact ranking rule
// (ties at the cut to the lower index), identical rows under any query split, and the same errors.
// On a GPU machine tests/gpu/device_check.sh runs the same comparisons with CUDA tensors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "evolution_cases.h"
#include "saetraj/core/error.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/synth/sae_formats.h"
#include "test_support.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

using namespace saetraj;
namespace tc = saetraj::testing;
using tc::Case;
using tc::Path;

TEST(DevicePaths, GpuOpsMatchCpuKernelsForEveryKindAndBothMethods) {
  uint64_t seed = 31;
  for (const auto& c : tc::every_case()) {
    const auto f = tc::make_fixture(c, 3, 13, 24, 300, seed++);
    const int64_t k = 40;
    for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
      const auto cpu = tc::run(f, method, 1, 13, k, 30);
      const auto gpu_ops = tc::run(f, method, 1, 13, k, 30, Path::GpuOps);
      tc::expect_same_lists(cpu, gpu_ops, k, c.name + " " + sweep::method_name(method));
    }
  }
}

// The SAE kinds loaders fold into the three kernel activations (sae.h, [NOTE] Folding at load): each loaded
// from its published layout and run on both paths and both methods, also against the unfused reference.
TEST(DevicePaths, GpuOpsMatchCpuKernelsForEveryLoadedSaeFormat) {
  const int64_t d = 24, width = 300, k = 40;
  tc::TempDir tmp;
  const auto raw = synth::random_raw_sae(d, width, 41);
  auto gen = at::detail::createCPUGenerator(42);
  const auto b_gate = torch::randn({width}, gen) * 0.3, b_mag = torch::randn({width}, gen) * 0.3 - 0.2,
             r_mag = torch::randn({width}, gen) * 0.3;
  const std::string resid = "blocks.0.hook_resid_post";
  std::vector<std::pair<std::string, std::string>> saes = {
      {"gemma scope 2", synth::write_gemma_scope2_sae(tmp.path(), {"resid_post", 0, "300", "small"}, raw)},
      {"llama scope", synth::write_llama_scope_sae(tmp.path(), {0, "R", 8, 0.1, 5.0, 5.0}, raw)},
      {"sparsify", synth::write_sparsify_sae(tmp.file("sparsify"), {"layers.0", 9}, raw)}};
  synth::write_sae_lens_sae(tmp.file("gated"), {{"architecture", "gated"}}, resid,
                            {{"W_enc", raw.w_enc}, {"b_gate", b_gate}, {"b_mag", b_mag}, {"r_mag", r_mag},
                             {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec}});
  synth::write_sae_lens_sae(tmp.file("topk-rescaled"), {{"architecture", "topk"}, {"k", 9}, {"rescale_acts_by_decoder_norm", true}},
                            resid, {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec}});
  synth::write_sae_lens_sae(tmp.file("batchtopk"), {{"architecture", "batchtopk"}, {"k", 9}}, resid,
                            {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec},
                             {"topk_threshold", torch::tensor(0.3)}});
  synth::write_sae_lens_sae(tmp.file("scalar-rescale"),
                            {{"architecture", "jumprelu"}, {"normalize_activations", "constant_scalar_rescale"},
                             {"activation_normalization_factor", 0.7}},
                            resid, {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec},
                                    {"b_dec", raw.b_dec}, {"threshold", raw.threshold}});
  for (const char* name : {"gated", "topk-rescaled", "batchtopk", "scalar-rescale"}) saes.emplace_back(name, tmp.file(name));
  uint64_t seed = 43;
  for (const auto& [name, path] : saes) {
    auto f = tc::make_fixture({name, sae::Activation::ReLU, sae::Normalization::None, false, true, true, true}, 3, 13, d,
                              width, seed++);
    f.sae = sae::load_sae(path, 0, {});
    for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
      const auto cpu = tc::run(f, method, 1, 13, k, 30);
      const auto gpu_ops = tc::run(f, method, 1, 13, k, 30, Path::GpuOps);
      tc::expect_same_lists(cpu, gpu_ops, k, name + " " + sweep::method_name(method));
      tc::expect_same_lists(tc::reference(f, 1, 13, k), gpu_ops, k, name + " reference");
    }
  }
}

TEST(DevicePaths, GpuOpsRowsDoNotDependOnTheQuerySplit) {
  Case c{"gemma-like", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true, true};
  const auto f = tc::make_fixture(c, 4, 40, 32, 3000, 5);
  const int64_t k = 25, chunk_rows = 120;
  for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
    const auto whole = tc::run(f, method, 1, 40, k, chunk_rows, Path::GpuOps);
    // A rank holding a run of whole chunks computes exactly the rows the whole range has for them.
    const auto chunks = sweep::evolution_chunks(1, 40, chunk_rows);
    ASSERT_GE(chunks.size(), 4u);
    const int64_t q0 = chunks[1].first, q1 = chunks[3].second;
    const auto part = tc::run(f, method, q0, q1, k, chunk_rows, Path::GpuOps);
    const int64_t offset = (sweep::rows_of_prompt(q0) - sweep::rows_of_prompt(1)) * k;
    ASSERT_EQ(part.idx.size(), static_cast<size_t>((sweep::rows_of_prompt(q1) - sweep::rows_of_prompt(q0)) * k));
    for (size_t i = 0; i < part.idx.size(); ++i) {
      ASSERT_EQ(part.idx[i], whole.idx[offset + i]) << sweep::method_name(method) << " " << i;
      ASSERT_EQ(part.val[i], whole.val[offset + i]) << sweep::method_name(method) << " " << i;
    }
  }
}

// Dense rows on a coarse grid: many exact ties, also at the cut of the k-th place, where torch::topk may
// return any of the tied features. The GPU path's lists must be exactly the fused CPU scan's.
TEST(DevicePaths, TopkTensorsBreakTiesAtTheCutByLowerIndex) {
  torch::manual_seed(5);
  const int64_t rows = 40, width = 3000, k = 12;
  const auto product = torch::round(torch::randn({rows, width}) * 4.0) / 4.0;
  const auto bias = torch::round(torch::randn({width})) / 4.0;
  const auto threshold = torch::rand({width}) * 0.5;
  int64_t rows_with_cut_ties = 0;
  for (int variant = 0; variant < 3; ++variant) {
    const bool with_threshold = variant == 1;
    const int64_t keep = variant == 2 ? 5 : k;  // a TopK SAE's own k below the list length
    std::vector<int32_t> cpu_i(rows * k), gpu_i(rows * k);
    std::vector<float> cpu_v(rows * k), gpu_v(rows * k);
    ASSERT_TRUE(sweep::topk_active_fused(product, bias.data_ptr<float>(),
                                         with_threshold ? threshold.data_ptr<float>() : nullptr, keep, k,
                                         cpu_i.data(), cpu_v.data()));
    auto pre = product + bias;
    const auto lists = sweep::topk_active_tensors(pre, with_threshold ? threshold : torch::Tensor(), keep, k);
    ASSERT_TRUE(lists.finite);
    sweep::copy_lists_to_host(lists, gpu_i.data(), gpu_v.data());
    EXPECT_EQ(gpu_i, cpu_i) << "variant " << variant;
    EXPECT_EQ(gpu_v, cpu_v) << "variant " << variant;
    for (int64_t r = 0; r < rows; ++r) {
      const float cut = cpu_v[r * k + keep - 1];
      int64_t equal = 0;
      for (int64_t f = 0; f < width; ++f) equal += (product[r][f].item<float>() + bias[f].item<float>()) == cut;
      rows_with_cut_ties += cut > 0 && equal > 1;
    }
  }
  EXPECT_GT(rows_with_cut_ties, 10) << "the data must put ties at the cut for the test to mean something";
}

TEST(DevicePaths, TopkTensorsPadShortListsAndFlagNonFiniteRows) {
  auto pre = torch::tensor({{0.0f, 2.0f, 0.5f, 2.0f, -1.0f, 3.0f}, {-1.0f, -2.0f, 0.0f, -3.0f, 0.0f, 0.0f}});
  const auto lists = sweep::topk_active_tensors(pre, torch::Tensor(), 5, 6);
  std::vector<int32_t> idx(12);
  std::vector<float> val(12);
  sweep::copy_lists_to_host(lists, idx.data(), val.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{5, 1, 3, 2, -1, -1, -1, -1, -1, -1, -1, -1}));
  EXPECT_EQ(val, (std::vector<float>{3, 2, 2, 0.5f, 0, 0, 0, 0, 0, 0, 0, 0}));
  auto bad = torch::tensor({{1.0f, std::numeric_limits<float>::infinity()}});
  EXPECT_FALSE(sweep::topk_active_tensors(bad, torch::Tensor(), 1, 1).finite);
}

TEST(DevicePaths, GpuOpsReportNonFiniteInputWithQueries) {
  Case c{"relu", sae::Activation::ReLU};
  auto f = tc::make_fixture(c, 2, 6, 8, 50, 3);
  f.parts.head_out[0][1][2] = std::numeric_limits<float>::quiet_NaN();
  for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
    try {
      tc::run(f, method, 1, 6, 5, 2048, Path::GpuOps);
      FAIL() << "expected NumericError from the " << sweep::method_name(method) << " method";
    } catch (const NumericError& e) {
      EXPECT_NE(std::string(e.what()).find("NaN or Inf for queries 1..5"), std::string::npos) << e.what();
    }
  }
}
