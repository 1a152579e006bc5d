// The sweep end to end on the synthetic fixture, in one process (serial communicator): the HDF5 file's
// layout (SPEC 3), its values against a direct recomputation, graphs, resume, and the errors for bad
// requests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/pipeline/graph_builder.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae_lens.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/synth/synth.h"
#include "test_support.h"

using namespace saetraj;
namespace fs = std::filesystem;

namespace {

const synth::SynthResult& fixture() {
  static saetraj::testing::TempDir dir("saetraj-sweep");
  static const synth::SynthResult r = [] {
    synth::SynthOptions o;
    o.out = dir.path();
    o.n_layers = 3;
    o.d_model = 32;
    o.n_heads = 4;
    o.d_mlp = 64;
    o.vocab_size = 320;
    o.n_ctx = 40;
    o.d_sae = 96;
    return synth::synth_gpt2_fixture(o);
  }();
  return r;
}

pipeline::SweepOptions base_options(const std::string& out) {
  pipeline::SweepOptions o;
  o.model = fixture().model_dir;
  o.saes = {fixture().sae_pattern};
  o.prompts = {"Mark gave flashlight to Max.", "Smith left the dark room"};
  o.k = 16;
  o.top_t = 5;
  o.chunk_rows = 20;  // several chunks per prompt
  o.out = out;
  return o;
}

template <typename T>
std::vector<T> read_all(hid_t f, const std::string& name) {
  return output::read_vector<T>(f, name);
}

}  // namespace

TEST(Sweep, FileLayoutAndValues) {
  saetraj::testing::TempDir dir;
  const auto opts = base_options(dir.file("s.h5"));
  const auto comm = dist::make_serial_communicator();
  const auto result = pipeline::run_sweep(opts, *comm);
  EXPECT_TRUE(result.complete);
  EXPECT_EQ(result.prompts, 2);

  using namespace output;
  const H5Handle f = h5_file(H5Fopen(opts.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(read_attr_string(f, "format"), "saetraj-sweep");
  EXPECT_EQ(read_attr_int(f, "format_version"), output::kSweepFormatVersion);
  EXPECT_EQ(read_attr_string(f, "architecture"), "GPT2LMHeadModel");
  EXPECT_EQ(read_attr_int(f, "d_model"), 32);
  EXPECT_EQ(read_attr_int(f, "n_model_layers"), 3);
  EXPECT_EQ(read_attr_ints(f, "layers"), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(read_attr_int(f, "k"), 16);
  EXPECT_EQ(read_attr_int(f, "complete"), 1);
  EXPECT_EQ(read_attr_strings(f, "sae_ids").size(), 3u);
  EXPECT_EQ(read_attr_string(f, "bos"), "prepended");  // the SAEs were trained with prepend_bos

  const auto n_tokens = read_all<int32_t>(f, "prompts/n_tokens");
  const auto row_offset = read_all<int64_t>(f, "prompts/row_offset");
  const auto token_offset = read_all<int64_t>(f, "prompts/token_offset");
  const auto done = read_all<uint8_t>(f, "prompts/done");
  ASSERT_EQ(n_tokens.size(), 2u);
  EXPECT_EQ(done, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(row_offset[0], 0);
  EXPECT_EQ(row_offset[1], sweep::rows_of_prompt(n_tokens[0]));
  EXPECT_EQ(token_offset[1], n_tokens[0]);
  const auto ids = read_all<int32_t>(f, "tokens/ids");
  const auto texts = read_strings(f, "tokens/text");
  ASSERT_EQ(ids.size(), static_cast<size_t>(n_tokens[0] + n_tokens[1]));
  EXPECT_EQ(texts[0], "<|endoftext|>");
  const auto row_query = read_all<int32_t>(f, "evolution/row_query");
  const auto row_step = read_all<int32_t>(f, "evolution/row_step");
  const int64_t rows = sweep::rows_of_prompt(n_tokens[0]) + sweep::rows_of_prompt(n_tokens[1]);
  ASSERT_EQ(static_cast<int64_t>(row_query.size()), rows);
  EXPECT_EQ(row_query[0], 1);
  EXPECT_EQ(row_step[2], 2);
  EXPECT_EQ(row_query[3], 2);
  EXPECT_EQ(row_step[3], 0);

  // Evolution of prompt 1, layer 1, against a direct recomputation.
  const auto indices = read_all<int32_t>(f, "evolution/indices");  // [3, rows, 16] flattened
  const auto values = read_all<float>(f, "evolution/values");
  ASSERT_EQ(static_cast<int64_t>(indices.size()), 3 * rows * 16);
  const auto model = model::load_model(fixture().model_dir);
  const std::vector<int32_t> p1(ids.begin() + n_tokens[0], ids.end());
  const auto cap = model->forward(p1, {});
  const auto sae = sae::load_sae_lens(fixture().sae_dirs[1]);
  sweep::AttentionParts parts{cap.layers[1].pattern, model->head_outputs(1, cap.layers[1].values),
                              model->attention_output_bias(1)};
  // The independent computation: per query, the contributions a_j = sum_h A_h[q, j] v_h[j] W_O[h] + b_O/(q+1)
  // summed one by one in double precision, each step encoded by the SAE's own (unfused) encode, and every
  // active feature ranked by a full sort. Nothing of compute_evolution or the top-k scan is used.
  const auto pattern = parts.pattern.to(torch::kFloat64), head_out = parts.head_out.to(torch::kFloat64);
  const auto bias = parts.bias.to(torch::kFloat64);
  const auto resid = cap.layers[1].resid_pre.to(torch::kFloat64);
  std::vector<int32_t> expect_i;
  std::vector<float> expect_v;
  for (int64_t q = 1; q < n_tokens[1]; ++q) {
    std::vector<torch::Tensor> steps = {resid[q]};
    auto sum = torch::zeros_like(resid[q]);
    for (int64_t j = 0; j <= q; ++j) {
      for (int64_t h = 0; h < pattern.size(0); ++h) sum = sum + pattern[h][q][j] * head_out[h][j];
      sum = sum + bias / static_cast<double>(q + 1);
      steps.push_back(resid[q] + sum);
    }
    const auto acts = sae.encode(torch::stack(steps).to(torch::kFloat32));
    for (int64_t s = 0; s < acts.size(0); ++s) {
      std::vector<std::pair<float, int32_t>> active;
      for (int32_t f = 0; f < acts.size(1); ++f) {
        const float v = acts[s][f].item<float>();
        if (v > 0) active.emplace_back(-v, f);
      }
      std::sort(active.begin(), active.end());
      for (size_t r = 0; r < 16; ++r) {
        expect_i.push_back(r < active.size() ? active[r].second : -1);
        expect_v.push_back(r < active.size() ? -active[r].first : 0.0f);
      }
    }
  }
  const int64_t r1 = sweep::rows_of_prompt(n_tokens[1]);
  ASSERT_EQ(static_cast<int64_t>(expect_i.size()), r1 * 16);
  const int64_t base = (1 * rows + row_offset[1]) * 16;
  int mismatched = 0;
  for (int64_t i = 0; i < r1 * 16; ++i) {
    EXPECT_NEAR(values[base + i], expect_v[i], 1e-4);
    if (indices[base + i] == expect_i[i]) continue;
    // Only a tie closer than float rounding may swap two neighbours.
    const bool tie = (i % 16 > 0 && std::fabs(expect_v[i - 1] - expect_v[i]) < 1e-4) ||
                     (i % 16 < 15 && std::fabs(expect_v[i + 1] - expect_v[i]) < 1e-4);
    mismatched += !tie;
  }
  EXPECT_EQ(mismatched, 0);
  // Lists are sorted descending, active only, padded with -1/0.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 1; j < 16; ++j) {
      const float a = values[r * 16 + j - 1], b = values[r * 16 + j];
      EXPECT_GE(a, b);
      if (indices[r * 16 + j] == -1) EXPECT_EQ(b, 0.0f);
      else EXPECT_GT(b, 0.0f);
    }
  }

  // Readout: layer 2 (the last) at the last position gives the model's own top tokens.
  const auto readout = read_all<int32_t>(f, "readout/token_ids");  // [2, 3, 5]
  const auto probs = read_all<float>(f, "readout/probs");
  const auto top = torch::softmax(cap.logits[n_tokens[1] - 1], 0).topk(5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(readout[(1 * 3 + 2) * 5 + i], std::get<1>(top)[i].item<int64_t>());
    EXPECT_NEAR(probs[(1 * 3 + 2) * 5 + i], std::get<0>(top)[i].item<float>(), 1e-5);
  }
  EXPECT_EQ(read_strings(f, "readout/token_text").size(), 30u);

  // Graphs were built with T = 5.
  ASSERT_TRUE(link_exists(f, "graphs/trajectories"));
  const auto g = h5_group(H5Gopen2(f, "graphs", H5P_DEFAULT), "graphs");
  EXPECT_EQ(read_attr_int(g, "top_t"), 5);
  EXPECT_TRUE(fs::exists(pipeline::default_graphs_dir(opts.out) + "/T5/prompt_0001/traced.json"));
  EXPECT_TRUE(fs::exists(pipeline::default_graphs_dir(opts.out) + "/T5/prompt_0000/length_002.json"));
}

TEST(Sweep, ExistingFileIsRefusedUnlessOverwriteOrResume) {
  saetraj::testing::TempDir dir;
  auto opts = base_options(dir.file("s.h5"));
  opts.graphs = false;
  const auto comm = dist::make_serial_communicator();
  pipeline::run_sweep(opts, *comm);
  try {
    pipeline::run_sweep(opts, *comm);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("already exists; pass --resume"), std::string::npos) << e.what();
  }
  opts.resume = true;
  const auto resumed = pipeline::run_sweep(opts, *comm);  // nothing left to do
  EXPECT_TRUE(resumed.complete);
  opts.resume = false;
  opts.overwrite = true;
  EXPECT_TRUE(pipeline::run_sweep(opts, *comm).complete);
  // Resuming with other settings is refused.
  opts.overwrite = false;
  opts.resume = true;
  opts.k = 8;
  EXPECT_THROW(pipeline::run_sweep(opts, *comm), InputError);
}

TEST(Sweep, BadRequestsAreClearErrors) {
  saetraj::testing::TempDir dir;
  const auto comm = dist::make_serial_communicator();
  auto expect_error = [&](pipeline::SweepOptions o, const std::string& text) {
    try {
      pipeline::run_sweep(o, *comm);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  auto o = base_options(dir.file("e.h5"));
  o.k = 500;
  expect_error(o, "larger than the SAE's width d_sae = 96");
  o = base_options(dir.file("e.h5"));
  o.layers = "0,5";
  expect_error(o, "layer 5 is out of range; the model has 3 layers");
  o.layers = "1,1";
  expect_error(o, "layer 1 is given more than once");
  o = base_options(dir.file("e.h5"));
  o.top_t = -1;
  expect_error(o, "--top-t must be >= 0");
  o = base_options(dir.file("e.h5"));
  o.saes = {"0=" + fixture().sae_dirs[1], fixture().sae_pattern};
  expect_error(o, "assigned to layer 0");
  o.allow_hook_mismatch = true;
  o.graphs = false;
  EXPECT_NO_THROW(pipeline::run_sweep(o, *comm));
  // An SAE whose d_in is not the model's d_model.
  {
    saetraj::testing::TempDir sae_dir;
    saetraj::testing::write_file(sae_dir.file("cfg.json"),
                                 R"({"d_in": 8, "d_sae": 20, "hook_name": "blocks.0.hook_resid_mid"})");
    io::write_safetensors(sae_dir.file("sae_weights.safetensors"),
                          {{"W_enc", torch::zeros({8, 20})}, {"b_enc", torch::zeros({20})}, {"b_dec", torch::zeros({8})}});
    o = base_options(dir.file("e.h5"));
    o.saes = {"0=" + sae_dir.path(), fixture().sae_pattern};
    expect_error(o, "reads vectors of size 8 but the model's d_model is 32");
  }
  o = base_options(dir.file("e2.h5"));
  o.prompts = {""};
  expect_error(o, "no prompt can be analysed");
  o.prompts = {};
  o.prompt_ids = {"7"};
  o.bos = "off";
  expect_error(o, "at least 2 tokens");
  o = base_options(dir.file("e3.h5"));
  o.prompts = {std::string(200, 'x') + " long"};
  expect_error(o, "too long");
}

// Permission bits do not stop root, so unwritable places are ones no user can write: below a regular
// file, inside /proc.
TEST(Sweep, UnwritableOutputIsAClearIoError) {
  saetraj::testing::TempDir dir;
  saetraj::testing::write_file(dir.file("plain"), "not a folder");
  const auto comm = dist::make_serial_communicator();
  auto expect_io_error = [&](const std::string& out, const std::vector<std::string>& texts) {
    auto o = base_options(out);
    o.graphs = false;
    try {
      pipeline::run_sweep(o, *comm);
      ADD_FAILURE() << "no error for --out " << out;
    } catch (const IoError& e) {
      for (const auto& text : texts) EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out));
  };
  expect_io_error(dir.file("plain/s.h5"), {"cannot create the folder " + dir.file("plain"), "Not a directory",
                                            "choose an --out whose folder can be created and written"});
  expect_io_error("/proc/saetraj-forbidden/s.h5", {"cannot create the folder /proc/saetraj-forbidden",
                                                   "choose an --out whose folder can be created and written"});
  expect_io_error("/proc/self/s.h5", {"cannot create the output file /proc/self/s.h5",
                                      "choose an --out in a writable folder with free space"});
}

// SAETRAJ_TEST_FAIL_WRITE_AFTER_PROMPTS makes the writes after N prompts fail as on a full disk
// (tests/mpi/disk_full.sh does the same under mpirun with two ranks, and on a real full tmpfs).
TEST(Sweep, FailedWriteKeepsFinishedPromptsAndResumes) {
  saetraj::testing::TempDir dir;
  const auto comm = dist::make_serial_communicator();
  auto opts = base_options(dir.file("full.h5"));
  opts.prompts.push_back("Anna gave the book to Ben");
  opts.graphs = false;
  auto ref = opts;
  ref.out = dir.file("ref.h5");
  pipeline::run_sweep(ref, *comm);

  ::setenv("SAETRAJ_TEST_FAIL_WRITE_AFTER_PROMPTS", "0:1", 1);
  try {
    pipeline::run_sweep(opts, *comm);
    ADD_FAILURE() << "the injected write failure was not reported";
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("writing evolution/indices of " + opts.out + " failed: No space left on device"),
              std::string::npos) << m;
    EXPECT_NE(m.find("free of"), std::string::npos) << m;
    EXPECT_NE(m.find("run the same command with --resume"), std::string::npos) << m;
  }
  ::unsetenv("SAETRAJ_TEST_FAIL_WRITE_AFTER_PROMPTS");
  {
    using namespace output;
    const H5Handle f = h5_file(H5Fopen(opts.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
    EXPECT_EQ(read_attr_int(f, "complete"), 0);
    EXPECT_EQ(read_all<uint8_t>(f, "prompts/done"), (std::vector<uint8_t>{1, 0, 0}));
  }
  opts.resume = true;
  EXPECT_TRUE(pipeline::run_sweep(opts, *comm).complete);
  using namespace output;
  const H5Handle a = h5_file(H5Fopen(opts.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  const H5Handle b = h5_file(H5Fopen(ref.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(read_all<uint8_t>(a, "prompts/done"), (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_EQ(read_all<int32_t>(a, "evolution/indices"), read_all<int32_t>(b, "evolution/indices"));
  EXPECT_EQ(read_all<float>(a, "evolution/values"), read_all<float>(b, "evolution/values"));
  EXPECT_EQ(read_all<int32_t>(a, "readout/token_ids"), read_all<int32_t>(b, "readout/token_ids"));
  EXPECT_EQ(read_all<float>(a, "readout/probs"), read_all<float>(b, "readout/probs"));
}

TEST(Sweep, CorpusWithSkippedPromptsAndTruncation) {
  saetraj::testing::TempDir dir;
  saetraj::testing::write_file(dir.file("corpus.jsonl"),
                      "{\"id\": \"a\", \"text\": \"Mark gave\"}\n{\"id\": \"b\", \"text\": \"\"}\n"
                      "{\"id\": \"c\", \"text\": \"" + std::string(100, 'y') + "\"}\n");
  auto o = base_options(dir.file("c.h5"));
  o.prompts = {};
  o.prompt_file = dir.file("corpus.jsonl");
  o.max_tokens = 12;
  const auto comm = dist::make_serial_communicator();
  const auto r = pipeline::run_sweep(o, *comm);
  EXPECT_EQ(r.prompts, 2);
  EXPECT_EQ(r.skipped, 1);
  const output::H5Handle f = output::h5_file(H5Fopen(o.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(output::read_strings(f, "skipped/reason"), (std::vector<std::string>{"empty prompt"}));
  EXPECT_EQ(output::read_strings(f, "skipped/id"), (std::vector<std::string>{"b"}));
  EXPECT_EQ(output::read_vector<int32_t>(f, "prompts/n_tokens")[1], 12);
}

TEST(Graphs, RebuildWithSeveralT) {
  saetraj::testing::TempDir dir;
  auto o = base_options(dir.file("g.h5"));
  const auto comm = dist::make_serial_communicator();
  pipeline::run_sweep(o, *comm);
  pipeline::GraphBuildOptions g;
  g.top_t = {3, 8};
  g.write_json = false;
  const auto r3 = pipeline::build_graphs(o.out, g);
  g.top_t = {8};
  const auto r8 = pipeline::build_graphs(o.out, g);
  EXPECT_LE(r3.trajectories, r8.trajectories);  // a looser filter keeps at least as many
  const output::H5Handle f = output::h5_file(H5Fopen(o.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_TRUE(output::link_exists(f, "graphs_T8"));
  EXPECT_EQ(output::read_attr_int(output::h5_group(H5Gopen2(f, "graphs", H5P_DEFAULT), "g"), "top_t"), 8);
}

namespace {

// Copies `folder` to `to` with one tensor of `file` (the first whose name contains `name_part`) given a
// NaN at its first element.
std::string poisoned_copy(const std::string& folder, const std::string& to, const std::string& file,
                          const std::string& name_part) {
  fs::copy(folder, to, fs::copy_options::recursive);
  const auto in = io::SafetensorsFile::open(folder + "/" + file);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::string poisoned;
  for (const auto& [name, info] : in->tensors()) {
    torch::Tensor t = in->load(name);
    if (poisoned.empty() && name.find(name_part) != std::string::npos) {
      t.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
      poisoned = name;
    }
    tensors.emplace_back(name, t);
  }
  EXPECT_FALSE(poisoned.empty()) << "no tensor named like " << name_part << " in " << folder;
  fs::remove(to + "/" + file);
  io::write_safetensors(to + "/" + file, tensors);
  return poisoned;
}

}  // namespace

// A NaN in the weights of an SAE or of the model's layer 1 turns into non-finite pre-activations that
// the sweep reports with the layer, the prompt and the query positions, and a non-zero exit (NumericError).
TEST(Sweep, NonFiniteWeightsAreReportedWithLayerAndPosition) {
  saetraj::testing::TempDir dir;
  const auto comm = dist::make_serial_communicator();
  auto expect_numeric_error = [&](const pipeline::SweepOptions& o) {
    try {
      pipeline::run_sweep(o, *comm);
      ADD_FAILURE() << "no error for NaN weights";
    } catch (const NumericError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("layer 1, prompt 0, queries 1.."), std::string::npos) << m;
      EXPECT_NE(m.find("SAE pre-activations contain NaN or Inf"), std::string::npos) << m;
      EXPECT_NE(m.find("check the model and SAE weights"), std::string::npos) << m;
    }
  };
  auto o = base_options(dir.file("nan-sae.h5"));
  o.graphs = false;
  poisoned_copy(fixture().sae_dirs[1], dir.file("sae1"), "sae_weights.safetensors", "W_enc");
  o.saes = {"1=" + dir.file("sae1"), fixture().sae_pattern};
  expect_numeric_error(o);

  o = base_options(dir.file("nan-model.h5"));
  o.graphs = false;
  poisoned_copy(fixture().model_dir, dir.file("model"), "model.safetensors", "h.1.attn.c_attn.weight");
  o.model = dir.file("model");
  expect_numeric_error(o);
}
