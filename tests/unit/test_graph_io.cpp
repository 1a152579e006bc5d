// Graph JSON (the original research code's shape) and GraphML: round trips, exact shape, broken files,
// and networkx reading the GraphML.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <ostream>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/graph/graph_json.h"
#include "saetraj/graph/graphml.h"
#include "test_support.h"

namespace saetraj::graph {

void PrintTo(const Edge& e, std::ostream* os) {
  *os << "(" << e.from_token << "," << e.from_layer << ")->(" << e.to_token << "," << e.to_layer
      << ") n=" << e.num_trajectories << " best=" << e.best_final_position;
}

namespace {

using nlohmann::json;
using saetraj::testing::read_file;
using saetraj::testing::TempDir;
using saetraj::testing::write_file;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::ThrowsMessage;

// The per-length graph of layers {2, 5, 7} at length 4 (see test_graph.cpp, LayerSubsetUsesPrevious...):
// spine, three trajectory edges into (3,5), spine and vertical into layer 7.
GraphDocument sample_document() {
  GraphDocument doc;
  doc.prompt_length = 4;
  doc.tokens = {"<bos>", " Max", " \"quoted\"\n", " caf\xC3\xA9"};
  doc.metadata = {{"layers", {2, 5, 7}}, {"top_t", 15}, {"model", "gpt2"}, {"sae_ids", {"a", "b", "c"}}};
  doc.edges =
      build_length_graph(4, {2, 5, 7}, {{{1, 100, 0}}, {{2, 7, 4}, {0, 8, 1}, {2, 9, 0}, {3, 11, 6}}, {}})
          .edges;
  return doc;
}

TEST(GraphJson, RoundTripsThroughAFile) {
  TempDir dir;
  const GraphDocument doc = sample_document();
  write_graph_json(dir.file("graph_4.json"), doc);
  const GraphDocument back = read_graph_json(dir.file("graph_4.json"));
  EXPECT_EQ(back.prompt_length, 4);
  EXPECT_EQ(back.tokens, doc.tokens);
  EXPECT_EQ(back.metadata, doc.metadata);
  ASSERT_EQ(back.edges.size(), 6u);
  EXPECT_EQ(back.edges, doc.edges);
}

TEST(GraphJson, HasTheOriginalResearchShape) {
  const json j = graph_to_json(sample_document());
  EXPECT_EQ(j.at("prompt_length"), 4);
  EXPECT_EQ(j.at("tokens").size(), 4u);
  EXPECT_EQ(j.at("metadata").at("top_t"), 15);
  const json& edges = j.at("edges");
  ASSERT_EQ(edges.size(), 6u);
  // Spine (0,2)->(0,5): 0 trajectories, best_final_position 0 and an empty list, as the original code wrote
  // such edges (SPEC 3), field by field.
  EXPECT_EQ(edges[0], json::parse(R"({"from": [0, 2], "to": [0, 5], "num_trajectories": 0,
      "best_final_position": 0, "all_trajectories": []})"));
  EXPECT_EQ(edges[0].size(), 5u);
  for (const char* key : {"from", "to", "num_trajectories", "best_final_position", "all_trajectories"}) {
    EXPECT_TRUE(edges[0].contains(key)) << key;
  }
  // Read back, it is the in-memory -1 again; a -1 written by older saetraj versions reads the same.
  json old = j;
  old["edges"][0]["best_final_position"] = -1;
  EXPECT_EQ(graph_from_json(j, "new").edges[0].best_final_position, -1);
  EXPECT_EQ(graph_from_json(old, "old").edges[0].best_final_position, -1);
  // (2,2)->(3,5): features 9@0 and 7@4.
  EXPECT_EQ(edges[2], json::parse(R"({"from": [2, 2], "to": [3, 5], "num_trajectories": 2,
      "best_final_position": 0, "all_trajectories": [{"final_position": 0, "sae_index": 9},
                                                     {"final_position": 4, "sae_index": 7}]})"));
}

TEST(GraphJson, TracedGraphUsesTheSameShapeWithTheFullLength) {
  TempDir dir;
  GraphDocument traced;
  traced.prompt_length = 5;
  traced.tokens = {"a", "b", "c", "d", "e"};
  Edge e;
  e.from_token = 3, e.from_layer = 4, e.to_token = 4, e.to_layer = 6;
  e.num_trajectories = 2, e.best_final_position = 0, e.trajectories = {{0, 61}, {2, 60}};
  traced.edges = {e};
  write_graph_json(dir.file("traced.json"), traced);
  const json j = json::parse(read_file(dir.file("traced.json")));
  EXPECT_EQ(j.at("prompt_length"), 5);
  EXPECT_EQ(read_graph_json(dir.file("traced.json")).edges, traced.edges);
}

TEST(GraphJson, InvalidUtf8TokensBecomeReplacementCharacters) {
  TempDir dir;
  GraphDocument doc = sample_document();
  doc.tokens[1] = "a\xFF";
  write_graph_json(dir.file("g.json"), doc);
  EXPECT_EQ(read_graph_json(dir.file("g.json")).tokens[1], "a\xEF\xBF\xBD");
}

// Writes `mutate(sample)` to a file and expects reading it to fail with a FormatError naming the file.
void expect_format_error(const std::function<void(json&)>& mutate, const std::string& message) {
  TempDir dir;
  const std::string path = dir.file("broken.json");
  json j = graph_to_json(sample_document());
  mutate(j);
  write_file(path, j.dump());
  EXPECT_THAT([&] { read_graph_json(path); },
              ThrowsMessage<FormatError>(::testing::AllOf(HasSubstr(path), HasSubstr(message))))
      << message;
}

TEST(GraphJson, RejectsMalformedDocuments) {
  expect_format_error([](json& j) { j.erase("edges"); }, "missing key \"edges\"");
  expect_format_error([](json& j) { j.erase("metadata"); }, "missing key \"metadata\"");
  expect_format_error([](json& j) { j["prompt_length"] = "4"; },
                      "\"prompt_length\": expected an integer but found string");
  expect_format_error([](json& j) { j["prompt_length"] = 4.5; }, "expected an integer but found number 4.5");
  expect_format_error([](json& j) { j["prompt_length"] = 5000000000LL; }, "does not fit in 32 bits");
  expect_format_error([](json& j) { j["tokens"].erase(3); }, "expected 4 tokens (prompt_length) but found 3");
  expect_format_error([](json& j) { j["tokens"][1] = 7; }, "tokens[1] should be a string but is number");
  expect_format_error([](json& j) { j["metadata"] = json::array(); }, "\"metadata\" should be an object");
  expect_format_error([](json& j) { j["edges"] = json::object(); },
                      "\"edges\" should be an array but is object");
  expect_format_error([](json& j) { j["edges"][1] = 3; },
                      "edges[1]: expected a JSON object but found number");
  expect_format_error([](json& j) { j["edges"][1].erase("to"); }, "edges[1]: missing key \"to\"");
  expect_format_error(
      [](json& j) {
        j["edges"][1]["from"] = {0, 2, 9};
      },
      "edges[1]: \"from\": expected [token, layer] but found 3 entries");
  expect_format_error(
      [](json& j) {
        j["edges"][1]["to"] = {4, 5};
      },
      "edges[1]: \"to\": token 4 is outside 0..3");
  expect_format_error(
      [](json& j) {
        j["edges"][1]["from"] = {0, -1};
      },
      "edges[1]: \"from\": layer -1 is negative");
  expect_format_error([](json& j) { j["edges"][2]["num_trajectories"] = "2"; },
                      "edges[2]: \"num_trajectories\": expected an integer but found string");
  expect_format_error([](json& j) { j["edges"][2]["num_trajectories"] = 3; },
                      "edges[2]: num_trajectories is 3 but all_trajectories holds 2 entries");
  expect_format_error([](json& j) { j["edges"][2]["best_final_position"] = 4; },
                      "edges[2]: best_final_position is 4 but the trajectories give 0");
  expect_format_error([](json& j) { j["edges"][0]["best_final_position"] = 3; },
                      "edges[0]: best_final_position is 3 but an edge without trajectories carries 0");
  expect_format_error([](json& j) { j["edges"][2]["all_trajectories"][1].erase("sae_index"); },
                      "edges[2]: all_trajectories[1]: missing key \"sae_index\"");
  expect_format_error([](json& j) { j["edges"][2]["all_trajectories"][1]["final_position"] = -3; },
                      "all_trajectories[1]: expected final_position and sae_index >= 0 but found -3 and 7");
  expect_format_error([](json& j) { j = json::array(); }, "expected a JSON object but found array");
}

TEST(GraphJson, RejectsNonJsonAndMissingFiles) {
  TempDir dir;
  write_file(dir.file("bad.json"), "{\"prompt_length\": 4,");
  EXPECT_THAT([&] { read_graph_json(dir.file("bad.json")); },
              ThrowsMessage<FormatError>(HasSubstr(dir.file("bad.json") + ": not valid JSON")));
  EXPECT_THAT([&] { read_graph_json(dir.file("absent.json")); },
              ThrowsMessage<IoError>(HasSubstr("cannot open graph JSON " + dir.file("absent.json"))));
  EXPECT_THAT([&] { write_graph_json(dir.file("no/such/dir.json"), sample_document()); },
              ThrowsMessage<IoError>(HasSubstr("cannot open " + dir.file("no/such/dir.json"))));
  GraphDocument short_tokens = sample_document();
  short_tokens.tokens.pop_back();
  EXPECT_THAT([&] { graph_to_json(short_tokens); },
              ThrowsMessage<InputError>(HasSubstr("prompt_length 4 needs 4 token strings but has 3")));
}

Edge make_edge(int ft, int fl, int tt, int tl, int best, std::vector<std::pair<int, int>> trajectories) {
  Edge e;
  e.from_token = ft, e.from_layer = fl, e.to_token = tt, e.to_layer = tl;
  e.num_trajectories = static_cast<int>(trajectories.size());
  e.best_final_position = best;
  e.trajectories = std::move(trajectories);
  return e;
}

// A traced graph: (1,2)->(3,5) with 9@0 7@4, vertical (3,2)->(3,5), (2,5)->(3,7) with 11@3.
// Nodes: t1_l2, t3_l2, t3_l5, t2_l5, t3_l7 -> 5 nodes, 3 edges.
const std::vector<Edge> kTraced = {make_edge(1, 2, 3, 5, 0, {{0, 9}, {4, 7}}), make_edge(3, 2, 3, 5, -1, {}),
                                   make_edge(2, 5, 3, 7, 3, {{3, 11}})};
const std::vector<std::string> kTokens = {"<bos>", " a&b<c>\r\t", "\"q\"\n'x'", " c\x01\xEF\xBF\xBF", "end"};

// Writes the graph as GraphML, reads it with networkx (g = nx.read_graphml(...)), runs `body` on g and returns
// the JSON that `body` leaves in `out`. .ci/setup-debian installs python3-networkx: its absence is a broken
// set-up, not a reason to skip.
json read_with_networkx(const std::vector<MlpPathVertex>& mlp, const std::string& body) {
  EXPECT_EQ(std::system("/usr/bin/python3 -c 'import networkx' >/dev/null 2>&1"), 0)
      << "/usr/bin/python3 has no networkx: run .ci/setup-debian (it installs python3-networkx)";
  TempDir dir;
  write_graphml(dir.file("traced.graphml"), kTraced, kTokens, mlp);
  write_file(dir.file("read.py"), "import json, sys\nimport networkx as nx\ng = nx.read_graphml(sys.argv[1])\n" + body +
                                      "\njson.dump(out, open(sys.argv[2], \"w\"))\n");
  const std::string command = "/usr/bin/python3 " + dir.file("read.py") + " " + dir.file("traced.graphml") +
                              " " + dir.file("out.json");
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return json::parse(read_file(dir.file("out.json")));
}

TEST(GraphMl, DeclaresKeysAndEscapesText) {
  const std::string x = graph_to_graphml(kTraced, kTokens);
  EXPECT_THAT(x, HasSubstr(R"(<key id="token" for="node" attr.name="token" attr.type="int"/>)"));
  EXPECT_THAT(x, HasSubstr(R"(<key id="token_text" for="node" attr.name="token_text" attr.type="string"/>)"));
  EXPECT_THAT(x, HasSubstr(R"(<key id="features" for="edge" attr.name="features" attr.type="string"/>)"));
  EXPECT_THAT(x, HasSubstr(R"(<graph id="trajectories" edgedefault="directed">)"));
  EXPECT_THAT(x, HasSubstr(R"(<data key="token_text"> a&amp;b&lt;c&gt;&#13;&#9;</data>)"));
  EXPECT_THAT(x, HasSubstr(R"(<data key="token_text">&quot;q&quot;&#10;&apos;x&apos;</data>)"));
  // U+0001 and U+FFFF cannot appear in XML 1.0 at all: both become U+FFFD.
  EXPECT_THAT(x, HasSubstr("<data key=\"token_text\"> c\xEF\xBF\xBD\xEF\xBF\xBD</data>"));
  EXPECT_THAT(x,
              HasSubstr(R"(<edge source="t1_l2" target="t3_l5"><data key="num_trajectories">2</data>)"
                        R"(<data key="best_final_position">0</data><data key="features">9 7</data></edge>)"));
  EXPECT_THAT(x, HasSubstr(R"(<edge source="t3_l2" target="t3_l5"><data key="num_trajectories">0</data>)"
                           R"(<data key="best_final_position">-1</data></edge>)"));
}

TEST(GraphMl, RejectsEdgesOutsideThePrompt) {
  EXPECT_THAT(
      [] {
        graph_to_graphml(kTraced, {"a", "b", "c"});
      },
      ThrowsMessage<InputError>(
          HasSubstr("edge endpoint (3, 5) names a token outside the prompt's 3 tokens")));
  EXPECT_THAT([] { write_graphml("/nonexistent-dir/g.graphml", kTraced, kTokens); },
              ThrowsMessage<IoError>(HasSubstr("cannot open /nonexistent-dir/g.graphml")));
}

TEST(GraphMl, NetworkxReadsIt) {
  const json out = read_with_networkx({}, R"(
out = {"directed": g.is_directed(), "nodes": g.number_of_nodes(), "edges": g.number_of_edges(),
       "text": {n: d["token_text"] for n, d in g.nodes(data=True)},
       "token_is_int": all(isinstance(d["token"], int) for _, d in g.nodes(data=True)),
       "t2_l5": [g.nodes["t2_l5"]["token"], g.nodes["t2_l5"]["layer"]],
       "e": [g.edges["t1_l2", "t3_l5"]["num_trajectories"], g.edges["t1_l2", "t3_l5"]["best_final_position"],
             g.edges["t1_l2", "t3_l5"]["features"]],
       "vertical": [g.edges["t3_l2", "t3_l5"]["num_trajectories"], g.edges["t3_l2", "t3_l5"]["best_final_position"],
                    "features" in g.edges["t3_l2", "t3_l5"]]})");
  EXPECT_EQ(out.at("directed"), true);
  EXPECT_EQ(out.at("nodes"), 5);
  EXPECT_EQ(out.at("edges"), 3);
  EXPECT_EQ(out.at("token_is_int"), true);
  EXPECT_EQ(out.at("t2_l5"), json::parse("[2, 5]"));
  EXPECT_EQ(out.at("text").at("t1_l2"), " a&b<c>\r\t");
  EXPECT_EQ(out.at("text").at("t2_l5"), "\"q\"\n'x'");
  EXPECT_EQ(out.at("text").at("t3_l7"), " c\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(out.at("e"), json::parse(R"([2, 0, "9 7"])"));
  EXPECT_EQ(out.at("vertical"), json::parse("[0, -1, false]"));
}

// The traced graph above with two MLP vertices: at (3, 5) step 2 of 7 adds transcoder feature 40 (activation
// 0.5), bringing 300 (rank 1) and 301 (rank 4); at (3, 7) the error term (step 6 of 6) brings 12 (rank 0).
std::vector<MlpPathVertex> mlp_path() {
  MlpPathVertex a;
  a.token = 3, a.layer = 5, a.step = 2, a.steps = 7, a.term = "feature", a.transcoder_feature = 40;
  a.transcoder_activation = 0.5, a.features = {{1, 300}, {4, 301}};
  MlpPathVertex b;
  b.token = 3, b.layer = 7, b.step = 6, b.steps = 6, b.term = "error", b.features = {{0, 12}};
  return {a, b};
}

TEST(GraphMl, MlpVerticesAreNodesWithAnEdgeIntoTheirVertex) {
  const std::string plain = graph_to_graphml(kTraced, kTokens);
  EXPECT_THAT(plain, Not(HasSubstr("kind")));  // without MLP vertices the document is as before
  const std::string x = graph_to_graphml(kTraced, kTokens, mlp_path());
  EXPECT_THAT(x, HasSubstr(R"(<key id="kind" for="node" attr.name="kind" attr.type="string"/>)"));
  EXPECT_THAT(x, HasSubstr(R"(<node id="t3_l5"><data key="token">3</data>)"));
  EXPECT_THAT(x, HasSubstr(R"(<data key="kind">vertex</data></node>)"));
  EXPECT_THAT(x, HasSubstr(R"(<node id="mlp_t3_l5_s2"><data key="token">3</data><data key="layer">5</data>)"));
  EXPECT_THAT(x, HasSubstr(R"(<data key="kind">mlp</data><data key="mlp_term">feature</data>)"
                           R"(<data key="transcoder_feature">40</data><data key="transcoder_activation">0.5</data>)"
                           R"(<data key="step">2</data><data key="steps">7</data></node>)"));
  EXPECT_THAT(x, HasSubstr(R"(<data key="mlp_term">error</data><data key="transcoder_feature">-1</data>)"
                           R"(<data key="step">6</data>)"));
  EXPECT_THAT(x, HasSubstr(R"(<edge source="mlp_t3_l5_s2" target="t3_l5"><data key="num_trajectories">2</data>)"
                           R"(<data key="best_final_position">1</data><data key="features">300 301</data></edge>)"));
  auto stray = mlp_path();
  stray[1].token = 4;
  EXPECT_THAT([&] { graph_to_graphml(kTraced, kTokens, stray); },
              ThrowsMessage<InputError>(HasSubstr("MLP vertex (4, 7) is not an endpoint of the graph's edges")));

  const json out = read_with_networkx(mlp_path(), R"(
a, b = g.nodes["mlp_t3_l5_s2"], g.nodes["mlp_t3_l7_s6"]
out = {"nodes": g.number_of_nodes(), "edges": g.number_of_edges(),
       "kinds": sorted(d["kind"] for _, d in g.nodes(data=True)),
       "a": [a["transcoder_feature"], a["transcoder_activation"], a["step"], a["steps"], a["mlp_term"]],
       "b": [b["transcoder_feature"], "transcoder_activation" in b, b["mlp_term"]],
       "e": g.edges["mlp_t3_l7_s6", "t3_l7"]["features"]})");
  EXPECT_EQ(out.at("nodes"), 7);
  EXPECT_EQ(out.at("edges"), 5);
  EXPECT_EQ(out.at("kinds"), json::parse(R"(["mlp", "mlp", "vertex", "vertex", "vertex", "vertex", "vertex"])"));
  EXPECT_EQ(out.at("a"), json::parse(R"([40, 0.5, 2, 7, "feature"])"));
  EXPECT_EQ(out.at("b"), json::parse(R"([-1, false, "error"])"));
  EXPECT_EQ(out.at("e"), "12");
}

}  // namespace
}  // namespace saetraj::graph
