#include "saetraj/pipeline/index_runner.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>

#include "saetraj/core/error.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/pipeline/collective.h"

namespace saetraj::pipeline {

// ---- FeatureAccumulator ----------------------------------------------------------------------------------

FeatureAccumulator::FeatureAccumulator(int64_t n_prompts, int64_t heads, int jump_column, int loo_column,
                                       int shapley_column)
    : heads_(heads),
      jump_column_(jump_column),
      loo_column_(loo_column),
      shapley_column_(shapley_column),
      prompt_epoch_(static_cast<size_t>(n_prompts), -1),
      share_sum_(static_cast<size_t>(heads), 0.0) {}

void FeatureAccumulator::add(int32_t prompt, int32_t distance_back, int32_t final_position, int32_t source_id,
                             bool traced, const float* heads_row, const int32_t* order_row) {
  ++count_;
  if (prompt_epoch_[static_cast<size_t>(prompt)] != epoch_) {
    prompt_epoch_[static_cast<size_t>(prompt)] = epoch_;
    ++prompts_;
  }
  traced_ += traced ? 1 : 0;
  distance_sum_ += distance_back;
  final_sum_ += final_position;
  const auto bump = [](std::vector<int64_t>& h, int32_t v) {
    if (static_cast<size_t>(v) >= h.size()) h.resize(static_cast<size_t>(v) + 1, 0);
    ++h[static_cast<size_t>(v)];
  };
  bump(distance_histogram_, distance_back);
  bump(final_histogram_, final_position);
  ++source_counts_[source_id];
  if (heads_row != nullptr) {
    const double jump = heads_row[jump_column_];
    if (std::isfinite(jump) && jump != 0.0) {
      for (int64_t h = 0; h < heads_; ++h) share_sum_[static_cast<size_t>(h)] += double(heads_row[3 + h]) / jump;
      ++share_count_;
    }
  }
  if (order_row != nullptr) {
    const int32_t loo = order_row[loo_column_], shapley = order_row[shapley_column_];
    if (loo == 0 || loo == 1) {
      ++loo_known_;
      loo_yes_ += loo;
    }
    if (shapley == 0 || shapley == 1) {
      ++shapley_known_;
      shapley_yes_ += shapley;
    }
  }
}

double FeatureAccumulator::median(const std::vector<int64_t>& histogram, int64_t n) {
  // The values at 0-based positions (n - 1) / 2 and n / 2 of the sorted values; their mean.
  const int64_t lo = (n - 1) / 2, hi = n / 2;
  int64_t seen = 0;
  double a = 0, b = 0;
  bool have_a = false;
  for (size_t v = 0; v < histogram.size(); ++v) {
    seen += histogram[v];
    if (!have_a && seen > lo) {
      a = static_cast<double>(v);
      have_a = true;
    }
    if (seen > hi) {
      b = static_cast<double>(v);
      break;
    }
  }
  return (a + b) / 2.0;
}

void FeatureAccumulator::finish(output::FeatureAggregates& out) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double n = static_cast<double>(count_);
  out.prompts.push_back(static_cast<int32_t>(prompts_));
  out.traced.push_back(traced_);
  out.distance_mean.push_back(count_ > 0 ? distance_sum_ / n : nan);
  out.distance_median.push_back(count_ > 0 ? median(distance_histogram_, count_) : nan);
  out.final_position_mean.push_back(count_ > 0 ? final_sum_ / n : nan);
  out.final_position_median.push_back(count_ > 0 ? median(final_histogram_, count_) : nan);
  std::vector<std::pair<int32_t, int64_t>> sources(source_counts_.begin(), source_counts_.end());
  const size_t top = std::min<size_t>(sources.size(), output::kIndexTopSources);
  std::partial_sort(sources.begin(), sources.begin() + static_cast<std::ptrdiff_t>(top), sources.end(),
                    [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  for (size_t i = 0; i < static_cast<size_t>(output::kIndexTopSources); ++i) {
    out.top_sources.push_back(i < top ? sources[i].first : -1);
    out.top_source_counts.push_back(i < top ? sources[i].second : 0);
  }
  if (heads_ > 0 || jump_column_ >= 0) {
    for (int64_t h = 0; h < heads_; ++h) {
      out.head_share_mean.push_back(share_count_ > 0 ? share_sum_[static_cast<size_t>(h)] / double(share_count_) : nan);
    }
  }
  if (loo_column_ >= 0) {
    out.loo_agree.push_back(loo_known_ > 0 ? double(loo_yes_) / double(loo_known_) : nan);
    out.shapley_agree.push_back(shapley_known_ > 0 ? double(shapley_yes_) / double(shapley_known_) : nan);
  }
  // The next feature.
  ++epoch_;
  count_ = prompts_ = traced_ = 0;
  distance_sum_ = final_sum_ = 0;
  std::fill(distance_histogram_.begin(), distance_histogram_.end(), 0);
  std::fill(final_histogram_.begin(), final_histogram_.end(), 0);
  source_counts_.clear();
  std::fill(share_sum_.begin(), share_sum_.end(), 0.0);
  share_count_ = loo_yes_ = loo_known_ = shapley_yes_ = shapley_known_ = 0;
}

// ---- build_index -------------------------------------------------------------------------------------------

namespace {

struct Source {
  output::SweepReader file;
  output::SweepReader::GraphShape shape;
  std::string group;        // the graph group read ("graphs" or "graphs_T<T>")
  int64_t prompt_base = 0;  // first row of /prompts of the index
  int64_t row_base = 0;     // first input row (sources' trajectory tables concatenated)
  // (prompt of the index, to_layer, to_token, from_token) of each traced edge with trajectories, sorted.
  std::vector<std::array<int32_t, 4>> traced;
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return "[" + s + "]";
}

std::string joined(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return "[" + s + "]";
}

int column_of(const std::vector<std::string>& names, const std::string& name, const std::string& path,
              const std::string& dataset) {
  const auto it = std::find(names.begin(), names.end(), name);
  SAETRAJ_CHECK(it != names.end(), FormatError, path, ": /", dataset, " has no column '", name, "' (its columns: ",
                joined(names), ")");
  return static_cast<int>(it - names.begin());
}

// Progress lines on stderr from rank 0, at most every 2 s, for the phases of a long run.
class PhaseProgress {
 public:
  // `whole`: the phase counts rows of the whole table, else of this rank's share.
  PhaseProgress(bool on, std::string phase, int64_t total, bool whole = false)
      : on_(on), whole_(whole), phase_(std::move(phase)), total_(total) {
    start_ = last_ = std::chrono::steady_clock::now();
  }
  void update(int64_t done) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    std::cerr << "saetraj index: " << phase_ << " " << done << " of " << total_ << " rows"
              << (whole_ ? " (all ranks), " : " (this rank), ")
              << std::fixed << std::setprecision(0) << (s > 0 ? done / s : 0) << " rows/s\n";
    printed_ = true;
  }
  void finish() {
    if (!on_ || !printed_) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::cerr << "saetraj index: " << phase_ << " done: " << total_ << " rows in " << std::fixed
              << std::setprecision(1) << s << " s\n";
  }

 private:
  bool on_, whole_, printed_ = false;
  std::string phase_;
  int64_t total_;
  std::chrono::steady_clock::time_point start_, last_;
};

// One batch of input rows from one source.
struct Batch {
  size_t source = 0;
  int64_t begin = 0;  // row of the source's table
  int64_t rows = 0;
};

// The batches of global input rows [begin, end): at most `size` rows each, never across two sources.
std::vector<Batch> batches_of(const std::vector<Source>& sources, int64_t begin, int64_t end, int64_t size) {
  std::vector<Batch> out;
  for (size_t s = 0; s < sources.size(); ++s) {
    const int64_t lo = std::max(begin, sources[s].row_base);
    const int64_t hi = std::min(end, sources[s].row_base + sources[s].shape.trajectories);
    for (int64_t a = lo; a < hi; a += size) out.push_back({s, a - sources[s].row_base, std::min(size, hi - a)});
  }
  return out;
}

}  // namespace

// [NOTE] Placing the rows. Pass 1 counts the rows of each (layer, feature) on each rank (ranks split the
// input rows into contiguous shares); an allreduce gives each feature's first row in /occurrences, and an
// exclusive scan of the per-rank counts (along a chain of ranks) where each rank's first row of the
// feature goes. A row's place is then fixed by the input order alone, whatever the rank count: the k-th row
// of a feature in rank r's share goes to start + (rows of it on ranks before r) + k. Writing each row to
// its place directly would scatter the writes over the whole table (one run per feature and batch, and
// HDF5 1.10 builds a union of n hyperslabs in O(n^2)), so pass 2 goes in rounds: in each round every rank
// owns one window of consecutive rows of /occurrences (bounded by --memory-mb), every rank scans its input
// share in batches and sends each row that falls in this round to the rank whose window holds it, and each
// rank writes its window as one contiguous block, all in one collective write. A round re-reads the input
// share (only the trajectory table; head and order columns only for batches with rows in the round), so
// the input is read ceil(N / (R x window)) times. Pass 3 reads /occurrences back in batches and streams
// each feature through a FeatureAccumulator; rank r takes the features that start in its share of rows.
IndexResult build_index(const IndexOptions& o, const dist::Communicator& comm) {
  namespace fs = std::filesystem;
  SAETRAJ_CHECK(!o.sweeps.empty(), InputError, "saetraj index: give the sweep files to index");
  SAETRAJ_CHECK(!o.out.empty(), InputError, "saetraj index: --out is required");
  SAETRAJ_CHECK(o.memory_mb >= 1, InputError, "saetraj index: --memory-mb must be at least 1, not ", o.memory_mb);
  SAETRAJ_CHECK(o.top_t >= 0, InputError, "saetraj index: --top-t must be positive, not ", o.top_t);
  const auto same_file = [](const std::string& a, const std::string& b) {
    std::error_code ec;
    if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
    return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
  };

  // Every rank reads the same files and so raises the same error: rank 0 speaks for all.
  std::vector<Source> sources;
  std::string group = "graphs";  // the first source's group (the index's graphs_group)
  try {
    for (size_t i = 0; i < o.sweeps.size(); ++i) {
      const auto& path = o.sweeps[i];
      SAETRAJ_CHECK(!same_file(path, o.out), InputError, "saetraj index: --out ", o.out, " is also one of the inputs");
      for (size_t j = 0; j < i; ++j) {
        SAETRAJ_CHECK(!same_file(path, o.sweeps[j]), InputError, "saetraj index: ", path, " is given twice (also as ",
                      o.sweeps[j], ")");
      }
    }
    SAETRAJ_CHECK(o.overwrite || !fs::exists(o.out), InputError, "saetraj index: ", o.out,
                  " already exists; pass --overwrite to replace it, or choose another --out");
    int64_t prompt_base = 0, row_base = 0;
    for (const auto& path : o.sweeps) {
      Source s{output::SweepReader::open(path), {}, "graphs", prompt_base, row_base, {}};
      const auto& a = s.file.attributes();
      int64_t done = 0;
      for (uint8_t d : s.file.prompts().done) done += d != 0;
      SAETRAJ_CHECK(a.complete && done == s.file.n_prompts(), InputError, path, " is incomplete (", done, " of ",
                    s.file.n_prompts(), " prompts done", a.complete ? "" : ", complete = 0",
                    "); finish it with its sweep command and --resume, then index it");
      SAETRAJ_CHECK(s.file.has_graphs(), InputError, path, " has no graph group /graphs; run `saetraj graph ", path,
                    "` first");
      // --top-t T: the group built with T, /graphs first (`saetraj graph --top-t T` rebuilds /graphs when
      // its T is /graphs's own), else /graphs_T<T>.
      std::string g = "graphs";
      if (o.top_t > 0 && s.file.graph_top_t("graphs") != o.top_t) {
        g = "graphs_T" + std::to_string(o.top_t);
        const auto groups = s.file.graph_groups();
        SAETRAJ_CHECK(std::find(groups.begin(), groups.end(), g) != groups.end(), InputError, path,
                      " has no graphs built with T = ", o.top_t, " (/graphs has T = ", s.file.graph_top_t("graphs"),
                      "); run `saetraj graph ", path, " --top-t ", o.top_t, "` first");
      }
      s.group = g;
      if (sources.empty()) group = g;
      s.shape = s.file.graph_shape(g);
      if (!sources.empty()) {
        const auto& f = sources.front();
        const auto& b = f.file.attributes();
        const auto differs = [&](const std::string& field, const std::string& there, const std::string& here) {
          SAETRAJ_CHECK(there == here, InputError, path, " differs from ", f.file.path(), " in ", field, ": ",
                        here, " here, ", there, " there");
        };
        differs("model", b.model, a.model);
        differs("architecture", b.architecture, a.architecture);
        differs("layers", joined(b.layers), joined(a.layers));
        differs("k", std::to_string(b.k), std::to_string(a.k));
        differs("sae_ids", joined(b.sae_ids), joined(a.sae_ids));
        differs("the graphs' top_t (/" + group + " there, /" + g + " here)", std::to_string(f.shape.top_t),
                std::to_string(s.shape.top_t));
      }
      prompt_base += s.file.n_prompts();
      row_base += s.shape.trajectories;
      sources.push_back(std::move(s));
    }
  } catch (Error& e) {
    e.set_collective();
    throw;
  }
  const Source& first = sources.front();
  const auto& attrs = first.file.attributes();
  const int64_t L = static_cast<int64_t>(attrs.layers.size());
  const int64_t P = sources.back().prompt_base + sources.back().file.n_prompts();
  const int64_t N = sources.back().row_base + sources.back().shape.trajectories;
  // Heads and order columns only when every source has them, with the same columns.
  bool heads = true, order = true;
  for (const auto& s : sources) {
    heads = heads && s.shape.head_columns > 0;
    order = order && s.shape.has_order && s.shape.order_value_columns > 0;
  }
  try {
    for (const auto& s : sources) {
      if (heads) {
        SAETRAJ_CHECK(s.shape.head_column_names == first.shape.head_column_names, InputError, s.file.path(),
                      " differs from ", first.file.path(), " in the columns of /", group, "/trajectory_heads: ",
                      joined(s.shape.head_column_names), " here, ", joined(first.shape.head_column_names), " there");
      }
      if (order) {
        SAETRAJ_CHECK(s.shape.order_column_names == first.shape.order_column_names &&
                          s.shape.order_value_column_names == first.shape.order_value_column_names,
                      InputError, s.file.path(), " differs from ", first.file.path(), " in the columns of /", s.group,
                      "/trajectory_order(_values)");
      }
    }
  } catch (Error& e) {
    e.set_collective();
    throw;
  }
  const std::vector<std::string> head_names = heads ? first.shape.head_column_names : std::vector<std::string>();
  const int64_t head_columns = static_cast<int64_t>(head_names.size());
  const int64_t order_value_columns = order ? first.shape.order_value_columns : 0;
  int jump_column = -1, loo_column = -1, shapley_column = -1;
  try {
    if (heads) {
      jump_column = column_of(head_names, "jump", first.file.path(), group + "/trajectory_heads");
      SAETRAJ_CHECK(head_columns >= 3, FormatError, first.file.path(), ": /", group, "/trajectory_heads has ",
                    head_columns, " columns; expected jump, bias, unassigned and one per head");
    }
    if (order) {
      loo_column = column_of(first.shape.order_column_names, "loo_agrees", first.file.path(), group + "/trajectory_order");
      shapley_column =
          column_of(first.shape.order_column_names, "shapley_agrees", first.file.path(), group + "/trajectory_order");
    }
  } catch (Error& e) {
    e.set_collective();
    throw;
  }

  // /prompts and /tokens of the index, on every rank (the rows need each prompt's tokens).
  std::vector<int64_t> token_offset(static_cast<size_t>(P));
  std::vector<int32_t> n_tokens(static_cast<size_t>(P));
  std::vector<int32_t> token_ids;
  int64_t tokens = 0;
  for (const auto& s : sources) {
    const auto& p = s.file.prompts();
    for (int64_t i = 0; i < s.file.n_prompts(); ++i) {
      token_offset[static_cast<size_t>(s.prompt_base + i)] = tokens + p.token_offset[static_cast<size_t>(i)];
      n_tokens[static_cast<size_t>(s.prompt_base + i)] = p.n_tokens[static_cast<size_t>(i)];
    }
    tokens += static_cast<int64_t>(p.token_ids.size());
    token_ids.insert(token_ids.end(), p.token_ids.begin(), p.token_ids.end());
  }
  int32_t max_token = -1;
  for (int32_t id : token_ids) max_token = std::max(max_token, id);

  // Traced edges with trajectories, by (prompt of the index, to_layer, to_token, from_token).
  for (auto& s : sources) {
    for (const auto& e : s.file.traced_edges(s.group)) {
      if (e.num_trajectories <= 0) continue;
      s.traced.push_back({static_cast<int32_t>(s.prompt_base + e.prompt), e.to_layer, e.to_token, e.from_token});
    }
    std::sort(s.traced.begin(), s.traced.end());
  }

  std::map<int32_t, int64_t> layer_axis;
  for (int64_t i = 0; i < L; ++i) layer_axis[attrs.layers[static_cast<size_t>(i)]] = i;

  // Half of --memory-mb for a batch of input rows (the rows, their head and order columns, their routed
  // copies), half for this rank's window of /occurrences (NOTE Placing the rows).
  const int64_t width = head_columns + 4 + order_value_columns;
  const int64_t batch_bytes = 24 + 8 + 2 * (4 * width + 36);
  const int64_t window_bytes = 25 + 4 * width;
  const int64_t half = o.memory_mb * (int64_t(1) << 20) / 2;
  const int64_t batch = o.batch_rows > 0 ? o.batch_rows : std::max<int64_t>(1024, half / batch_bytes);
  const int64_t window = o.batch_rows > 0 ? o.batch_rows : std::max<int64_t>(1024, half / window_bytes);
  const int R = comm.size(), me = comm.rank();
  const int64_t my_begin = N * me / R, my_end = N * (me + 1) / R;
  const auto my_batches = batches_of(sources, my_begin, my_end, batch);
  const bool progress = o.progress && me == 0;

  // A checked row: its layer axis, and its source token's id.
  const auto check_row = [&](const Source& s, const output::TrajectoryRecord& t, int64_t row) -> std::pair<int64_t, int32_t> {
    const auto bad = [&](const std::string& why) {
      return str(s.file.path(), ": /", s.group, "/trajectories row ", row, " ", why);
    };
    const auto it = layer_axis.find(t.layer);
    if (it == layer_axis.end()) throw FormatError(bad(str("has layer ", t.layer, ", not one of the file's layers")));
    if (t.prompt < 0 || t.prompt >= s.file.n_prompts()) throw FormatError(bad(str("has prompt ", t.prompt, " of ", s.file.n_prompts())));
    const int64_t gp = s.prompt_base + t.prompt;
    const int32_t n = n_tokens[static_cast<size_t>(gp)];
    if (t.length < 2 || t.length > n) throw FormatError(bad(str("has length ", t.length, " for a prompt of ", n, " tokens")));
    if (t.source_token < 0 || t.source_token >= t.length) {
      throw FormatError(bad(str("has source_token ", t.source_token, " for length ", t.length)));
    }
    if (t.feature < 0) throw FormatError(bad(str("has feature ", t.feature)));
    if (t.final_position < 0 || t.final_position >= attrs.k) {
      throw FormatError(bad(str("has final_position ", t.final_position, " for k = ", attrs.k)));
    }
    return {it->second, token_ids[static_cast<size_t>(token_offset[static_cast<size_t>(gp)] + t.source_token)]};
  };

  // ---- Pass 1: counts per (layer, feature) and the source tokens that occur. ----
  std::vector<std::vector<int64_t>> counts(static_cast<size_t>(L));
  std::vector<int64_t> vocab_seen(static_cast<size_t>(max_token + 1), 0);
  {
    PhaseProgress pp(progress && N > 1000000, "counting", my_end - my_begin);
    int64_t done = 0;
    for (const auto& b : my_batches) {
      const auto& s = sources[b.source];
      const auto rows = s.file.trajectory_rows(s.group, b.begin, b.rows);
      for (size_t r = 0; r < rows.size(); ++r) {
        const auto [axis, source_id] = check_row(s, rows[r], b.begin + static_cast<int64_t>(r));
        auto& c = counts[static_cast<size_t>(axis)];
        if (static_cast<size_t>(rows[r].feature) >= c.size()) c.resize(static_cast<size_t>(rows[r].feature) + 1, 0);
        ++c[static_cast<size_t>(rows[r].feature)];
        vocab_seen[static_cast<size_t>(source_id)] = 1;
      }
      done += b.rows;
      pp.update(done);
    }
    pp.finish();
  }
  // The same extent on every rank, then one flat array: key = layer_offset[axis] + feature.
  std::vector<int64_t> extent(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) extent[static_cast<size_t>(i)] = static_cast<int64_t>(counts[static_cast<size_t>(i)].size());
  comm.allreduce_max(extent.data(), extent.size());
  std::vector<int64_t> layer_offset(static_cast<size_t>(L) + 1, 0);
  for (int64_t i = 0; i < L; ++i) layer_offset[static_cast<size_t>(i) + 1] = layer_offset[static_cast<size_t>(i)] + extent[static_cast<size_t>(i)];
  const size_t keys = static_cast<size_t>(layer_offset.back());
  std::vector<int64_t> mine(keys, 0);
  for (int64_t i = 0; i < L; ++i) {
    std::copy(counts[static_cast<size_t>(i)].begin(), counts[static_cast<size_t>(i)].end(),
              mine.begin() + layer_offset[static_cast<size_t>(i)]);
  }
  counts.clear();
  counts.shrink_to_fit();
  // Exclusive scan over ranks, along a chain: what the ranks before this one hold of each key.
  std::vector<int64_t> before(keys, 0);
  if (R > 1) {
    if (me > 0) comm.recv(before.data(), keys * sizeof(int64_t), me - 1, 71);
    if (me + 1 < R) {
      std::vector<int64_t> next(before);
      for (size_t k = 0; k < keys; ++k) next[k] += mine[k];
      comm.send(next.data(), keys * sizeof(int64_t), me + 1, 71);
    }
  }
  std::vector<int64_t> total(mine);
  comm.allreduce_sum(total.data(), total.size());
  comm.allreduce_max(vocab_seen.data(), vocab_seen.size());

  // The features in (model layer, feature) order, and each key's first row in /occurrences.
  std::vector<int64_t> axes(static_cast<size_t>(L));
  std::iota(axes.begin(), axes.end(), 0);
  std::sort(axes.begin(), axes.end(), [&](int64_t a, int64_t b) {
    return attrs.layers[static_cast<size_t>(a)] < attrs.layers[static_cast<size_t>(b)];
  });
  std::vector<int32_t> feature_layer, feature_index;
  std::vector<int64_t> feature_start, feature_count;
  std::vector<int64_t> first_row(keys, 0);  // where this rank's first row of each key goes
  int64_t row = 0;
  for (int64_t axis : axes) {
    for (int64_t f = 0; f < extent[static_cast<size_t>(axis)]; ++f) {
      const size_t key = static_cast<size_t>(layer_offset[static_cast<size_t>(axis)] + f);
      if (total[key] == 0) continue;
      feature_layer.push_back(attrs.layers[static_cast<size_t>(axis)]);
      feature_index.push_back(static_cast<int32_t>(f));
      feature_start.push_back(row);
      feature_count.push_back(total[key]);
      first_row[key] = row + before[key];
      row += total[key];
    }
  }
  before.clear();
  before.shrink_to_fit();
  total.clear();
  total.shrink_to_fit();
  mine.clear();
  mine.shrink_to_fit();
  const int64_t F = static_cast<int64_t>(feature_layer.size());

  // ---- The file: everything known now, written by rank 0. It is written as OUT.partial and renamed to
  // OUT once complete, so that a failed or interrupted run never leaves a partial OUT behind (a serial run
  // removes OUT.partial when it fails; under MPI the abort leaves it). ----
  const std::string partial = o.out + ".partial";
  struct RemovePartial {
    const std::string& path;
    bool armed;
    ~RemovePartial() {
      std::error_code ec;
      if (armed && std::uncaught_exceptions() > 0) fs::remove(path, ec);
    }
  } remove_partial{partial, me == 0};
  run_on_root(comm, [&] {
    output::IndexHeader h;
    h.model = attrs.model;
    h.architecture = attrs.architecture;
    h.layers = attrs.layers;
    h.k = attrs.k;
    h.sae_ids = attrs.sae_ids;
    h.top_t = first.shape.top_t;
    h.graphs_group = group;
    h.sources = o.sweeps;
    h.created_utc = output::utc_now_iso8601();
    h.command_line = o.command_line;
    for (size_t si = 0; si < sources.size(); ++si) {
      const auto& p = sources[si].file.prompts();
      for (int64_t i = 0; i < sources[si].file.n_prompts(); ++i) {
        h.prompt_source.push_back(static_cast<int32_t>(si));
        h.prompt_index.push_back(static_cast<int32_t>(i));
        h.prompt_id.push_back(p.id[static_cast<size_t>(i)]);
        h.prompt_text.push_back(p.text[static_cast<size_t>(i)]);
      }
      h.token_text.insert(h.token_text.end(), p.token_text.begin(), p.token_text.end());
    }
    h.prompt_n_tokens = n_tokens;
    h.prompt_token_offset = token_offset;
    h.token_ids = token_ids;
    std::vector<int64_t> first_at(vocab_seen.size(), -1);
    for (size_t t = 0; t < token_ids.size(); ++t) {
      const auto id = static_cast<size_t>(token_ids[t]);
      if (vocab_seen[id] && first_at[id] < 0) first_at[id] = static_cast<int64_t>(t);
    }
    for (size_t id = 0; id < vocab_seen.size(); ++id) {
      if (!vocab_seen[id]) continue;
      h.vocab_id.push_back(static_cast<int32_t>(id));
      h.vocab_text.push_back(h.token_text[static_cast<size_t>(first_at[id])]);
    }
    // Each (layer, feature)'s explanation from the first source with a row for it.
    std::map<std::pair<int32_t, int32_t>, std::string> explanation;
    for (const auto& s : sources) {
      if (!s.file.has_explanations()) continue;
      std::map<std::pair<int32_t, int32_t>, std::string> here;
      for (const auto& e : s.file.explanations()) here.emplace(std::make_pair(e.layer, e.feature), e.text);
      for (auto& [key, text] : here) explanation.emplace(key, std::move(text));
    }
    h.feature_layer = feature_layer;
    h.feature_index = feature_index;
    h.feature_start = feature_start;
    h.feature_count = feature_count;
    for (int64_t i = 0; i < F; ++i) {
      const auto it = explanation.find({feature_layer[static_cast<size_t>(i)], feature_index[static_cast<size_t>(i)]});
      h.feature_explanation.push_back(it == explanation.end() ? std::string() : it->second);
    }
    h.occurrences = N;
    h.head_column_names = head_names;
    if (order) {
      h.order_column_names = first.shape.order_column_names;
      h.order_value_column_names = first.shape.order_value_column_names;
    }
    output::create_index_file(partial, h, true);
  });

  // ---- Pass 2: every row to its place (NOTE Placing the rows). ----
  {
    // A routed row: its place in /occurrences, then the int32 columns, then heads, order, order values.
    const int64_t ints = 6;  // prompt, length, source_token, final_position, source_id, traced
    const int64_t stride = 8 + 4 * (ints + head_columns + (order ? 4 + order_value_columns : 0));
    const int64_t round_rows = window * R;
    const int64_t rounds = (N + round_rows - 1) / round_rows;
    output::ParallelIndexFile file(partial, comm);
    int64_t scans = static_cast<int64_t>(my_batches.size());
    comm.allreduce_max(&scans, 1);
    PhaseProgress pp(progress && N > 1000000, "placing", N, true);
    output::OccurrenceColumns c;  // this rank's window
    std::vector<std::vector<char>> routed(static_cast<size_t>(R));
    std::vector<char> received;
    for (int64_t round = 0; round < rounds; ++round) {
      const int64_t round_begin = round * round_rows;
      const int64_t win_begin = std::min(N, round_begin + window * me);
      const int64_t win_rows = std::min(N, win_begin + window) - win_begin;
      const auto size_window = [&](auto& v, int64_t width) { v.assign(static_cast<size_t>(win_rows * width), {}); };
      size_window(c.prompt, 1);
      size_window(c.length, 1);
      size_window(c.source_token, 1);
      size_window(c.distance_back, 1);
      size_window(c.final_position, 1);
      size_window(c.source_id, 1);
      size_window(c.traced, 1);
      if (heads) size_window(c.heads, head_columns);
      if (order) {
        size_window(c.order, 4);
        size_window(c.order_values, order_value_columns);
      }
      // Places one routed row into this rank's window.
      const auto place = [&](const char* p) {
        int64_t at = 0;
        std::memcpy(&at, p, 8);
        const size_t w = static_cast<size_t>(at - win_begin);
        int32_t v[6];
        std::memcpy(v, p + 8, sizeof v);
        c.prompt[w] = v[0];
        c.length[w] = v[1];
        c.source_token[w] = v[2];
        c.distance_back[w] = v[1] - 1 - v[2];
        c.final_position[w] = v[3];
        c.source_id[w] = v[4];
        c.traced[w] = static_cast<int8_t>(v[5]);
        const char* q = p + 8 + 4 * ints;
        if (heads) {
          std::memcpy(c.heads.data() + w * static_cast<size_t>(head_columns), q, static_cast<size_t>(4 * head_columns));
          q += 4 * head_columns;
        }
        if (order) {
          std::memcpy(c.order.data() + w * 4, q, 16);
          std::memcpy(c.order_values.data() + w * static_cast<size_t>(order_value_columns), q + 16,
                      static_cast<size_t>(4 * order_value_columns));
        }
      };
      // Every rank scans its share of the input; the rows that belong to this round go to the rank whose
      // window holds them.
      std::vector<int64_t> next(first_row);
      for (int64_t scan = 0; scan < scans; ++scan) {
        for (auto& r : routed) r.clear();
        if (scan < static_cast<int64_t>(my_batches.size())) {
          const auto& b = my_batches[static_cast<size_t>(scan)];
          const auto& s = sources[b.source];
          const auto rows = s.file.trajectory_rows(s.group, b.begin, b.rows);
          std::vector<int64_t> dest(rows.size());
          bool any = false;
          for (size_t r = 0; r < rows.size(); ++r) {
            const auto& t = rows[r];
            const int64_t axis = layer_axis.at(t.layer);
            dest[r] = next[static_cast<size_t>(layer_offset[static_cast<size_t>(axis)] + t.feature)]++;
            any = any || (dest[r] >= round_begin && dest[r] < round_begin + round_rows);
          }
          if (any) {
            std::vector<float> head_rows, order_values;
            std::vector<int32_t> order_rows;
            if (heads) head_rows = s.file.trajectory_heads_rows(s.group, b.begin, b.rows);
            if (order) {
              order_rows = s.file.trajectory_order_rows(s.group, b.begin, b.rows);
              order_values = s.file.trajectory_order_values_rows(s.group, b.begin, b.rows);
            }
            for (size_t r = 0; r < rows.size(); ++r) {
              if (dest[r] < round_begin || dest[r] >= round_begin + round_rows) continue;
              const auto& t = rows[r];
              const auto [axis, id] = check_row(s, t, b.begin + static_cast<int64_t>(r));
              (void)axis;
              const int32_t prompt = static_cast<int32_t>(s.prompt_base + t.prompt);
              const std::array<int32_t, 4> key = {prompt, t.layer, t.length - 1, t.source_token};
              const int32_t v[6] = {prompt, t.length, t.source_token, t.final_position, id,
                                    std::binary_search(s.traced.begin(), s.traced.end(), key) ? 1 : 0};
              auto& out = routed[static_cast<size_t>((dest[r] - round_begin) / window)];
              const size_t at = out.size();
              out.resize(at + static_cast<size_t>(stride));
              char* p = out.data() + at;
              std::memcpy(p, &dest[r], 8);
              std::memcpy(p + 8, v, sizeof v);
              p += 8 + 4 * ints;
              if (heads) {
                std::memcpy(p, head_rows.data() + r * static_cast<size_t>(head_columns), static_cast<size_t>(4 * head_columns));
                p += 4 * head_columns;
              }
              if (order) {
                std::memcpy(p, order_rows.data() + r * 4, 16);
                std::memcpy(p + 16, order_values.data() + r * static_cast<size_t>(order_value_columns),
                            static_cast<size_t>(4 * order_value_columns));
              }
            }
          }
        }
        // The exchange, one receiving rank after the other (no cycle of blocked sends can form).
        for (int w = 0; w < R; ++w) {
          if (w == me) {
            for (size_t i = 0; i < routed[static_cast<size_t>(me)].size(); i += static_cast<size_t>(stride)) {
              place(routed[static_cast<size_t>(me)].data() + i);
            }
            for (int from = 0; from < R; ++from) {
              if (from == me) continue;
              int64_t bytes = 0;
              comm.recv(&bytes, sizeof bytes, from, 72);
              received.resize(static_cast<size_t>(bytes));
              if (bytes > 0) comm.recv(received.data(), static_cast<size_t>(bytes), from, 73);
              for (int64_t i = 0; i < bytes; i += stride) place(received.data() + i);
            }
          } else {
            const auto& out = routed[static_cast<size_t>(w)];
            const int64_t bytes = static_cast<int64_t>(out.size());
            comm.send(&bytes, sizeof bytes, w, 72);
            if (bytes > 0) comm.send(out.data(), static_cast<size_t>(bytes), w, 73);
          }
        }
      }
      file.write_occurrences({{win_begin, win_rows}}, c);
      pp.update(std::min(N, round_begin + round_rows));
    }
    pp.finish();
    file.close();
  }

  // ---- Pass 3: the aggregates, each rank for the features that start in its share of the rows. ----
  {
    output::ParallelIndexFile file(partial, comm);
    int64_t f_begin = std::lower_bound(feature_start.begin(), feature_start.end(), my_begin) - feature_start.begin();
    int64_t f_end = std::lower_bound(feature_start.begin(), feature_start.end(), my_end) - feature_start.begin();
    if (me + 1 == R) f_end = F;
    const int64_t heads_n = heads ? head_columns - 3 : 0;
    FeatureAccumulator acc(P, heads_n, heads ? jump_column : -1, loo_column, shapley_column);
    output::FeatureAggregates out;
    const int64_t row_begin = f_begin < F ? feature_start[static_cast<size_t>(f_begin)] : N;
    const int64_t row_end = f_end < F ? feature_start[static_cast<size_t>(f_end)] : N;
    PhaseProgress pp(progress && N > 1000000, "aggregating", row_end - row_begin);
    int64_t f = f_begin;
    for (int64_t a = row_begin; a < row_end; a += batch) {
      const int64_t rows = std::min(batch, row_end - a);
      const auto c = file.read_occurrences(a, rows);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t at = a + r;
        while (at >= feature_start[static_cast<size_t>(f)] + feature_count[static_cast<size_t>(f)]) {
          acc.finish(out);
          ++f;
        }
        acc.add(c.prompt[static_cast<size_t>(r)], c.distance_back[static_cast<size_t>(r)],
                c.final_position[static_cast<size_t>(r)], c.source_id[static_cast<size_t>(r)],
                c.traced[static_cast<size_t>(r)] != 0,
                heads ? c.heads.data() + static_cast<size_t>(r * head_columns) : nullptr,
                order ? c.order.data() + static_cast<size_t>(r * 4) : nullptr);
      }
      pp.update(a + rows - row_begin);
    }
    for (; f < f_end; ++f) acc.finish(out);
    pp.finish();
    file.write_features(f_begin, out);
    file.close();
  }
  comm.barrier();
  run_on_root(comm, [&] {
    std::error_code ec;
    fs::rename(partial, o.out, ec);
    SAETRAJ_CHECK(!ec, IoError, "saetraj index: cannot rename ", partial, " to ", o.out, ": ", ec.message());
  });
  IndexResult result;
  result.sources = static_cast<int64_t>(sources.size());
  result.prompts = P;
  result.occurrences = N;
  result.features = F;
  result.batch_rows = batch;
  return result;
}

}  // namespace saetraj::pipeline
