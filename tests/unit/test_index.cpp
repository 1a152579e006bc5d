// saetraj index (issue 16 §1): the index of two hand-made sweep files (random graph tables with head and
// order columns, traced edges, explanations) equals a brute-force recomputation in this test, column by
// column and aggregate by aggregate, for batches (and windows) of 7, 40 and many rows; FeatureAccumulator's medians (even
// and odd counts), ties among the top source tokens and the share/agreement rules on small hand-checked
// cases; and each bad set of inputs is refused with one line naming the file and the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "saetraj/core/error.h"
#include "saetraj/dist/communicator.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/pipeline/index_runner.h"
#include "test_support.h"

using namespace saetraj;
using ::testing::HasSubstr;

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kHeadNames = {"jump", "bias", "unassigned", "head 0", "head 1"};
const std::vector<std::string> kOrderNames = {"loo_source", "shapley_source", "loo_agrees", "shapley_agrees"};
const std::vector<std::string> kValueNames = {"activation", "without_source", "shapley_source", "shapley_source_se",
                                              "shapley_largest", "shapley_largest_se"};

struct Made {
  output::SweepHeader header;
  output::GraphTables tables;
  std::vector<output::ExplanationRecord> explanations;
};

// A complete sweep file with `prompts` prompts and random graph tables (seeded), written through the
// sweep writer and SweepReader::write_graphs; its evolution is left at the fill value (index never reads it).
// extras: 0 no head or order columns, 1 both, 2 both with other head column names.
Made make_sweep(const std::string& path, unsigned seed, int prompts, int rows, int64_t k = 8,
                const std::string& model = "m", bool graphs = true, bool complete = true, int extras = 1) {
  std::mt19937 rng(seed);
  const auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Made m;
  auto& h = m.header;
  h.model = model;
  h.architecture = "GPT2LMHeadModel";
  h.d_model = 8;
  h.n_model_layers = 3;
  h.layers = {0, 2};
  h.k = k;
  h.sae_ids = {"sae-0", "sae-2"};
  h.sae_hooks = {"blocks.0.hook_resid_mid", "blocks.2.hook_resid_mid"};
  h.sae_preprocessing = {"relu", "relu"};
  h.command_line = "saetraj sweep (made by test_index)";
  h.config_json = "{}";
  h.bos = "prepended";
  h.created_utc = "2026-01-01T00:00:00Z";
  for (int p = 0; p < prompts; ++p) {
    output::PromptEntry e;
    e.id = p % 2 ? "id" + std::to_string(seed) + "-" + std::to_string(p) : "";
    e.text = "prompt " + std::to_string(p);
    const int n = uniform(3, 8);
    for (int t = 0; t < n; ++t) {
      e.ids.push_back(uniform(0, 30));
      e.tokens.push_back("tok" + std::to_string(e.ids.back()) + (t % 3 == 0 ? "'" : ""));
    }
    h.prompts.push_back(e);
  }
  output::create_sweep_file(path, h, true);
  {
    const auto comm = dist::make_serial_communicator();
    output::ParallelSweepFile file(path, *comm);
    if (complete) {
      for (int p = 0; p < prompts; ++p) file.mark_done(p);
    }
    file.close();
  }
  output::finalize_sweep_file(path, [](int32_t id) { return std::to_string(id); }, complete);
  if (!graphs) return m;
  auto& t = m.tables;
  t.top_t = 3;
  for (int r = 0; r < rows; ++r) {
    const int p = uniform(0, prompts - 1);
    const int n = static_cast<int>(h.prompts[static_cast<size_t>(p)].ids.size());
    const int length = uniform(2, n);
    t.trajectories.push_back({p, length, uniform(0, 1) ? 2 : 0, uniform(0, length - 1), uniform(0, 9),
                              uniform(0, static_cast<int>(k) - 1)});
    const int jump_kind = uniform(0, 5);
    const float jump = jump_kind == 0 ? 0.0f : jump_kind == 1 ? NAN : static_cast<float>(uniform(1, 100)) / 7.0f;
    t.trajectory_heads.insert(t.trajectory_heads.end(),
                              {jump, 0.5f, -0.25f, static_cast<float>(uniform(-50, 50)) / 3.0f,
                               static_cast<float>(uniform(-50, 50)) / 11.0f});
    t.trajectory_order.insert(t.trajectory_order.end(), {uniform(0, 5), uniform(0, 5), uniform(-1, 1), uniform(-1, 1)});
    for (int c = 0; c < 6; ++c) t.trajectory_order_values.push_back(static_cast<float>(uniform(0, 1000)) / 13.0f);
  }
  // Traced edges into about half the (prompt, layer, query, source) of the rows, some with no trajectories.
  for (size_t r = 0; r < t.trajectories.size(); r += 2) {
    const auto& tr = t.trajectories[r];
    t.traced_edges.push_back({tr.prompt, tr.source_token, 0, tr.length - 1, tr.layer, uniform(0, 2), 0});
  }
  t.head_columns = static_cast<int64_t>(kHeadNames.size());
  t.head_column_names = kHeadNames;
  if (extras == 2) t.head_column_names[3] = "h0";
  t.has_order = true;
  t.order_column_names = kOrderNames;
  t.order_value_columns = 6;
  t.order_value_column_names = kValueNames;
  if (extras == 0) {
    t.head_columns = t.order_value_columns = 0;
    t.head_column_names.clear();
    t.order_value_column_names.clear();
    t.has_order = false;
    t.order_column_names.clear();
    t.trajectory_heads.clear();
    t.trajectory_order.clear();
    t.trajectory_order_values.clear();
  }
  for (int f = 0; f < 10; f += 3) m.explanations.push_back({2, f, "seed " + std::to_string(seed) + " f" + std::to_string(f)});
  m.explanations.push_back({0, 1, ""});
  auto w = output::SweepReader::open(path, true);
  w.write_graphs("graphs", t);
  w.write_explanations(m.explanations);
  return m;
}

output::H5Handle open_index(const std::string& path) {
  output::h5_quiet_errors();
  return output::h5_file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path);
}

template <typename T>
hid_t h5_native();
template <> hid_t h5_native<int8_t>() { return H5T_NATIVE_INT8; }
template <> hid_t h5_native<int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t h5_native<int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t h5_native<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t h5_native<double>() { return H5T_NATIVE_DOUBLE; }

template <typename T>
std::vector<T> read(hid_t f, const std::string& name) {
  const auto ds = output::h5_dataset(H5Dopen2(f, name.c_str(), H5P_DEFAULT), name);
  const auto space = output::h5_space(H5Dget_space(ds), name);
  std::vector<T> v(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
  if (!v.empty()) EXPECT_GE(H5Dread(ds, h5_native<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
  return v;
}

// Doubles equal bit for bit (NaN equals NaN).
void expect_same(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    EXPECT_EQ(a[i], b[i]) << what << " [" << i << "]";
  }
}

pipeline::IndexResult index(const std::vector<std::string>& sweeps, const std::string& out, int64_t batch_rows = 0,
                            bool overwrite = true, int64_t top_t = 0) {
  pipeline::IndexOptions o;
  o.sweeps = sweeps;
  o.out = out;
  o.overwrite = overwrite;
  o.batch_rows = batch_rows;
  o.top_t = top_t;
  o.progress = false;
  const auto comm = dist::make_serial_communicator();
  return pipeline::build_index(o, *comm);
}

std::string index_error(const std::vector<std::string>& sweeps, const std::string& out, bool overwrite = true,
                        int64_t top_t = 0) {
  try {
    index(sweeps, out, 0, overwrite, top_t);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(Index, EqualsABruteForceRecomputationForAnyBatchSize) {
  saetraj::testing::TempDir dir("saetraj-index");
  const auto a = make_sweep(dir.file("a.h5"), 1, 5, 300);
  const auto b = make_sweep(dir.file("b.h5"), 2, 4, 200);
  const std::vector<const Made*> made = {&a, &b};

  // The brute force: every row with its global prompt, stably sorted by (layer, feature).
  struct Row {
    output::TrajectoryRecord t;
    int32_t prompt, source_id;
    int8_t traced;
    const float* heads;
    const int32_t* order;
    const float* values;
  };
  std::vector<Row> rows;
  std::vector<int32_t> all_tokens;
  std::vector<std::string> all_token_text;
  int32_t prompt_base = 0;
  for (const Made* m : made) {
    std::vector<int64_t> offset;
    const int64_t token_base = static_cast<int64_t>(all_tokens.size());
    for (const auto& p : m->header.prompts) {
      offset.push_back(static_cast<int64_t>(all_tokens.size()));
      all_tokens.insert(all_tokens.end(), p.ids.begin(), p.ids.end());
      all_token_text.insert(all_token_text.end(), p.tokens.begin(), p.tokens.end());
    }
    (void)token_base;
    const auto& t = m->tables;
    for (size_t r = 0; r < t.trajectories.size(); ++r) {
      const auto& tr = t.trajectories[r];
      bool traced = false;
      for (const auto& e : t.traced_edges) {
        traced |= e.prompt == tr.prompt && e.to_layer == tr.layer && e.to_token == tr.length - 1 &&
                  e.from_token == tr.source_token && e.num_trajectories > 0;
      }
      rows.push_back({tr, prompt_base + tr.prompt,
                      all_tokens[static_cast<size_t>(offset[static_cast<size_t>(tr.prompt)] + tr.source_token)],
                      static_cast<int8_t>(traced), t.trajectory_heads.data() + r * 5, t.trajectory_order.data() + r * 4,
                      t.trajectory_order_values.data() + r * 6});
    }
    prompt_base += static_cast<int32_t>(m->header.prompts.size());
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) {
    return std::tie(x.t.layer, x.t.feature) < std::tie(y.t.layer, y.t.feature);
  });

  std::vector<std::string> outs;
  for (int64_t batch : {7, 40, 0}) {
    const std::string out = dir.file("index_" + std::to_string(batch) + ".h5");
    const auto result = index({dir.file("a.h5"), dir.file("b.h5")}, out, batch);
    EXPECT_EQ(result.occurrences, 500);
    EXPECT_EQ(result.prompts, 9);
    outs.push_back(out);
  }
  const auto f = open_index(outs[0]);
  EXPECT_EQ(output::read_attr_string(f, "format"), "saetraj-index");
  EXPECT_EQ(output::read_attr_int(f, "format_version"), 1);
  EXPECT_EQ(output::read_attr_int(f, "top_t"), 3);
  EXPECT_EQ(output::read_attr_string(f, "graphs_group"), "graphs");
  EXPECT_EQ(output::read_attr_strings(f, "sources"), (std::vector<std::string>{dir.file("a.h5"), dir.file("b.h5")}));
  EXPECT_EQ(read<int32_t>(f, "prompts/source"), (std::vector<int32_t>{0, 0, 0, 0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(read<int32_t>(f, "prompts/index"), (std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2, 3}));
  EXPECT_EQ(output::read_strings(f, "prompts/id")[1], "id1-1");
  EXPECT_EQ(output::read_strings(f, "prompts/id")[0], "");
  EXPECT_EQ(read<int32_t>(f, "tokens/ids"), all_tokens);
  EXPECT_EQ(output::read_strings(f, "tokens/text"), all_token_text);

  // /occurrences, column by column.
  std::vector<int32_t> prompt, length, source_token, distance, final_position, source_id, order;
  std::vector<int8_t> traced;
  std::vector<float> heads, values;
  for (const auto& r : rows) {
    prompt.push_back(r.prompt);
    length.push_back(r.t.length);
    source_token.push_back(r.t.source_token);
    distance.push_back(r.t.length - 1 - r.t.source_token);
    final_position.push_back(r.t.final_position);
    source_id.push_back(r.source_id);
    traced.push_back(r.traced);
    heads.insert(heads.end(), r.heads, r.heads + 5);
    order.insert(order.end(), r.order, r.order + 4);
    values.insert(values.end(), r.values, r.values + 6);
  }
  EXPECT_EQ(read<int32_t>(f, "occurrences/prompt"), prompt);
  EXPECT_EQ(read<int32_t>(f, "occurrences/length"), length);
  EXPECT_EQ(read<int32_t>(f, "occurrences/source_token"), source_token);
  EXPECT_EQ(read<int32_t>(f, "occurrences/distance_back"), distance);
  EXPECT_EQ(read<int32_t>(f, "occurrences/final_position"), final_position);
  EXPECT_EQ(read<int32_t>(f, "occurrences/source_id"), source_id);
  EXPECT_EQ(read<int8_t>(f, "occurrences/traced"), traced);
  EXPECT_GT(std::count(traced.begin(), traced.end(), 1), 50);
  const auto heads_read = read<float>(f, "occurrences/heads");
  ASSERT_EQ(heads_read.size(), heads.size());
  EXPECT_EQ(std::memcmp(heads_read.data(), heads.data(), heads.size() * sizeof(float)), 0);  // NaN included
  EXPECT_EQ(read<int32_t>(f, "occurrences/order"), order);
  EXPECT_EQ(read<float>(f, "occurrences/order_values"), values);
  {
    const auto ds = output::h5_dataset(H5Dopen2(f, "occurrences/heads", H5P_DEFAULT), "heads");
    EXPECT_EQ(output::read_attr_strings(ds, "columns"), kHeadNames);
  }

  // /features: keys and aggregates from the sorted rows.
  std::vector<int32_t> layer, feature, n_prompts, top;
  std::vector<int64_t> start, count, n_traced, top_counts;
  std::vector<double> d_mean, d_median, f_mean, f_median, share, loo, shapley;
  std::vector<std::string> explanation;
  for (size_t s = 0; s < rows.size();) {
    size_t e = s;
    while (e < rows.size() && rows[e].t.layer == rows[s].t.layer && rows[e].t.feature == rows[s].t.feature) ++e;
    layer.push_back(rows[s].t.layer);
    feature.push_back(rows[s].t.feature);
    start.push_back(static_cast<int64_t>(s));
    count.push_back(static_cast<int64_t>(e - s));
    std::set<int32_t> ps;
    std::vector<int32_t> ds, fs_;
    std::map<int32_t, int64_t> sources;
    int64_t tr = 0;
    double share_sum[2] = {0, 0};
    int64_t share_n = 0, loo_yes = 0, loo_n = 0, sh_yes = 0, sh_n = 0;
    for (size_t i = s; i < e; ++i) {
      ps.insert(rows[i].prompt);
      ds.push_back(rows[i].t.length - 1 - rows[i].t.source_token);
      fs_.push_back(rows[i].t.final_position);
      ++sources[rows[i].source_id];
      tr += rows[i].traced;
      const double jump = rows[i].heads[0];
      if (std::isfinite(jump) && jump != 0) {
        share_sum[0] += double(rows[i].heads[3]) / jump;
        share_sum[1] += double(rows[i].heads[4]) / jump;
        ++share_n;
      }
      if (rows[i].order[2] >= 0) {
        ++loo_n;
        loo_yes += rows[i].order[2];
      }
      if (rows[i].order[3] >= 0) {
        ++sh_n;
        sh_yes += rows[i].order[3];
      }
    }
    n_prompts.push_back(static_cast<int32_t>(ps.size()));
    n_traced.push_back(tr);
    const auto mean = [](const std::vector<int32_t>& v) {
      double sum = 0;
      for (int32_t x : v) sum += x;
      return sum / static_cast<double>(v.size());
    };
    const auto median = [](std::vector<int32_t> v) {
      std::sort(v.begin(), v.end());
      const size_t n = v.size();
      return n % 2 ? double(v[n / 2]) : (double(v[n / 2 - 1]) + double(v[n / 2])) / 2.0;
    };
    d_mean.push_back(mean(ds));
    d_median.push_back(median(ds));
    f_mean.push_back(mean(fs_));
    f_median.push_back(median(fs_));
    std::vector<std::pair<int64_t, int32_t>> ranked;  // (-count, id)
    for (const auto& [id, c] : sources) ranked.push_back({-c, id});
    std::sort(ranked.begin(), ranked.end());
    for (size_t i = 0; i < 5; ++i) {
      top.push_back(i < ranked.size() ? ranked[i].second : -1);
      top_counts.push_back(i < ranked.size() ? -ranked[i].first : 0);
    }
    for (double x : share_sum) share.push_back(share_n ? x / double(share_n) : NAN);
    loo.push_back(loo_n ? double(loo_yes) / double(loo_n) : NAN);
    shapley.push_back(sh_n ? double(sh_yes) / double(sh_n) : NAN);
    std::string text;
    bool found = false;
    for (const Made* m : made) {
      for (const auto& x : m->explanations) {
        if (!found && x.layer == rows[s].t.layer && x.feature == rows[s].t.feature) {
          text = x.text;
          found = true;
        }
      }
    }
    explanation.push_back(text);
    s = e;
  }
  EXPECT_EQ(read<int32_t>(f, "features/layer"), layer);
  EXPECT_EQ(read<int32_t>(f, "features/feature"), feature);
  EXPECT_EQ(read<int64_t>(f, "features/start"), start);
  EXPECT_EQ(read<int64_t>(f, "features/count"), count);
  EXPECT_EQ(read<int32_t>(f, "features/prompts"), n_prompts);
  EXPECT_EQ(read<int64_t>(f, "features/traced"), n_traced);
  expect_same(read<double>(f, "features/distance_mean"), d_mean, "distance_mean");
  expect_same(read<double>(f, "features/distance_median"), d_median, "distance_median");
  expect_same(read<double>(f, "features/final_position_mean"), f_mean, "final_position_mean");
  expect_same(read<double>(f, "features/final_position_median"), f_median, "final_position_median");
  EXPECT_EQ(read<int32_t>(f, "features/top_sources"), top);
  EXPECT_EQ(read<int64_t>(f, "features/top_source_counts"), top_counts);
  expect_same(read<double>(f, "features/head_share_mean"), share, "head_share_mean");
  expect_same(read<double>(f, "features/loo_agree"), loo, "loo_agree");
  expect_same(read<double>(f, "features/shapley_agree"), shapley, "shapley_agree");
  EXPECT_EQ(output::read_strings(f, "features/explanation"), explanation);
  EXPECT_EQ(std::count(explanation.begin(), explanation.end(), "seed 1 f3"), 1);  // the first source's wins
  // Both an even and an odd count occur, so both median rules were compared.
  EXPECT_TRUE(std::any_of(count.begin(), count.end(), [](int64_t c) { return c % 2 == 0; }));
  EXPECT_TRUE(std::any_of(count.begin(), count.end(), [](int64_t c) { return c % 2 == 1 && c > 1; }));

  // /vocab: the source token ids, ascending, with the text of their first place in /tokens.
  std::vector<int32_t> vocab(source_id.begin(), source_id.end());
  std::sort(vocab.begin(), vocab.end());
  vocab.erase(std::unique(vocab.begin(), vocab.end()), vocab.end());
  std::vector<std::string> vocab_text;
  for (int32_t id : vocab) {
    vocab_text.push_back(all_token_text[static_cast<size_t>(std::find(all_tokens.begin(), all_tokens.end(), id) - all_tokens.begin())]);
  }
  EXPECT_EQ(read<int32_t>(f, "vocab/id"), vocab);
  EXPECT_EQ(output::read_strings(f, "vocab/text"), vocab_text);

  // Every batch size writes the same datasets.
  for (size_t i = 1; i < outs.size(); ++i) {
    const auto g = open_index(outs[i]);
    for (const char* name : {"occurrences/prompt", "occurrences/source_id", "occurrences/distance_back",
                             "features/top_sources", "occurrences/order"}) {
      EXPECT_EQ(read<int32_t>(g, name), read<int32_t>(f, name)) << outs[i] << " " << name;
    }
    EXPECT_EQ(read<int8_t>(g, "occurrences/traced"), traced);
    for (const char* name : {"features/distance_median", "features/head_share_mean", "features/loo_agree"}) {
      expect_same(read<double>(g, name), read<double>(f, name), outs[i] + " " + name);
    }
  }
}

TEST(Index, FeatureAccumulatorMediansTiesSharesAndAgreement) {
  output::FeatureAggregates out;
  pipeline::FeatureAccumulator acc(4, 2, 0, 2, 3);
  // Feature 1: distances 5, 1, 3 (odd: median 3), final positions 2, 2, 7, 0 ... source ids 9, 4, 9, 4:
  // a tie between 4 and 9 at 2 each goes to the lower id.
  const float h1[] = {2.0f, 0, 0, 1.0f, -3.0f}, h_zero[] = {0.0f, 0, 0, 5.0f, 5.0f}, h_nan[] = {NAN, 0, 0, 1, 1};
  const int32_t o1[] = {0, 0, 1, -1}, o2[] = {0, 0, 0, 1}, o3[] = {0, 0, -1, -1};
  acc.add(0, 5, 2, 9, true, h1, o1);
  acc.add(3, 1, 2, 4, false, h_zero, o2);
  acc.add(0, 3, 7, 9, true, h_nan, o3);
  acc.add(1, 3, 0, 4, false, h1, o3);
  acc.finish(out);
  // Feature 2: one occurrence with neither a usable jump nor an agreement: NaN shares and agreement.
  acc.add(2, 4, 1, 7, false, h_zero, o3);
  acc.finish(out);
  ASSERT_EQ(out.rows(), 2);
  EXPECT_EQ(out.prompts, (std::vector<int32_t>{3, 1}));
  EXPECT_EQ(out.traced, (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(out.distance_mean[0], 3.0);    // (5 + 1 + 3 + 3) / 4
  EXPECT_EQ(out.distance_median[0], 3.0);  // sorted 1 3 3 5: (3 + 3) / 2
  EXPECT_EQ(out.final_position_mean[0], 2.75);
  EXPECT_EQ(out.final_position_median[0], 2.0);  // sorted 0 2 2 7
  EXPECT_EQ(out.distance_median[1], 4.0);
  EXPECT_EQ(std::vector<int32_t>(out.top_sources.begin(), out.top_sources.begin() + 5),
            (std::vector<int32_t>{4, 9, -1, -1, -1}));
  EXPECT_EQ(std::vector<int64_t>(out.top_source_counts.begin(), out.top_source_counts.begin() + 5),
            (std::vector<int64_t>{2, 2, 0, 0, 0}));
  // Shares from the two rows with jump 2: (1/2 + 1/2) / 2 and (-3/2 - 3/2) / 2.
  EXPECT_EQ(out.head_share_mean[0], 0.5);
  EXPECT_EQ(out.head_share_mean[1], -1.5);
  EXPECT_TRUE(std::isnan(out.head_share_mean[2]) && std::isnan(out.head_share_mean[3]));
  EXPECT_EQ(out.loo_agree[0], 0.5);     // 1 of the rows with 0 or 1 (1, 0)
  EXPECT_EQ(out.shapley_agree[0], 1.0);  // 1 of 1
  EXPECT_TRUE(std::isnan(out.loo_agree[1]) && std::isnan(out.shapley_agree[1]));

  // An even count with different middle values: 1 2 | 4 8 -> 3.
  pipeline::FeatureAccumulator plain(1, 0, -1, -1, -1);
  output::FeatureAggregates p;
  for (int d : {8, 1, 4, 2}) plain.add(0, d, d, d, false, nullptr, nullptr);
  plain.finish(p);
  EXPECT_EQ(p.distance_median[0], 3.0);
  EXPECT_EQ(p.distance_mean[0], 3.75);
  EXPECT_TRUE(p.head_share_mean.empty() && p.loo_agree.empty());
  EXPECT_EQ(p.top_sources, (std::vector<int32_t>{1, 2, 4, 8, -1}));  // all tied at 1: ascending ids
}

TEST(Index, BadInputsAreRefusedWithOneLineNamingTheFileAndField) {
  saetraj::testing::TempDir dir("saetraj-index-bad");
  const auto a = dir.file("a.h5"), b = dir.file("b.h5"), out = dir.file("out.h5");
  make_sweep(a, 1, 3, 40);
  make_sweep(b, 2, 3, 40);
  make_sweep(dir.file("k16.h5"), 3, 3, 40, 16);
  make_sweep(dir.file("model.h5"), 3, 3, 40, 8, "other");
  make_sweep(dir.file("nographs.h5"), 4, 3, 40, 8, "m", false);
  make_sweep(dir.file("running.h5"), 5, 3, 40, 8, "m", true, false);
  saetraj::testing::write_file(dir.file("text.h5"), "not hdf5");

  EXPECT_EQ(index_error({a, dir.file("k16.h5")}, out),
            dir.file("k16.h5") + " differs from " + a + " in k: 16 here, 8 there");
  EXPECT_EQ(index_error({a, dir.file("model.h5")}, out),
            dir.file("model.h5") + " differs from " + a + " in model: other here, m there");
  EXPECT_EQ(index_error({a, dir.file("nographs.h5")}, out),
            dir.file("nographs.h5") + " has no graph group /graphs; run `saetraj graph " + dir.file("nographs.h5") +
                "` first");
  EXPECT_EQ(index_error({dir.file("running.h5")}, out),
            dir.file("running.h5") + " is incomplete (0 of 3 prompts done, complete = 0); finish it with its sweep "
                                     "command and --resume, then index it");
  EXPECT_THAT(index_error({dir.file("text.h5")}, out), HasSubstr(dir.file("text.h5") + " is not an HDF5 file"));
  EXPECT_EQ(index_error({a, b, a}, out), "saetraj index: " + a + " is given twice (also as " + a + ")");
  EXPECT_EQ(index_error({a, b}, b), "saetraj index: --out " + b + " is also one of the inputs");
  EXPECT_EQ(index_error({a}, out, true, 7),
            a + " has no graphs built with T = 7 (/graphs has T = 3); run `saetraj graph " + a + " --top-t 7` first");
  EXPECT_FALSE(fs::exists(out));
  index({a}, out);
  EXPECT_EQ(index_error({a}, out, false),
            "saetraj index: " + out + " already exists; pass --overwrite to replace it, or choose another --out");
  // --top-t naming /graphs's own T reads /graphs.
  index({a, b}, out, 0, true, 3);
  EXPECT_EQ(output::read_attr_string(open_index(out), "graphs_group"), "graphs");
  // A trajectory row that does not fit its prompt names the file, the table and the row.
  {
    auto w = output::SweepReader::open(b, true);
    auto t = w.graphs();
    t.trajectories[5].source_token = 99;
    w.write_graphs("graphs", t);
  }
  EXPECT_THAT(index_error({a, b}, out), HasSubstr(b + ": /graphs/trajectories row 5 has source_token 99 for length"));
  // The index is written as OUT.partial and renamed when complete; a run that fails after creating it
  // (here the rename itself: --out is a folder that is not empty) removes it.
  const auto folder = dir.file("folder.h5");
  fs::create_directories(folder + "/inside");
  EXPECT_THAT(index_error({a}, folder), HasSubstr("saetraj index: cannot rename " + folder + ".partial to " + folder));
  EXPECT_FALSE(fs::exists(folder + ".partial"));
  EXPECT_TRUE(fs::is_directory(folder + "/inside"));
}

TEST(Index, SweepsWithoutTrajectoriesGiveAnIndexWithEveryDatasetEmpty) {
  saetraj::testing::TempDir dir("saetraj-index-empty");
  make_sweep(dir.file("a.h5"), 1, 2, 0);
  make_sweep(dir.file("b.h5"), 2, 3, 0);
  const auto out = dir.file("out.h5");
  const auto r = index({dir.file("a.h5"), dir.file("b.h5")}, out);
  EXPECT_EQ(r.occurrences, 0);
  EXPECT_EQ(r.features, 0);
  EXPECT_EQ(r.prompts, 5);
  const auto f = open_index(out);
  EXPECT_TRUE(read<int32_t>(f, "occurrences/prompt").empty());
  EXPECT_TRUE(read<float>(f, "occurrences/heads").empty());
  EXPECT_TRUE(read<int32_t>(f, "features/top_sources").empty());
  EXPECT_TRUE(read<double>(f, "features/head_share_mean").empty());
  EXPECT_TRUE(read<int32_t>(f, "vocab/id").empty());
  EXPECT_EQ(read<int32_t>(f, "prompts/source"), (std::vector<int32_t>{0, 0, 1, 1, 1}));
  const auto ds = output::h5_dataset(H5Dopen2(f, "features/top_sources", H5P_DEFAULT), "top_sources");
  const auto space = output::h5_space(H5Dget_space(ds), "top_sources");
  hsize_t dims[2] = {9, 9};
  H5Sget_simple_extent_dims(space, dims, nullptr);
  EXPECT_EQ(dims[0], 0u);
  EXPECT_EQ(dims[1], 5u);
}

TEST(Index, HeadAndOrderColumnsOnlyWhenEverySourceHasThem) {
  saetraj::testing::TempDir dir("saetraj-index-extras");
  const auto a = dir.file("a.h5"), plain = dir.file("plain.h5"), other = dir.file("other.h5");
  make_sweep(a, 1, 3, 30);
  make_sweep(plain, 2, 3, 30, 8, "m", true, true, 0);
  make_sweep(other, 3, 3, 30, 8, "m", true, true, 2);
  const auto out = dir.file("out.h5");
  EXPECT_EQ(index({a, plain}, out).occurrences, 60);
  {
    const auto f = open_index(out);
    for (const char* name : {"occurrences/heads", "occurrences/order", "occurrences/order_values",
                             "features/head_share_mean", "features/loo_agree", "features/shapley_agree"}) {
      EXPECT_FALSE(output::link_exists(f, name)) << name;
    }
    EXPECT_TRUE(output::link_exists(f, "features/distance_median"));
  }
  EXPECT_EQ(index_error({a, other}, out),
            other + " differs from " + a + " in the columns of /graphs/trajectory_heads: [jump, bias, unassigned, h0, "
                                           "head 1] here, [jump, bias, unassigned, head 0, head 1] there");
}
