// Newcomers, per-length graphs and backward tracing (SPEC 1.3-1.5) on hand-made evolution tables. Every
// expected value below is worked out by hand in the comments next to it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>

#include "saetraj/core/error.h"
#include "saetraj/graph/trajectory_graph.h"

namespace saetraj::graph {

void PrintTo(const Trajectory& t, std::ostream* os) {
  *os << "{src " << t.source_token << ", f " << t.feature << ", pos " << t.final_position << "}";
}

void PrintTo(const Edge& e, std::ostream* os) {
  *os << "(" << e.from_token << "," << e.from_layer << ")->(" << e.to_token << "," << e.to_layer
      << ") n=" << e.num_trajectories << " best=" << e.best_final_position << " [";
  for (const auto& [rank, feature] : e.trajectories) *os << " " << rank << ":" << feature;
  *os << " ]";
}

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Traj = std::vector<std::pair<int, int>>;

// Rows shorter than k are padded with -1 (empty slots), as the sweep writes them.
struct Table {
  std::vector<int32_t> data;
  EvolutionView view;
  Table(int k, const std::vector<std::vector<int32_t>>& rows) {
    for (const auto& row : rows) {
      for (int i = 0; i < k; ++i) data.push_back(i < static_cast<int>(row.size()) ? row[i] : -1);
    }
    view = {data.data(), static_cast<int>(rows.size()), k};
  }
};

Edge edge(int ft, int fl, int tt, int tl, int n = 0, int best = -1, Traj trajectories = {}) {
  Edge e;
  e.from_token = ft;
  e.from_layer = fl;
  e.to_token = tt;
  e.to_layer = tl;
  e.num_trajectories = n;
  e.best_final_position = best;
  e.trajectories = std::move(trajectories);
  return e;
}

// Length 3 (q = 2), k = 4:
//   s=0 [10 11 -  -]
//   s=1 [10 20 11 -]   20 first appears at s=1 -> source 0
//   s=2 [30 10 20 -]   30 first appears at s=2 -> source 1
//   s=3 [20 30 10 40]  40 first appears at s=3 -> source 2; last step: 20@0 30@1 10@2 40@3
// 10 and 11 are in step 0, so never newcomers.
const std::vector<std::vector<int32_t>> kBasic = {{10, 11}, {10, 20, 11}, {30, 10, 20}, {20, 30, 10, 40}};

TEST(FindTrajectories, NewcomersWithSourceTokenAndFinalRank) {
  Table t(4, kBasic);
  EXPECT_THAT(find_trajectories(t.view, 15),
              ElementsAre(Trajectory{0, 20, 0}, Trajectory{1, 30, 1}, Trajectory{2, 40, 3}));
}

TEST(FindTrajectories, FinalPositionEqualToTIsKeptTPlusOneIsNot) {
  Table t(4, kBasic);
  // 40 sits at position 3: kept with T = 3 (3 <= 3), dropped with T = 2 (3 = T+1).
  EXPECT_THAT(find_trajectories(t.view, 3),
              ElementsAre(Trajectory{0, 20, 0}, Trajectory{1, 30, 1}, Trajectory{2, 40, 3}));
  EXPECT_THAT(find_trajectories(t.view, 2), ElementsAre(Trajectory{0, 20, 0}, Trajectory{1, 30, 1}));
  // T = 0 keeps only the top slot.
  EXPECT_THAT(find_trajectories(t.view, 0), ElementsAre(Trajectory{0, 20, 0}));
}

TEST(FindTrajectories, LeaveAndReturnKeepsFirstAppearanceDropoutsAreNotTrajectories) {
  // Length 4 (q = 3), k = 3:
  //   s=0 [11 12 -]
  //   s=1 [50 12 -]    50 appears (source 0); 11 leaves
  //   s=2 [60 12 -]    50 leaves; 60 appears (source 1)
  //   s=3 [12 -  -]    60 drops out again
  //   s=4 [50 11 12]   50 returns: still source 0 (first appearance s=1); 11 returns but was in step 0;
  //                    60 is absent from the last step, so it is a newcomer but not a trajectory.
  Table t(3, {{11, 12}, {50, 12}, {60, 12}, {12}, {50, 11, 12}});
  EXPECT_THAT(find_trajectories(t.view, 15), ElementsAre(Trajectory{0, 50, 0}));
}

TEST(FindTrajectories, SameSourceTokenOrderedByFinalPositionNotFeature) {
  // Length 2 (q = 1), k = 4: 70 and 5 both first appear at s=1 (source 0), 9 at s=2 (source 1).
  //   s=0 [1]
  //   s=1 [70 5 1]
  //   s=2 [5 9 70 1]  -> 5@0, 9@1, 70@2
  // Ordered by (source, final position): (0,5,0), (0,70,2), (1,9,1).
  Table t(4, {{1}, {70, 5, 1}, {5, 9, 70, 1}});
  EXPECT_THAT(find_trajectories(t.view, 15),
              ElementsAre(Trajectory{0, 5, 0}, Trajectory{0, 70, 2}, Trajectory{1, 9, 1}));
}

TEST(FindTrajectories, EmptySlotsAreNeverFeatures) {
  // Step 0 is full, so -1 is absent from step 0 yet present later: it must not count as a newcomer.
  //   s=0 [1 2 3]
  //   s=1 [1 -  -]
  //   s=2 [4 1 -]   4 first appears at s=2 -> source 1, final position 0
  Table full(3, {{1, 2, 3}, {1}, {4, 1}});
  EXPECT_THAT(find_trajectories(full.view, 15), ElementsAre(Trajectory{1, 4, 0}));

  // An empty initial list (no active feature before attention): every later feature is a newcomer.
  //   s=0 [- -]
  //   s=1 [8 -]  8 -> source 0
  //   s=2 [9 8]  9 -> source 1
  Table empty_start(2, {{}, {8}, {9, 8}});
  EXPECT_THAT(find_trajectories(empty_start.view, 15), ElementsAre(Trajectory{0, 8, 1}, Trajectory{1, 9, 0}));

  // A last step with no active feature yields nothing.
  Table empty_end(2, {{1}, {2}, {}});
  EXPECT_TRUE(find_trajectories(empty_end.view, 15).empty());
}

TEST(FindTrajectories, RejectsBadTablesAndArguments) {
  Table bad_index(2, {{1}, {-2, 1}});
  EXPECT_THAT(
      [&] { find_trajectories(bad_index.view, 15); },
      ::testing::ThrowsMessage<FormatError>(HasSubstr("step 1 slot 0: expected a feature index >= 0 or -1 "
                                                      "(empty slot) but found -2")));
  Table duplicate(3, {{1}, {7, 2, 7}});
  EXPECT_THAT([&] { find_trajectories(duplicate.view, 15); },
              ::testing::ThrowsMessage<FormatError>(HasSubstr("step 1 lists feature 7 more than once")));
  Table one_step(2, {{1}});
  EXPECT_THAT([&] { find_trajectories(one_step.view, 15); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("at least 2 steps")));
  Table ok(4, kBasic);
  EXPECT_THAT([&] { find_trajectories(ok.view, -1); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("T must be >= 0 but is -1")));
  EXPECT_THAT(
      [&] {
        find_trajectories(EvolutionView{nullptr, 3, 4}, 15);
      },
      ::testing::ThrowsMessage<InputError>(HasSubstr("has no data")));
}

TEST(BuildLengthGraph, LayerSubsetUsesPreviousAnalysedLayer) {
  // Layers {2, 5, 7}, length 4 (q = 3).
  //  layer 2 (first): its trajectory makes no edge.
  //  layer 5 (p = 2), given unsorted: source 2 {9@0, 7@4}, source 0 {8@1}, source 3 {11@6}
  //    spine (0,2)->(0,5); (0,2)->(3,5) n1 best1; (2,2)->(3,5) n2 best0 [0:9 4:7]; (3,2)->(3,5) n1 best6;
  //    an edge leaves token 3, so no vertical edge.
  //  layer 7 (p = 5): no trajectories -> spine (0,5)->(0,7) and vertical (3,5)->(3,7).
  const LengthGraph g =
      build_length_graph(4, {2, 5, 7}, {{{1, 100, 0}}, {{2, 7, 4}, {0, 8, 1}, {2, 9, 0}, {3, 11, 6}}, {}});
  EXPECT_EQ(g.length, 4);
  EXPECT_THAT(g.edges, ElementsAre(edge(0, 2, 0, 5), edge(0, 2, 3, 5, 1, 1, {{1, 8}}),
                                   edge(2, 2, 3, 5, 2, 0, {{0, 9}, {4, 7}}),
                                   edge(3, 2, 3, 5, 1, 6, {{6, 11}}), edge(0, 5, 0, 7), edge(3, 5, 3, 7)));
}

TEST(BuildLengthGraph, VerticalEdgeFollowsTrajectoryEdgesWhenLastTokenHasNone) {
  // Layers {0, 1}, length 3 (q = 2); layer 1 has only source 1 {5@2, 6@0}:
  //   spine (0,0)->(0,1); (1,0)->(2,1) n2 best0 [0:6 2:5]; vertical (2,0)->(2,1).
  const LengthGraph g = build_length_graph(3, {0, 1}, {{}, {{1, 5, 2}, {1, 6, 0}}});
  EXPECT_THAT(g.edges,
              ElementsAre(edge(0, 0, 0, 1), edge(1, 0, 2, 1, 2, 0, {{0, 6}, {2, 5}}), edge(2, 0, 2, 1)));
}

TEST(BuildLengthGraph, SourceZeroTrajectoriesGoAlongsideTheSpine) {
  // Layers {3, 4}, length 2 (q = 1); layer 4 has source 0 {12@3}: spine (0,3)->(0,4), the trajectory
  // edge (0,3)->(1,4), then vertical (1,3)->(1,4) since nothing leaves token 1.
  const LengthGraph g = build_length_graph(2, {3, 4}, {{}, {{0, 12, 3}}});
  EXPECT_THAT(g.edges, ElementsAre(edge(0, 3, 0, 4), edge(0, 3, 1, 4, 1, 3, {{3, 12}}), edge(1, 3, 1, 4)));
}

TEST(BuildLengthGraph, FirstAnalysedLayerMakesNoEdges) {
  const LengthGraph g = build_length_graph(5, {6}, {{{0, 1, 0}, {4, 2, 1}}});
  EXPECT_EQ(g.length, 5);
  EXPECT_TRUE(g.edges.empty());
}

TEST(BuildLengthGraph, EndToEndFromEvolutionTables) {
  // Two layers {0, 1}, length 3 (q = 2), T = 2, k = 4.
  //  layer 1 uses kBasic: 20 (src 0, @0), 30 (src 1, @1); 40 (@3) is beyond T.
  //   -> spine (0,0)->(0,1); (0,0)->(2,1) n1 best0; (1,0)->(2,1) n1 best1; vertical (2,0)->(2,1).
  Table layer0(4, {{1}, {1}, {1}, {1}});
  Table layer1(4, kBasic);
  const LengthGraph g =
      build_length_graph(3, {0, 1}, {find_trajectories(layer0.view, 2), find_trajectories(layer1.view, 2)});
  EXPECT_THAT(g.edges, ElementsAre(edge(0, 0, 0, 1), edge(0, 0, 2, 1, 1, 0, {{0, 20}}),
                                   edge(1, 0, 2, 1, 1, 1, {{1, 30}}), edge(2, 0, 2, 1)));
}

TEST(BuildLengthGraph, RejectsInconsistentArguments) {
  EXPECT_THAT(
      [] {
        build_length_graph(3, {0, 1}, {{}, {{3, 5, 0}}});
      },
      ::testing::ThrowsMessage<InputError>(HasSubstr("has source token 3; expected 0..2")));
  EXPECT_THAT(
      [] {
        build_length_graph(3, {4, 2}, {{}, {}});
      },
      ::testing::ThrowsMessage<InputError>(HasSubstr("strictly increasing but 4 is followed by 2")));
  EXPECT_THAT(
      [] {
        build_length_graph(3, {0, 1}, {{}});
      },
      ::testing::ThrowsMessage<InputError>(
          HasSubstr("expected trajectories for 2 analysed layers but got 1")));
  EXPECT_THAT(
      [] {
        build_length_graph(1, {0, 1}, {{}, {}});
      },
      ::testing::ThrowsMessage<InputError>(HasSubstr("needs length >= 2 but got 1")));
  EXPECT_THAT([] { build_length_graph(3, {}, {}); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("at least one analysed layer")));
}

// Layers {1, 3, 4, 6} (first analysed layer 1), N = 5 tokens. Per-length trajectories and the edges
// they make (S = spine, V = vertical):
//  length 5 (q=4): L3 {}            -> S, V (4,1)->(4,3)
//                  L4 {src0 50@0}   -> S, (0,3)->(4,4) n1 b0, V (4,3)->(4,4)
//                  L6 {src3 61@0 60@2, src4 62@1} -> S, (3,4)->(4,6) n2 b0, (4,4)->(4,6) n1 b1
//  length 4 (q=3): L3 {src1 31@4}   -> S, (1,1)->(3,3) n1 b4, V (3,1)->(3,3)
//                  L4 {src0 43@1, src1 42@0, src2 41@3} -> S, (0,3)->(3,4), (1,3)->(3,4) n1 b0,
//                                      (2,3)->(3,4) n1 b3, V (3,3)->(3,4)
//                  L6 {src3 63@0}   -> S, (3,4)->(3,6) n1 b0
//  length 3 (q=2): L3 {src2 32@1, src1 33@2} -> S, (1,1)->(2,3) n1 b2, (2,1)->(2,3) n1 b1
//                  L4 {}            -> S, V (2,3)->(2,4)
//                  L6 {src1 64@0}   -> S, (1,4)->(2,6) n1 b0, V (2,4)->(2,6)
//  length 2 (q=1): L3 {src0 34@0}   -> S, (0,1)->(1,3) n1 b0, V (1,1)->(1,3)
//                  L4 {src1 44@1}   -> S, (1,3)->(1,4) n1 b1
//                  L6 {}            -> S, V (1,4)->(1,6)
// Tracing: length 5 edges not leaving token 0: (4,1)->(4,3), (4,3)->(4,4), (3,4)->(4,6), (4,4)->(4,6).
//  (4,1): first layer, stop.  (4,3): length 5 into (4,3): only (4,1)->(4,3) again.
//  (4,4): length 5 into (4,4): (0,3)->(4,4) leaves BOS (skipped), (4,3)->(4,4) again.
//  (3,4): length 4 into (3,4): (1,3)->(3,4), (2,3)->(3,4), (3,3)->(3,4); (0,3)->(3,4) skipped.
//    (1,3): length 2 into (1,3): (1,1)->(1,3); (0,1)->(1,3) skipped. (1,1): first layer.
//    (2,3): length 3 into (2,3): (1,1)->(2,3), (2,1)->(2,3).
//    (3,3): length 4 into (3,3): (1,1)->(3,3), (3,1)->(3,3).
// Never reached: (3,4)->(3,6), (2,3)->(2,4), (1,4)->(2,6), (2,4)->(2,6), (1,3)->(1,4), (1,4)->(1,6).
std::vector<LengthGraph> tracing_fixture() {
  const std::vector<int> layers = {1, 3, 4, 6};
  std::vector<LengthGraph> graphs(6);
  graphs[5] =
      build_length_graph(5, layers, {{{2, 99, 0}}, {}, {{0, 50, 0}}, {{3, 60, 2}, {3, 61, 0}, {4, 62, 1}}});
  graphs[4] =
      build_length_graph(4, layers, {{}, {{1, 31, 4}}, {{2, 41, 3}, {1, 42, 0}, {0, 43, 1}}, {{3, 63, 0}}});
  graphs[3] = build_length_graph(3, layers, {{}, {{2, 32, 1}, {1, 33, 2}}, {}, {{1, 64, 0}}});
  graphs[2] = build_length_graph(2, layers, {{}, {{0, 34, 0}}, {{1, 44, 1}}, {}});
  return graphs;
}

TEST(TraceGraph, FollowsSourcesBackOverFourLengths) {
  const std::vector<Edge> traced = trace_graph(tracing_fixture(), 5, {1, 3, 4, 6});
  // Sorted by (to_layer, to_token, from_layer, from_token).
  EXPECT_THAT(traced,
              ElementsAre(edge(1, 1, 1, 3), edge(1, 1, 2, 3, 1, 2, {{2, 33}}),
                          edge(2, 1, 2, 3, 1, 1, {{1, 32}}), edge(1, 1, 3, 3, 1, 4, {{4, 31}}),
                          edge(3, 1, 3, 3), edge(4, 1, 4, 3), edge(1, 3, 3, 4, 1, 0, {{0, 42}}),
                          edge(2, 3, 3, 4, 1, 3, {{3, 41}}), edge(3, 3, 3, 4), edge(4, 3, 4, 4),
                          edge(3, 4, 4, 6, 2, 0, {{0, 61}, {2, 60}}), edge(4, 4, 4, 6, 1, 1, {{1, 62}})));
  for (const Edge& e : traced) {
    EXPECT_NE(e.from_token, 0);
    EXPECT_NE(e.to_token, 0);
  }
}

TEST(TraceGraph, SingleAnalysedLayerTracesNothing) {
  std::vector<LengthGraph> graphs(4);
  for (int n = 2; n <= 3; ++n) graphs[n] = build_length_graph(n, {7}, {{{0, 1, 0}}});
  EXPECT_TRUE(trace_graph(graphs, 3, {7}).empty());
}

TEST(TraceGraph, BosOnlyTrajectoriesLeaveJustTheVerticalEdge) {
  // Layers {0, 1}, N = 2: layer 1 has only a BOS-sourced trajectory, so the length-2 graph is
  // S (0,0)->(0,1), (0,0)->(1,1), V (1,0)->(1,1); only V survives, and (1,0) is the first layer.
  std::vector<LengthGraph> graphs(3);
  graphs[2] = build_length_graph(2, {0, 1}, {{}, {{0, 5, 0}}});
  EXPECT_THAT(trace_graph(graphs, 2, {0, 1}), ElementsAre(edge(1, 0, 1, 1)));
}

TEST(TraceGraph, RejectsMissingOrMislabelledGraphs) {
  std::vector<LengthGraph> graphs = tracing_fixture();
  EXPECT_THAT(
      [&] {
        trace_graph(graphs, 6, {1, 3, 4, 6});
      },
      ::testing::ThrowsMessage<InputError>(HasSubstr("needs graphs of lengths 2..6 but got 6 entries")));
  graphs[3].length = 4;
  EXPECT_THAT(
      [&] {
        trace_graph(graphs, 5, {1, 3, 4, 6});
      },
      ::testing::ThrowsMessage<InputError>(
          HasSubstr("graphs[3] should be the graph of length 3 but has length 4")));
  graphs = tracing_fixture();
  graphs[2].edges.push_back(edge(2, 1, 1, 3));
  EXPECT_THAT(
      [&] {
        trace_graph(graphs, 5, {1, 3, 4, 6});
      },
      ::testing::ThrowsMessage<InputError>(
          HasSubstr("graph of length 2 has an edge (2, 1) -> (1, 3); expected tokens 0..1")));
}

}  // namespace
}  // namespace saetraj::graph
