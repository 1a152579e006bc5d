// The tidy trajectory table: one CSV row per trajectory (SPEC 1.3) of every prompt, for pandas, polars and
// spreadsheets. RFC 4180 CSV, UTF-8, "\n" line ends, a header row; text cells are always quoted, numbers
// never; an empty cell is a missing value (NaN in the file). Columns, in order:
//   prompt          the prompt's index in the sweep file
//   length          prompt length n of the per-length graph (the query token is n - 1)
//   layer           model layer number
//   source_token    position of the token whose contribution brought the feature in
//   distance_back   (n - 1) - source_token: how far back the source token lies (0 = the last token itself)
//   feature         SAE feature index
//   final_position  rank in the last step's list (0 = highest activation)
//   traced          1 when the trajectory is carried by an edge of its prompt's traced graph, else 0
//   source_text     the source token's text
//   query_text      the query (last) token's text
// then the caller's extra columns (the head split of `sweep --heads` as heads_<column>, the order-free
// summary of `sweep --orders` as order_<column>).
#pragma once

#include <string>
#include <vector>

#include "saetraj/graph/trajectory_graph.h"

namespace saetraj::graph {

struct TrajectoryRecord {
  int length = 0;
  int layer = 0;
  Trajectory trajectory;
};

struct TrajectoryTablePrompt {
  int prompt = 0;
  std::vector<std::string> tokens;       // the prompt's token strings
  std::vector<Edge> traced;              // its traced graph (trace_graph's output)
  std::vector<TrajectoryRecord> rows;    // its trajectories, in the order they are to be written
  std::vector<double> extras;            // [rows, extra columns] row-major; NaN writes an empty cell
};

// The header line (with "\n"). InputError when an extra column name is empty or repeats a column.
std::string trajectory_table_header(const std::vector<std::string>& extra_columns);

// The rows of one prompt (each with "\n"). InputError when extras has the wrong size, or a row's length or
// source token does not fit the prompt's tokens.
std::string trajectory_table_rows(const TrajectoryTablePrompt& prompt, size_t extra_columns);

// A CSV text cell: quoted, with inner quotes doubled, invalid UTF-8 replaced by U+FFFD.
std::string csv_text(const std::string& text);

}  // namespace saetraj::graph
