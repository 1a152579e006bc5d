#include "saetraj/graph/trajectory_table.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <tuple>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::graph {

namespace {

const std::vector<std::string> kColumns = {"prompt",  "length",         "layer",  "source_token", "distance_back",
                                           "feature", "final_position", "traced", "source_text",  "query_text"};

// Shortest text that reads back as the same float32 value (integers stay integers).
std::string number_cell(double v) {
  if (std::isnan(v)) return "";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

std::string csv_text(const std::string& text) {
  std::string out = "\"";
  for (char c : sanitize_utf8(text)) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string trajectory_table_header(const std::vector<std::string>& extra_columns) {
  std::set<std::string> names(kColumns.begin(), kColumns.end());
  std::string line = join(kColumns, ",");
  for (const auto& c : extra_columns) {
    SAETRAJ_CHECK(!c.empty(), InputError, "trajectory table: an extra column has an empty name");
    SAETRAJ_CHECK(names.insert(c).second, InputError, "trajectory table: column \"", c, "\" appears twice");
    line += "," + c;
  }
  return line + "\n";
}

std::string trajectory_table_rows(const TrajectoryTablePrompt& prompt, size_t extra_columns) {
  SAETRAJ_CHECK(prompt.extras.size() == prompt.rows.size() * extra_columns, InputError, "trajectory table, prompt ",
                prompt.prompt, ": ", prompt.extras.size(), " extra values for ", prompt.rows.size(), " rows of ",
                extra_columns, " extra columns");
  // (to_layer, to_token, from_token, feature) of every trajectory the traced graph carries.
  std::set<std::tuple<int, int, int, int>> traced;
  for (const auto& e : prompt.traced) {
    for (const auto& tr : e.trajectories) traced.insert({e.to_layer, e.to_token, e.from_token, tr.second});
  }
  const int n = static_cast<int>(prompt.tokens.size());
  std::string out;
  for (size_t r = 0; r < prompt.rows.size(); ++r) {
    const auto& row = prompt.rows[r];
    const auto& t = row.trajectory;
    SAETRAJ_CHECK(row.length >= 2 && row.length <= n && t.source_token >= 0 && t.source_token < row.length,
                  InputError, "trajectory table, prompt ", prompt.prompt, ": a trajectory of length ", row.length,
                  " from token ", t.source_token, " does not fit the prompt's ", n, " tokens");
    const int query = row.length - 1;
    const bool in_trace = traced.count({row.layer, query, t.source_token, t.feature}) > 0;
    out += str(prompt.prompt, ',', row.length, ',', row.layer, ',', t.source_token, ',', query - t.source_token, ',',
               t.feature, ',', t.final_position, ',', in_trace ? 1 : 0, ',', csv_text(prompt.tokens[t.source_token]),
               ',', csv_text(prompt.tokens[query]));
    for (size_t c = 0; c < extra_columns; ++c) out += "," + number_cell(prompt.extras[r * extra_columns + c]);
    out += "\n";
  }
  return out;
}

}  // namespace saetraj::graph
