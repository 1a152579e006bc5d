// output::SweepReader (issue 16 part 4): every dataset of a real sweep file (with --heads and --orders) read
// through it equals the same dataset read directly with HDF5; graph tables and explanations written through
// it read back unchanged; and each broken file (missing dataset, wrong type, wrong shape, inconsistent
// offsets, truncated, newer format version, a graph table without a field) is refused with one line
// naming the file and the dataset.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "saetraj/core/error.h"
#include "saetraj/dist/communicator.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/synth/synth.h"
#include "test_support.h"

using namespace saetraj;
using ::testing::HasSubstr;

namespace {

namespace fs = std::filesystem;

// One sweep of two prompts over a 2-layer synthetic GPT-2, with --heads and --orders, made once.
struct Fixture {
  saetraj::testing::TempDir dir{"saetraj-reader"};
  std::string sweep;
};

const Fixture& fixture() {
  static const Fixture* f = [] {
    auto* fx = new Fixture;
    synth::SynthOptions o;
    o.out = fx->dir.file("model");
    o.n_layers = 2;
    o.d_model = 32;
    o.n_heads = 4;
    o.d_mlp = 64;
    o.vocab_size = 320;
    o.n_ctx = 40;
    o.d_sae = 96;
    const auto synth = synth::synth_gpt2_fixture(o);
    pipeline::SweepOptions s;
    s.model = synth.model_dir;
    s.saes = {synth.sae_pattern};
    s.prompts = {"Mark gave flashlight to Max.", "Smith left the dark room"};
    s.k = 16;
    s.top_t = 5;
    s.chunk_rows = 20;
    s.heads = true;
    s.orders = 2;
    s.order_seed = 3;
    s.out = fx->dir.file("sweep.h5");
    const auto comm = dist::make_serial_communicator();
    if (!pipeline::run_sweep(s, *comm).complete) throw std::runtime_error("fixture sweep incomplete");
    fx->sweep = s.out;
    return fx;
  }();
  return *f;
}

// A copy of the fixture's sweep file to break.
std::string copy_of_sweep(const saetraj::testing::TempDir& dir, const std::string& name) {
  const std::string path = dir.file(name);
  fs::copy_file(fixture().sweep, path, fs::copy_options::overwrite_existing);
  return path;
}

output::H5Handle open_raw(const std::string& path, bool writable) {
  output::h5_quiet_errors();
  return output::h5_file(H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT), path);
}

// The message of the error SweepReader::open throws (and that it is a FormatError).
std::string open_error(const std::string& path) {
  try {
    output::SweepReader::open(path);
  } catch (const FormatError& e) {
    return e.what();
  } catch (const Error& e) {
    return std::string("not a FormatError: ") + e.what();
  }
  return "no error";
}

// Replaces dataset `name` by a 1-D one of `values`.
template <typename T>
void replace_dataset(const std::string& path, const std::string& name, const std::vector<T>& values) {
  const auto f = open_raw(path, true);
  ASSERT_GE(H5Ldelete(f, name.c_str(), H5P_DEFAULT), 0);
  output::write_vector(f, name, values);
}

}  // namespace

TEST(SweepReader, EveryDatasetEqualsTheFileReadDirectly) {
  const auto r = output::SweepReader::open(fixture().sweep);
  const auto f = open_raw(fixture().sweep, false);
  const auto& a = r.attributes();
  EXPECT_EQ(a.format_version, output::read_attr_int(f, "format_version"));
  EXPECT_EQ(a.model, output::read_attr_string(f, "model"));
  EXPECT_EQ(a.architecture, "GPT2LMHeadModel");
  EXPECT_EQ(a.layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(a.k, 16);
  EXPECT_EQ(a.d_model, 32);
  EXPECT_EQ(a.sae_ids, output::read_attr_strings(f, "sae_ids"));
  EXPECT_EQ(a.sae_hooks, output::read_attr_strings(f, "sae_hooks"));
  EXPECT_TRUE(a.complete);
  EXPECT_EQ(a.command_line, output::read_attr_string(f, "command_line"));

  const auto& p = r.prompts();
  ASSERT_EQ(r.n_prompts(), 2);
  EXPECT_EQ(p.text, (std::vector<std::string>{"Mark gave flashlight to Max.", "Smith left the dark room"}));
  EXPECT_EQ(p.n_tokens, output::read_vector<int32_t>(f, "prompts/n_tokens"));
  EXPECT_EQ(p.token_offset, (std::vector<int64_t>{0, p.n_tokens[0]}));
  EXPECT_EQ(p.row_offset, (std::vector<int64_t>{0, sweep::rows_of_prompt(p.n_tokens[0])}));
  EXPECT_EQ(p.done, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(p.token_ids, output::read_vector<int32_t>(f, "tokens/ids"));
  EXPECT_EQ(p.token_text, output::read_strings(f, "tokens/text"));
  EXPECT_TRUE(p.skipped_line.empty());
  const int64_t rows = sweep::rows_of_prompt(p.n_tokens[0]) + sweep::rows_of_prompt(p.n_tokens[1]);
  EXPECT_EQ(r.total_rows(), rows);
  EXPECT_EQ(r.total_queries(), p.n_tokens[0] + p.n_tokens[1] - 2);
  EXPECT_EQ(r.row_query(), output::read_vector<int32_t>(f, "evolution/row_query"));
  EXPECT_EQ(r.row_step(), output::read_vector<int32_t>(f, "evolution/row_step"));

  // Blocks of the evolution: layer 1, the second prompt's rows, against the whole table read at once.
  const auto indices = output::read_vector<int32_t>(f, "evolution/indices");
  const auto values = output::read_vector<float>(f, "evolution/values");
  const int64_t begin = p.row_offset[1], n = sweep::rows_of_prompt(p.n_tokens[1]), k = 16;
  const auto block = r.evolution_indices(1, begin, n);
  const auto vblock = r.evolution_values(1, begin, n);
  ASSERT_EQ(static_cast<int64_t>(block.size()), n * k);
  EXPECT_EQ(block, std::vector<int32_t>(indices.begin() + (rows + begin) * k, indices.begin() + (rows + begin + n) * k));
  EXPECT_EQ(vblock, std::vector<float>(values.begin() + (rows + begin) * k, values.begin() + (rows + begin + n) * k));
  EXPECT_GT(*std::max_element(block.begin(), block.end()), 0);

  const auto readout = r.readout();
  EXPECT_EQ(readout.token_ids, output::read_vector<int32_t>(f, "readout/token_ids"));
  EXPECT_EQ(readout.token_text.size(), 2u * 2 * 5);

  // /heads: the second prompt's split is the [L, queries, S, H+3] slice at its query offset.
  ASSERT_TRUE(r.has_heads());
  EXPECT_EQ(r.heads(), 4);
  EXPECT_EQ(r.head_slots(), 6);
  EXPECT_EQ(r.head_column_names().front(), "jump");
  const auto split = output::read_vector<float>(f, "heads/split");
  const int64_t Q = r.total_queries(), S = 6, C = 7, q0 = p.n_tokens[0] - 1, nq = p.n_tokens[1] - 1;
  const auto mine = r.head_split(1);
  ASSERT_EQ(static_cast<int64_t>(mine.size()), 2 * nq * S * C);
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t i = 0; i < nq * S * C; ++i) {
      const float want = split[(l * Q + q0) * S * C + i], got = mine[l * nq * S * C + i];
      ASSERT_TRUE((std::isnan(want) && std::isnan(got)) || want == got) << "layer " << l << " entry " << i;
    }
  }

  // /order: rows of the first prompt.
  ASSERT_TRUE(r.has_order());
  EXPECT_EQ(r.orders(), 2);
  EXPECT_EQ(r.order_seed(), 3);
  const auto order = output::read_vector<float>(f, "order/values");
  const int64_t W = 3 * r.order_slots(), n0 = sweep::rows_of_prompt(p.n_tokens[0]);
  const auto ov = r.order_values(0, n0);
  ASSERT_EQ(static_cast<int64_t>(ov.size()), 2 * n0 * W);
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t i = 0; i < n0 * W; ++i) {
      const float want = order[l * rows * W + i], got = ov[l * n0 * W + i];
      ASSERT_TRUE((std::isnan(want) && std::isnan(got)) || want == got) << "layer " << l << " entry " << i;
    }
  }

  // Graph tables: the trajectory rows read as plain int32 records.
  EXPECT_EQ(r.graph_groups(), (std::vector<std::string>{"graphs"}));
  const auto g = r.graphs();
  EXPECT_EQ(g.top_t, 5);
  ASSERT_FALSE(g.trajectories.empty());
  EXPECT_EQ(g.head_columns, 7);
  EXPECT_EQ(g.trajectory_heads.size(), g.trajectories.size() * 7);
  EXPECT_TRUE(g.has_order);
  EXPECT_EQ(g.trajectory_order.size(), g.trajectories.size() * 4);
  {
    const auto ds = output::h5_dataset(H5Dopen2(f, "graphs/trajectories", H5P_DEFAULT), "t");
    const auto type = output::h5_type(H5Dget_type(ds), "type");
    std::vector<output::TrajectoryRecord> raw(g.trajectories.size());
    ASSERT_GE(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), 0);
    EXPECT_EQ(raw, g.trajectories);
  }
  for (const auto& t : g.trajectories) {
    EXPECT_LE(t.final_position, 5);
    EXPECT_LT(t.source_token, t.length);
  }
  EXPECT_FALSE(r.has_explanations());
}

TEST(SweepReader, WrittenGraphsAndExplanationsReadBack) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "w.h5");
  output::GraphTables t;
  t.top_t = 3;
  t.trajectories = {{0, 5, 1, 2, 17, 0}, {1, 4, 0, 1, 9, 3}};
  t.edges = {{0, 5, 2, 0, 4, 1, 1, 0}};
  t.traced_edges = {{0, 2, 0, 4, 1, 1, 0}, {1, 1, 0, 3, 1, 2, 3}};
  t.head_columns = 2;
  t.head_column_names = {"jump", "bias"};
  t.trajectory_heads = {1.5f, -2.0f, 0.25f, 4.0f};
  t.has_order = true;
  t.order_column_names = {"a", "b", "c", "d"};
  t.trajectory_order = {1, 2, 1, 0, -1, -1, -1, -1};
  const std::vector<output::ExplanationRecord> ex = {{0, 17, "dark rooms"}, {1, 9, "names, ÿ"}};
  {
    auto w = output::SweepReader::open(path, true);
    w.write_graphs("graphs_T3", t);
    w.write_explanations(ex);
    w.write_explanations(ex);  // replaces
  }
  {
    const auto r = output::SweepReader::open(path);
    EXPECT_EQ(r.graph_groups(), (std::vector<std::string>{"graphs", "graphs_T3"}));
    const auto back = r.graphs("graphs_T3");
    EXPECT_EQ(back.top_t, 3);
    EXPECT_EQ(back.trajectories, t.trajectories);
    EXPECT_EQ(back.edges, t.edges);
    EXPECT_EQ(back.traced_edges, t.traced_edges);
    EXPECT_EQ(back.head_column_names, t.head_column_names);
    EXPECT_EQ(back.trajectory_heads, t.trajectory_heads);
    EXPECT_EQ(back.order_column_names, t.order_column_names);
    EXPECT_EQ(back.trajectory_order, t.trajectory_order);
    EXPECT_EQ(r.explanations(), ex);
    // The sweep's own tables are untouched.
    EXPECT_EQ(r.graphs().top_t, 5);
    EXPECT_THROW(output::SweepReader::open(path).write_explanations(ex), InputError);  // opened read-only
  }
  auto w = output::SweepReader::open(path, true);
  t.trajectory_heads.pop_back();
  try {
    w.write_graphs("graphs", t);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": trajectory_heads has 3 values and 2 column names for 2 trajectories x 2 columns");
  }
  try {
    w.write_graphs("evolution", t);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), "graph tables go to /graphs or /graphs_T<T>, not /evolution");
  }
}

TEST(SweepReader, MissingDatasetNamesFileAndDataset) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "m.h5");
  ASSERT_GE(H5Ldelete(open_raw(path, true), "evolution/values", H5P_DEFAULT), 0);
  EXPECT_EQ(open_error(path),
            path + ": missing dataset /evolution/values (the file is damaged or was not written by saetraj sweep)");
}

TEST(SweepReader, WrongTypeNamesFileDatasetAndTypes) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "t.h5");
  const auto n = output::SweepReader::open(path).prompts().n_tokens;
  replace_dataset(path, "prompts/n_tokens", std::vector<float>(n.begin(), n.end()));
  EXPECT_EQ(open_error(path), path + ": /prompts/n_tokens holds float32; expected int32");
}

TEST(SweepReader, WrongShapeNamesFileDatasetAndShapes) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "s.h5");
  const int64_t rows = output::SweepReader::open(path).total_rows();
  {
    const auto f = open_raw(path, true);
    ASSERT_GE(H5Ldelete(f, "evolution/indices", H5P_DEFAULT), 0);
    const hsize_t dims[3] = {2, static_cast<hsize_t>(rows - 1), 16};
    const auto space = output::h5_space(H5Screate_simple(3, dims, nullptr), "space");
    output::h5_dataset(H5Dcreate2(f, "evolution/indices", H5T_NATIVE_INT32, space, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT),
                       "create");
  }
  EXPECT_EQ(open_error(path), path + ": /evolution/indices has shape [2, " + std::to_string(rows - 1) +
                                  ", 16]; expected [2, " + std::to_string(rows) + ", 16] (layers x rows x k)");
}

TEST(SweepReader, OffsetsThatAreNotRunningSumsAreRefused) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "o.h5");
  auto offsets = output::SweepReader::open(path).prompts().row_offset;
  const int64_t want = offsets[1];
  offsets[1] += 1;
  replace_dataset(path, "prompts/row_offset", offsets);
  EXPECT_EQ(open_error(path), path + ": /prompts/row_offset[1] is " + std::to_string(want + 1) + "; expected " +
                                  std::to_string(want) + " (the rows of the prompts before it)");
}

TEST(SweepReader, TruncatedFileIsRefused) {
  saetraj::testing::TempDir dir;
  const auto whole = saetraj::testing::read_file(fixture().sweep);
  const auto path = dir.file("cut.h5");
  saetraj::testing::write_file(path, whole.substr(0, whole.size() / 2));
  EXPECT_EQ(open_error(path), path + " is truncated: " + std::to_string(whole.size() / 2) + " of " +
                                  std::to_string(whole.size()) +
                                  " bytes (an unfinished copy or a full disk cut it short); give a sweep file "
                                  "written by saetraj sweep");
}

TEST(SweepReader, FormatVersionsOneAndTwoAreReadNewerRefused) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "v.h5");
  output::write_attr(open_raw(path, true), "format_version", int64_t{1});
  EXPECT_EQ(output::SweepReader::open(path).attributes().format_version, 1);
  output::write_attr(open_raw(path, true), "format_version", int64_t{4});
  EXPECT_EQ(open_error(path), path + " has format_version 4; this saetraj reads versions 1 to 3");
  output::write_attr(open_raw(path, true), "format_version", std::string("2"));
  EXPECT_EQ(open_error(path), path + ": attribute 'format_version' of the root is not an integer; give a sweep "
                                     "file written by saetraj sweep");
}

TEST(SweepReader, MissingRootAttributeAndBadHeadsAttributes) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "a.h5");
  ASSERT_GE(H5Adelete(open_raw(path, true), "sae_ids"), 0);
  EXPECT_EQ(open_error(path), path + ": the root has no attribute 'sae_ids'");

  const auto heads = copy_of_sweep(dir, "h.h5");
  {
    const auto f = open_raw(heads, true);
    output::write_attr(output::h5_group(H5Gopen2(f, "heads", H5P_DEFAULT), "g"), "columns",
                       std::vector<std::string>{"jump"});
  }
  EXPECT_EQ(open_error(heads), heads + ": attribute 'columns' of /heads names 1 columns; expected heads + 3 = 7");
}

TEST(SweepReader, GraphTableWithoutAFieldAndReadsOutOfRange) {
  saetraj::testing::TempDir dir;
  const auto path = copy_of_sweep(dir, "g.h5");
  replace_dataset(path, "graphs/edges", std::vector<int32_t>{1, 2, 3});
  const auto r = output::SweepReader::open(path);
  try {
    r.graphs();
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": /graphs/edges holds int32; expected a table (compound) of int32 fields");
  }
  try {
    r.graphs("graphs_T9");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), path + " has no /graphs_T9; run `saetraj graph " + path + "` first");
  }
  try {
    r.evolution_indices(0, r.total_rows() - 2, 3);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ": reading /evolution/indices at [0, " + std::to_string(r.total_rows() - 2) +
                                    ", 0] + [1, 3, 16] goes beyond its shape [2, "));
  }
  EXPECT_THROW(r.evolution_values(2, 0, 1), InputError);
  EXPECT_THROW(r.head_split(2), InputError);
  try {
    r.explanations();
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), path + " has no /explanations; run `saetraj explain " + path + "` first");
  }
}
