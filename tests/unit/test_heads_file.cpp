// The head split in the sweep file (issue 15 part 1; NOTE Format versions in output/sweep_file.h): /heads
// holds, for every query and final position <= top_t, what head_split gives for the lists the file holds
// (recomputed here from a fresh forward pass); the graphs carry it in /graphs/trajectory_heads and the
// JSON files; a file of format version 1 is still read; resuming across --heads is refused.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/model/model.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/pipeline/graph_builder.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae_lens.h"
#include "saetraj/sweep/head_split.h"
#include "saetraj/sweep/order_free.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/synth/synth.h"
#include "test_support.h"

using namespace saetraj;

namespace {

const synth::SynthResult& fixture() {
  static saetraj::testing::TempDir dir("saetraj-heads");
  static const synth::SynthResult r = [] {
    synth::SynthOptions o;
    o.out = dir.path();
    o.n_layers = 2;
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

pipeline::SweepOptions options(const std::string& out, bool heads) {
  pipeline::SweepOptions o;
  o.model = fixture().model_dir;
  o.saes = {fixture().sae_pattern};
  o.prompts = {"Mark gave flashlight to Max.", "Smith left the dark room"};
  o.k = 16;
  o.top_t = 5;
  o.chunk_rows = 20;
  o.heads = heads;
  o.out = out;
  return o;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(HeadsFile, SplitOfEveryTrajectoryInFileTablesAndJson) {
  saetraj::testing::TempDir dir;
  const auto opts = options(dir.file("h.h5"), true);
  const auto comm = dist::make_serial_communicator();
  const auto result = pipeline::run_sweep(opts, *comm);
  ASSERT_TRUE(result.complete);

  using namespace output;
  const H5Handle f = h5_file(H5Fopen(opts.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(read_attr_int(f, "format_version"), 2);
  const auto group = h5_group(H5Gopen2(f, "heads", H5P_DEFAULT), "/heads");
  const int64_t slots = read_attr_int(group, "slots"), heads = read_attr_int(group, "heads");
  EXPECT_EQ(slots, 6);  // top_t + 1
  EXPECT_EQ(heads, 4);
  const int64_t columns = sweep::split_columns(heads);
  const auto n_tokens = read_vector<int32_t>(f, "prompts/n_tokens");
  const auto row_offset = read_vector<int64_t>(f, "prompts/row_offset");
  const auto query_offset = read_vector<int64_t>(f, "heads/query_offset");
  ASSERT_EQ(query_offset, (std::vector<int64_t>{0, n_tokens[0] - 1}));
  const int64_t queries = n_tokens[0] - 1 + n_tokens[1] - 1, rows = row_offset[1] + sweep::rows_of_prompt(n_tokens[1]);
  const auto split = read_vector<float>(f, "heads/split");
  ASSERT_EQ(static_cast<int64_t>(split.size()), 2 * queries * slots * columns);
  const auto indices = read_vector<int32_t>(f, "evolution/indices");
  const auto ids = read_vector<int32_t>(f, "tokens/ids");

  // Recomputed for prompt 1, every layer, from a fresh forward pass and the lists in the file.
  const auto model = model::load_model(fixture().model_dir);
  const std::vector<int32_t> p1(ids.begin() + n_tokens[0], ids.end());
  const auto cap = model->forward(p1, {});
  int64_t newcomers = 0;
  for (int layer = 0; layer < 2; ++layer) {
    const auto sae = sae::load_sae_lens(fixture().sae_dirs[layer]);
    sweep::AttentionParts parts{cap.layers[layer].pattern, model->head_outputs(layer, cap.layers[layer].values),
                                model->attention_output_bias(layer)};
    model::PostAttentionNorm none;
    sweep::EvolutionRequest req;
    req.resid_pre = &cap.layers[layer].resid_pre;
    req.parts = &parts;
    req.post_norm = &none;
    for (int64_t q = 1; q < n_tokens[1]; ++q) {
      const int32_t* lists = indices.data() + (layer * rows + row_offset[1] + sweep::row_of_query(q)) * 16;
      std::vector<float> expect(slots * columns);
      sweep::head_split(sae, req, q, lists, 16, slots, expect.data());
      const float* got = split.data() + ((layer * queries + query_offset[1] + q - 1) * slots) * columns;
      for (int64_t i = 0; i < slots * columns; ++i) {
        if (std::isnan(expect[i])) {
          EXPECT_TRUE(std::isnan(got[i])) << layer << " " << q << " " << i;
        } else {
          EXPECT_NEAR(got[i], expect[i], 1e-4f * (1 + std::fabs(expect[i]))) << layer << " " << q << " " << i;
          newcomers += i % columns == 0;
        }
      }
    }
  }
  EXPECT_GT(newcomers, 0);

  // /graphs/trajectory_heads: one row per trajectory, the split of its (layer, length, final position).
  struct Row { int32_t prompt, length, layer, source_token, feature, final_position; };
  const auto traj_ds = h5_dataset(H5Dopen2(f, "graphs/trajectories", H5P_DEFAULT), "trajectories");
  const auto traj_type = h5_type(H5Dget_type(traj_ds), "type");
  const auto traj_space = h5_space(H5Dget_space(traj_ds), "space");
  std::vector<Row> trajectories(H5Sget_simple_extent_npoints(traj_space));
  ASSERT_GT(trajectories.size(), 0u);
  ASSERT_GE(H5Dread(traj_ds, traj_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, trajectories.data()), 0);
  const auto table = read_vector<float>(f, "graphs/trajectory_heads");
  ASSERT_EQ(table.size(), trajectories.size() * columns);
  for (size_t t = 0; t < trajectories.size(); ++t) {
    const auto& r = trajectories[t];
    const float* expect = split.data() +
                          ((r.layer * queries + query_offset[r.prompt] + r.length - 2) * slots + r.final_position) * columns;
    for (int64_t c = 0; c < columns; ++c) EXPECT_EQ(table[t * columns + c], expect[c]) << t;
    EXPECT_FALSE(std::isnan(expect[0])) << "a trajectory's slot holds a newcomer";
  }

  // JSON: every trajectory entry of a per-length graph carries its split, shares = values / jump.
  int64_t entries = 0;
  for (const auto& file : std::filesystem::recursive_directory_iterator(result.graphs_dir)) {
    // The per-length and traced graphs; other JSON in the folder (attribution graphs) has another schema.
    const auto name = file.path().filename().string();
    if (file.path().extension() != ".json" || (name.rfind("length_", 0) != 0 && name != "traced.json")) continue;
    const auto doc = nlohmann::json::parse(slurp(file.path().string()));
    for (const auto& edge : doc["edges"]) {
      for (const auto& t : edge["all_trajectories"]) {
        ASSERT_TRUE(t.contains("heads")) << file.path();
        const auto& h = t["heads"];
        ASSERT_EQ(h["values"].size(), static_cast<size_t>(heads));
        double sum = h["bias"].get<double>() + h["unassigned"].get<double>();
        for (size_t i = 0; i < h["values"].size(); ++i) {
          sum += h["values"][i].get<double>();
          EXPECT_NEAR(h["shares"][i].get<double>(), h["values"][i].get<double>() / h["jump"].get<double>(), 1e-6);
        }
        EXPECT_NEAR(sum, h["jump"].get<double>(), 1e-4 * (1 + std::fabs(h["jump"].get<double>())));
        ++entries;
      }
    }
  }
  EXPECT_GT(entries, 0);
}

TEST(HeadsFile, VersionOneFilesAreStillReadAndNewerOnesRefused) {
  saetraj::testing::TempDir dir;
  const auto opts = options(dir.file("v1.h5"), false);
  const auto comm = dist::make_serial_communicator();
  ASSERT_TRUE(pipeline::run_sweep(opts, *comm).complete);
  {
    const output::H5Handle f = output::h5_file(H5Fopen(opts.out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    EXPECT_FALSE(output::link_exists(f, "heads"));
    H5Adelete(f, "format_version");
    output::write_attr(f, "format_version", int64_t{1});
  }
  pipeline::GraphBuildOptions g;
  g.top_t = {5};
  g.write_json = false;
  const auto r = pipeline::build_graphs(opts.out, g);
  EXPECT_GT(r.trajectories, 0);
  EXPECT_EQ(output::read_done_flags(opts.out), (std::vector<uint8_t>{1, 1}));
  {
    const output::H5Handle f = output::h5_file(H5Fopen(opts.out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    EXPECT_FALSE(output::link_exists(f, "graphs/trajectory_heads"));
    H5Adelete(f, "format_version");
    output::write_attr(f, "format_version", int64_t{4});
  }
  try {
    pipeline::build_graphs(opts.out, g);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("has format_version 4; this saetraj reads versions 1 to 3"),
              std::string::npos)
        << e.what();
  }
}

TEST(HeadsFile, ResumeAcrossHeadsIsRefused) {
  saetraj::testing::TempDir dir;
  auto opts = options(dir.file("r.h5"), true);
  const auto comm = dist::make_serial_communicator();
  ASSERT_TRUE(pipeline::run_sweep(opts, *comm).complete);
  opts.heads = false;
  opts.resume = true;
  try {
    pipeline::run_sweep(opts, *comm);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("its head split (--heads, --top-t) (6 slots) differs from this run's (none)"),
              std::string::npos)
        << e.what();
  }
}

TEST(HeadsFile, OrderFreeViewsInFileRows) {
  saetraj::testing::TempDir dir;
  auto opts = options(dir.file("o.h5"), false);
  opts.orders = 12;
  opts.order_seed = 9;
  const auto comm = dist::make_serial_communicator();
  const auto result = pipeline::run_sweep(opts, *comm);
  ASSERT_TRUE(result.complete);
  using namespace output;
  const H5Handle f = h5_file(H5Fopen(opts.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  const auto group = h5_group(H5Gopen2(f, "order", H5P_DEFAULT), "/order");
  const int64_t slots = read_attr_int(group, "slots");
  EXPECT_EQ(slots, 6);
  EXPECT_EQ(read_attr_int(group, "orders"), 12);
  const auto n_tokens = read_vector<int32_t>(f, "prompts/n_tokens");
  const auto row_offset = read_vector<int64_t>(f, "prompts/row_offset");
  const int64_t rows = row_offset[1] + sweep::rows_of_prompt(n_tokens[1]), width = 3 * slots;
  const auto values = read_vector<float>(f, "order/values");
  ASSERT_EQ(static_cast<int64_t>(values.size()), 2 * rows * width);
  const auto indices = read_vector<int32_t>(f, "evolution/indices");
  const auto ids = read_vector<int32_t>(f, "tokens/ids");
  const auto model = model::load_model(fixture().model_dir);
  const std::vector<int32_t> p1(ids.begin() + n_tokens[0], ids.end());
  const auto cap = model->forward(p1, {});
  int64_t compared = 0;
  for (int layer = 0; layer < 2; ++layer) {
    const auto sae = sae::load_sae_lens(fixture().sae_dirs[layer]);
    sweep::AttentionParts parts{cap.layers[layer].pattern, model->head_outputs(layer, cap.layers[layer].values),
                                model->attention_output_bias(layer)};
    model::PostAttentionNorm none;
    sweep::EvolutionRequest req;
    req.resid_pre = &cap.layers[layer].resid_pre;
    req.parts = &parts;
    req.post_norm = &none;
    for (int64_t q = 1; q < n_tokens[1]; ++q) {
      const int64_t row = layer * rows + row_offset[1] + sweep::row_of_query(q), n = q + 1;
      std::vector<float> expect(slots * n * 3), full(slots), empty(slots);
      sweep::order_free(sae, req, q, indices.data() + row * 16, 16, slots, 12, sweep::order_seed(9, 1, layer, q),
                        expect.data(), full.data(), empty.data());
      for (int64_t i = 0; i < slots; ++i) {
        const float* initial = values.data() + row * width + 3 * i;
        if (std::isnan(full[i])) {
          EXPECT_TRUE(std::isnan(initial[0]));
          continue;
        }
        EXPECT_NEAR(initial[0], full[i], 1e-5f * (1 + std::fabs(full[i])));
        EXPECT_NEAR(initial[1], empty[i], 1e-5f * (1 + std::fabs(empty[i])));
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t c = 0; c < 3; ++c) {
            const float want = expect[(i * n + j) * 3 + c];
            EXPECT_NEAR(values[(row + j + 1) * width + 3 * i + c], want, 1e-5f * (1 + std::fabs(want)));
          }
        }
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 0);

  // /graphs/trajectory_order: per trajectory, the largest leave-one-out drop and Shapley value's token.
  struct Row { int32_t prompt, length, layer, source_token, feature, final_position; };
  const auto traj_ds = h5_dataset(H5Dopen2(f, "graphs/trajectories", H5P_DEFAULT), "trajectories");
  const auto traj_type = h5_type(H5Dget_type(traj_ds), "type");
  const auto traj_space = h5_space(H5Dget_space(traj_ds), "space");
  std::vector<Row> trajectories(H5Sget_simple_extent_npoints(traj_space));
  ASSERT_GT(trajectories.size(), 0u);
  ASSERT_GE(H5Dread(traj_ds, traj_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, trajectories.data()), 0);
  const auto summary = read_vector<int32_t>(f, "graphs/trajectory_order");
  ASSERT_EQ(summary.size(), 4 * trajectories.size());
  int64_t agree = 0;
  for (size_t t = 0; t < trajectories.size(); ++t) {
    const auto& r = trajectories[t];
    const int64_t q = r.length - 1, row = r.layer * rows + row_offset[r.prompt] + sweep::row_of_query(q);
    const float full = values[row * width + 3 * r.final_position];
    int32_t loo = 0, shapley = 0;
    for (int32_t j = 1; j <= q; ++j) {
      const float* cell = values.data() + (row + j + 1) * width + 3 * r.final_position;
      const float* best_loo = values.data() + (row + loo + 1) * width + 3 * r.final_position;
      const float* best_shapley = values.data() + (row + shapley + 1) * width + 3 * r.final_position;
      if (full - cell[0] > full - best_loo[0]) loo = j;
      if (cell[1] > best_shapley[1]) shapley = j;
    }
    EXPECT_EQ(summary[4 * t], loo) << t;
    EXPECT_EQ(summary[4 * t + 1], shapley) << t;
    EXPECT_EQ(summary[4 * t + 2], loo == r.source_token);
    EXPECT_EQ(summary[4 * t + 3], shapley == r.source_token);
    agree += shapley == r.source_token;
  }
  std::cout << "trajectories whose source token is the largest Shapley contributor: " << agree << " of "
            << trajectories.size() << "\n";

  // /graphs/trajectory_order_values and the JSON graphs' "order" member: the values behind the summary.
  const auto order_values = read_vector<float>(f, "graphs/trajectory_order_values");
  ASSERT_EQ(order_values.size(), 6 * trajectories.size());
  std::map<std::array<int32_t, 5>, size_t> row_of;
  for (size_t t = 0; t < trajectories.size(); ++t) {
    const auto& r = trajectories[t];
    const int64_t q = r.length - 1, row = r.layer * rows + row_offset[r.prompt] + sweep::row_of_query(q);
    const float* base = values.data() + row * width + 3 * r.final_position;
    const float* source = base + (r.source_token + 1) * width;
    const float* largest = base + (summary[4 * t + 1] + 1) * width;
    const float want[6] = {base[0], source[0], source[1], source[2], largest[1], largest[2]};
    for (int c = 0; c < 6; ++c) EXPECT_EQ(order_values[6 * t + c], want[c]) << t << " column " << c;
    row_of[{r.prompt, r.length, r.layer, r.source_token, r.feature}] = t;
  }
  int64_t entries = 0;
  for (const auto& file : std::filesystem::recursive_directory_iterator(result.graphs_dir)) {
    if (file.path().filename().string().rfind("length_", 0) != 0) continue;
    const int32_t prompt = std::stoi(file.path().parent_path().filename().string().substr(7));  // prompt_NNNN
    const auto doc = nlohmann::json::parse(slurp(file.path().string()));
    for (const auto& edge : doc["edges"]) {
      for (const auto& e : edge["all_trajectories"]) {
        const auto t = row_of.at({prompt, doc["prompt_length"].get<int32_t>(), edge["to"][1].get<int32_t>(),
                                  edge["from"][0].get<int32_t>(), e["sae_index"].get<int32_t>()});
        ASSERT_TRUE(e.contains("order")) << file.path();
        const auto& o = e["order"];
        EXPECT_EQ(o["loo_largest"].get<int32_t>(), summary[4 * t]);
        EXPECT_EQ(o["shapley_largest"]["token"].get<int32_t>(), summary[4 * t + 1]);
        EXPECT_EQ(o["loo_agrees"].get<bool>(), summary[4 * t + 2] == 1);
        EXPECT_EQ(o["shapley_agrees"].get<bool>(), summary[4 * t + 3] == 1);
        EXPECT_FLOAT_EQ(o["activation"].get<float>(), order_values[6 * t]);
        EXPECT_FLOAT_EQ(o["without_source"].get<float>(), order_values[6 * t + 1]);
        EXPECT_EQ(o["vanishes_without_source"].get<bool>(), order_values[6 * t + 1] == 0.0f);
        EXPECT_FLOAT_EQ(o["shapley_source"]["value"].get<float>(), order_values[6 * t + 2]);
        EXPECT_FLOAT_EQ(o["shapley_source"]["se"].get<float>(), order_values[6 * t + 3]);
        EXPECT_FLOAT_EQ(o["shapley_largest"]["value"].get<float>(), order_values[6 * t + 4]);
        EXPECT_FLOAT_EQ(o["shapley_largest"]["se"].get<float>(), order_values[6 * t + 5]);
        ++entries;
      }
    }
  }
  EXPECT_GT(entries, 0);
  opts.orders = 0;
  opts.resume = true;
  EXPECT_THROW(pipeline::run_sweep(opts, *comm), InputError);
}

TEST(HeadsFile, OneOrderIsRefused) {
  saetraj::testing::TempDir dir;
  auto opts = options(dir.file("one.h5"), false);
  opts.orders = 1;
  const auto comm = dist::make_serial_communicator();
  try {
    pipeline::run_sweep(opts, *comm);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--orders must be 0 (off) or at least 2, got 1"), std::string::npos) << e.what();
  }
}

TEST(HeadsFile, GraphTableWriterChecksItsShape) {
  // output::write_matrix, which writes trajectory_heads/_order/_order_values: a [rows, columns] table with
  // named columns, refused with the dataset's name when the values or the names do not fit the shape.
  saetraj::testing::TempDir dir;
  using namespace output;
  const auto path = dir.file("m.h5");
  {
    const H5Handle f = h5_file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create");
    write_matrix<float>(f, "m", {1, 2, 3, 4, 5, 6}, 2, 3, {"a", "b", "c"});
    write_matrix<int32_t>(f, "empty", {}, 0, 4);
    try {
      write_matrix<float>(f, "bad", {1, 2, 3}, 2, 3);
      FAIL() << "expected IoError";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("dataset 'bad': 3 values for [2, 3]"), std::string::npos) << e.what();
    }
    try {
      write_matrix<int32_t>(f, "names", {1, 2}, 1, 2, {"only one"});
      FAIL() << "expected IoError";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("dataset 'names': 1 column names for 2 columns"), std::string::npos)
          << e.what();
    }
  }
  const H5Handle f = h5_file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(read_vector<float>(f, "m"), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  const auto ds = h5_dataset(H5Dopen2(f, "m", H5P_DEFAULT), "m");
  const auto space = h5_space(H5Dget_space(ds), "m");
  hsize_t dims[2] = {0, 0};
  ASSERT_EQ(H5Sget_simple_extent_ndims(space), 2);
  H5Sget_simple_extent_dims(space, dims, nullptr);
  EXPECT_EQ(dims[0], 2u);
  EXPECT_EQ(dims[1], 3u);
  EXPECT_EQ(read_attr_strings(ds, "columns"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(read_vector<int32_t>(f, "empty").empty());
  EXPECT_FALSE(link_exists(f, "bad"));
}
