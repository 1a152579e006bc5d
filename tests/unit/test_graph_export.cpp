// Exports for other tools: the traced graph as an attribution graph (Neuronpedia / circuit-tracer JSON),
// the tidy trajectory table (CSV), and the files the graph step writes for them. Expected values are
// written out by hand from the NOTE in graph/attribution_export.h and the column list in
// graph/trajectory_table.h.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/graph/attribution_export.h"
#include "saetraj/graph/export_writer.h"
#include "saetraj/graph/trajectory_table.h"
#include "test_support.h"

namespace saetraj::graph {
namespace {

using nlohmann::json;
using saetraj::testing::read_file;
using saetraj::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

Edge edge(int ft, int fl, int tt, int tl, std::vector<std::pair<int, int>> trajectories) {
  Edge e{ft, fl, tt, tl, static_cast<int>(trajectories.size()), -1, std::move(trajectories)};
  if (!e.trajectories.empty()) e.best_final_position = e.trajectories.front().first;
  return e;
}

// Layers {0, 1, 2}, 4 tokens, T = 3. Token 1 brings features 100 (rank 0) and 7 (rank 2) into (3, 1);
// (3, 1) passes feature 5 (rank 1) on to (3, 2), and token 2 brings feature 9 (rank 0) into (3, 2); a
// 0-trajectory vertical edge (2, 0) -> (2, 1).
AttributionGraphInput sample_input() {
  AttributionGraphInput in;
  in.slug = "demo-T3-p0000";
  in.scan = "gemma-2-2b";
  in.source_set = "gemmascope-res-65k";
  in.prompt = "A\nC";
  in.tokens = {"<bos>", "A", "\n", "C"};
  in.token_ids = {2, 10, 11, 12};
  in.layers = {0, 1, 2};
  in.top_t = 3;
  in.traced = {edge(2, 0, 2, 1, {}), edge(1, 0, 3, 1, {{0, 100}, {2, 7}}), edge(3, 1, 3, 2, {{1, 5}}),
               edge(2, 1, 3, 2, {{0, 9}})};
  return in;
}

TEST(AttributionExport, CantorPairingIsNeuronpediasFeatureId) {
  EXPECT_EQ(cantor_feature(0, 0), 0);
  EXPECT_EQ(cantor_feature(1, 0), 1);
  EXPECT_EQ(cantor_feature(0, 1), 2);
  EXPECT_EQ(cantor_feature(0, 41), 902);  // 41 * 42 / 2 + 41
  EXPECT_EQ(cantor_feature(2, 3), 18);    // 5 * 6 / 2 + 3
  EXPECT_EQ(cantor_feature(25, 65535), 65560LL * 65561 / 2 + 65535);
  EXPECT_THAT([] { cantor_feature(-1, 3); }, ThrowsMessage<InputError>(HasSubstr("layer >= 0")));
}

TEST(AttributionExport, NodesAndLinksFollowTheMapping) {
  const json doc = attribution_graph_json(sample_input());
  std::vector<std::string> ids;
  for (const auto& n : doc["nodes"]) ids.push_back(n["node_id"].get<std::string>());
  EXPECT_EQ(ids, (std::vector<std::string>{"E_2_0", "E_10_1", "E_11_2", "E_12_3", "1_100_3", "1_7_3", "2_5_3",
                                           "2_9_3"}));
  const json& emb = doc["nodes"][2];
  EXPECT_EQ(emb["layer"], "E");
  EXPECT_EQ(emb["feature"], 2);
  EXPECT_EQ(emb["ctx_idx"], 2);
  EXPECT_EQ(emb["feature_type"], "embedding");
  const json& f = doc["nodes"][4];
  EXPECT_EQ(f["feature"], 5251);  // Cantor (1, 100): 101 * 102 / 2 + 100
  EXPECT_EQ(f["layer"], "1");
  EXPECT_EQ(f["ctx_idx"], 3);
  EXPECT_EQ(f["feature_type"], "cross layer transcoder");
  EXPECT_EQ(f["jsNodeId"], "1_100_3");
  EXPECT_EQ(f["clerp"], "L1 #100 from \"A\" (rank 0)");
  EXPECT_EQ(f["saetraj"], json({{"sae_index", 100}, {"source_token", 1}, {"final_position", 0}, {"prompt_length", 4}}));
  EXPECT_EQ(doc["nodes"][7]["clerp"], "L2 #9 from \"\u23CE\" (rank 0)");

  std::set<std::tuple<std::string, std::string, double>> links;
  for (const auto& l : doc["links"]) {
    links.insert({l["source"].get<std::string>(), l["target"].get<std::string>(), l["weight"].get<double>()});
  }
  const std::set<std::tuple<std::string, std::string, double>> expected = {
      {"E_10_1", "1_100_3", 1.0},   {"E_10_1", "1_7_3", 0.5},      // (1, 0) has no arrivals: token 1's embedding
      {"1_100_3", "2_5_3", 0.75},   {"1_7_3", "2_5_3", 0.75},      // (3, 1) holds features 100 and 7
      {"E_11_2", "2_9_3", 1.0}};                                     // (2, 1) has no arrivals
  EXPECT_EQ(links, expected);
  EXPECT_EQ(doc["links"].size(), 5u);

  const json& meta = doc["metadata"];
  EXPECT_EQ(meta["slug"], "demo-T3-p0000");
  EXPECT_EQ(meta["scan"], "gemma-2-2b");
  EXPECT_EQ(meta["schema_version"], 1);
  EXPECT_EQ(meta["transcoder_list"], json::array());
  EXPECT_EQ(meta["prompt"], "A\nC");
  EXPECT_EQ(meta["prompt_tokens"], json({"<bos>", "A", "\u23CE", "C"}));
  EXPECT_EQ(meta["feature_details"]["neuronpedia_source_set"], "gemmascope-res-65k");
  EXPECT_EQ(doc["qParams"]["linkType"], "both");
}

TEST(AttributionExport, LogitNodesCarryTheReadoutProbabilityInTheirLabel) {
  auto in = sample_input();
  in.logits = {{42, " Mark", 0.5}, {43, "\t", 0.25}};
  const json doc = attribution_graph_json(in);
  const json& a = doc["nodes"][8];
  EXPECT_EQ(a["node_id"], "3_42_3");
  EXPECT_EQ(a["layer"], "3");
  EXPECT_EQ(a["feature"], 42);
  EXPECT_EQ(a["feature_type"], "logit");
  EXPECT_EQ(a["clerp"], "Output \" Mark\" (p=0.500)");
  EXPECT_EQ(a["is_target_logit"], true);
  EXPECT_EQ(doc["nodes"][9]["clerp"], "Output \"\u2192\" (p=0.250)");
  EXPECT_EQ(doc["nodes"][9]["is_target_logit"], false);
  EXPECT_EQ(doc["nodes"].size(), 10u);
}

TEST(AttributionExport, ExplanationsBecomeTheLabels) {
  auto in = sample_input();
  const std::map<std::pair<int, int>, std::string> explanations = {{{1, 100}, "light sources \xFF"}, {{2, 100}, "x"}};
  in.explanations = &explanations;
  const json doc = attribution_graph_json(in);
  EXPECT_EQ(doc["nodes"][4]["node_id"], "1_100_3");
  EXPECT_EQ(doc["nodes"][4]["clerp"], "light sources \uFFFD");
  EXPECT_EQ(doc["nodes"][5]["clerp"], "L1 #7 from \"A\" (rank 2)");  // none for (1, 7)
}

TEST(AttributionExport, RelabellingSetsTheLabelsTheExplanationsWouldHaveGiven) {
  // A graph exported before `saetraj explain`, relabelled, is the graph exported after it; relabelling with
  // no explanations gives back saetraj's labels.
  auto in = sample_input();
  const json plain = attribution_graph_json(in);
  const std::map<std::pair<int, int>, std::string> explanations = {
      {{1, 100}, "light sources \xFF"}, {{2, 9}, "nine"}, {{0, 100}, "not in the graph"}};
  in.explanations = &explanations;
  const json explained = attribution_graph_json(in);
  json doc = plain;
  EXPECT_EQ(relabel_attribution_graph(doc, explanations, "g.json"), 2);
  EXPECT_EQ(doc, explained);
  EXPECT_EQ(doc["nodes"][4]["clerp"], "light sources \uFFFD");
  EXPECT_EQ(relabel_attribution_graph(doc, explanations, "g.json"), 0);
  EXPECT_EQ(relabel_attribution_graph(doc, {}, "g.json"), 2);
  EXPECT_EQ(doc, plain);
  EXPECT_EQ(doc["nodes"][4]["clerp"], "L1 #100 from \"A\" (rank 0)");
}

TEST(AttributionExport, RelabellingRefusesGraphsItCannotLabel) {
  const json good = attribution_graph_json(sample_input());
  auto refused = [&](const std::function<void(json&)>& damage, const std::string& message) {
    json doc = good;
    damage(doc);
    EXPECT_THAT([&] { relabel_attribution_graph(doc, {}, "dir/g.json"); },
                ThrowsMessage<FormatError>(AllOf(HasSubstr("dir/g.json: "), HasSubstr(message))));
  };
  refused([](json& d) { d.erase("nodes"); }, "no \"nodes\" array");
  refused([](json& d) { d["nodes"][4].erase("saetraj"); },
          "feature node 1_100_3 lacks its layer or saetraj {sae_index, source_token, final_position}");
  refused([](json& d) { d["nodes"][4]["saetraj"]["final_position"] = "0"; }, "feature node 1_100_3 lacks");
  refused([](json& d) { d["nodes"][4]["layer"] = "x1"; }, "feature node 1_100_3 has layer \"x1\", not a layer number");
  refused([](json& d) { d["nodes"][4]["saetraj"]["source_token"] = 4; },
          "feature node 1_100_3's source token 4 is not in metadata.prompt_tokens (4 tokens)");
  refused([](json& d) { d.erase("metadata"); }, "is not in metadata.prompt_tokens (0 tokens)");
}

// The sample with two MLP vertices at layer 1: at token 3 (where attention brought 100 and 7) step 2 adds
// transcoder feature 40 (activation 0.5), which brings SAE feature 300 in at rank 1; at token 2 (where
// attention brought nothing) the error term (step 5 of 5) brings 11 (rank 0) and 12 (rank 3).
AttributionGraphInput sample_with_mlp() {
  auto in = sample_input();
  MlpPathVertex a;
  a.token = 3, a.layer = 1, a.step = 2, a.steps = 6, a.term = "feature", a.transcoder_feature = 40;
  a.transcoder_activation = 0.5;
  a.features = {{1, 300}};
  MlpPathVertex b;
  b.token = 2, b.layer = 1, b.step = 5, b.steps = 5, b.term = "error";
  b.features = {{0, 11}, {3, 12}};
  in.mlp_path = {b, a};
  return in;
}

TEST(AttributionExport, MlpVerticesBecomeMlpNodesBetweenTheirInputsAndTheirFeatures) {
  const json doc = attribution_graph_json(sample_with_mlp());
  std::map<std::string, json> nodes;
  for (const auto& n : doc["nodes"]) nodes[n["node_id"].get<std::string>()] = n;
  ASSERT_EQ(nodes.size(), 8u + 5u);
  const json& term = nodes.at("mlp_1_3_2");
  EXPECT_EQ(term["feature"], -1);
  EXPECT_EQ(term["layer"], "1");
  EXPECT_EQ(term["ctx_idx"], 3);
  EXPECT_EQ(term["feature_type"], "mlp reconstruction error");
  EXPECT_EQ(term["clerp"], "MLP L1: transcoder #40 (act 0.5)");
  EXPECT_EQ(term["activation"], 0.5);
  EXPECT_EQ(term["saetraj"], json({{"mlp_term", "feature"}, {"transcoder_feature", 40}, {"transcoder_activation", 0.5},
                                   {"step", 2}, {"steps", 6}}));
  EXPECT_EQ(nodes.at("mlp_1_2_5")["clerp"], "MLP L1: reconstruction error");
  EXPECT_EQ(nodes.at("mlp_1_2_5")["saetraj"]["transcoder_feature"], nullptr);
  EXPECT_EQ(nodes.at("mlp_1_2_5")["activation"], nullptr);
  const json& f = nodes.at("1_300_3");
  EXPECT_EQ(f["feature"], cantor_feature(1, 300));
  EXPECT_EQ(f["feature_type"], "cross layer transcoder");
  EXPECT_EQ(f["clerp"], "L1 #300 from the MLP (rank 1)");
  EXPECT_EQ(f["saetraj"], json({{"sae_index", 300}, {"mlp_step", 2}, {"final_position", 1}, {"prompt_length", 4}}));
  EXPECT_EQ(nodes.at("1_12_2")["clerp"], "L1 #12 from the MLP (rank 3)");

  std::set<std::tuple<std::string, std::string, double>> links;
  for (const auto& l : doc["links"]) {
    links.insert({l["source"].get<std::string>(), l["target"].get<std::string>(), l["weight"].get<double>()});
  }
  const std::set<std::tuple<std::string, std::string, double>> expected = {
      {"E_10_1", "1_100_3", 1.0},    {"E_10_1", "1_7_3", 0.5},
      // into the MLP terms: what attention brought to (3, 1); token 2 itself at (2, 1); weighted by the best rank
      {"1_100_3", "mlp_1_3_2", 0.75}, {"1_7_3", "mlp_1_3_2", 0.75}, {"E_11_2", "mlp_1_2_5", 1.0},
      // out of them to the features they brought in
      {"mlp_1_3_2", "1_300_3", 0.75}, {"mlp_1_2_5", "1_11_2", 1.0}, {"mlp_1_2_5", "1_12_2", 0.25},
      // the traced edges out of (3, 1) and (2, 1) now also start at the MLP's features
      {"1_100_3", "2_5_3", 0.75},    {"1_7_3", "2_5_3", 0.75},      {"1_300_3", "2_5_3", 0.75},
      {"1_11_2", "2_9_3", 1.0},      {"1_12_2", "2_9_3", 1.0}};
  EXPECT_EQ(links, expected);
  EXPECT_EQ(doc["links"].size(), expected.size());

  // Explanations label the MLP's features and, given, the transcoder feature; relabelling a graph exported
  // before them gives the same graph.
  auto in = sample_with_mlp();
  const std::map<std::pair<int, int>, std::string> explanations = {{{1, 300}, "three hundred"}};
  const std::map<std::pair<int, int>, std::string> transcoder = {{{1, 40}, "forty"}, {{1, 300}, "not this one"}};
  in.explanations = &explanations;
  in.transcoder_explanations = &transcoder;
  const json explained = attribution_graph_json(in);
  json relabelled = doc;
  EXPECT_EQ(relabel_attribution_graph(relabelled, explanations, "g.json", &transcoder), 2);
  EXPECT_EQ(relabelled, explained);
  std::map<std::string, json> labelled;
  for (const auto& n : explained["nodes"]) labelled[n["node_id"].get<std::string>()] = n;
  EXPECT_EQ(labelled.at("mlp_1_3_2")["clerp"], "forty");
  EXPECT_EQ(labelled.at("1_300_3")["clerp"], "three hundred");
  EXPECT_EQ(labelled.at("mlp_1_2_5")["clerp"], "MLP L1: reconstruction error");
  // Without transcoder explanations, relabelling leaves the MLP terms' labels as they are.
  EXPECT_EQ(relabel_attribution_graph(relabelled, {}, "g.json"), 1);
  EXPECT_EQ(relabelled["nodes"][11]["node_id"], "mlp_1_3_2");
  EXPECT_EQ(relabelled["nodes"][11]["clerp"], "forty");
}

TEST(AttributionExport, BadMlpVerticesAreRefused) {
  auto outside = sample_with_mlp();
  outside.mlp_path[0].layer = 3;
  EXPECT_THAT([&] { attribution_graph_json(outside); },
              ThrowsMessage<InputError>(HasSubstr("MLP vertex (2, 3) is not a token and analysed layer")));
  auto twice = sample_with_mlp();
  twice.mlp_path.push_back(twice.mlp_path[1]);
  EXPECT_THAT([&] { attribution_graph_json(twice); },
              ThrowsMessage<InputError>(HasSubstr("MLP step 2 of layer 1 at token 3 is given twice")));
  json doc = attribution_graph_json(sample_with_mlp());
  for (auto& n : doc["nodes"]) {
    if (n["node_id"] == "mlp_1_3_2") n["saetraj"].erase("transcoder_activation");
  }
  const std::map<std::pair<int, int>, std::string> none;
  EXPECT_THAT([&] { relabel_attribution_graph(doc, {}, "dir/g.json", &none); },
              ThrowsMessage<FormatError>(HasSubstr(
                  "dir/g.json: MLP node mlp_1_3_2 lacks its saetraj {mlp_term, transcoder_feature, transcoder_activation}")));
}

TEST(AttributionExport, NoSourceSetWithoutOne) {
  auto in = sample_input();
  in.source_set.clear();
  EXPECT_FALSE(attribution_graph_json(in)["metadata"].contains("feature_details"));
}

TEST(AttributionExport, InconsistentInputsAreRefused) {
  auto skip = sample_input();
  skip.traced.push_back(edge(1, 0, 3, 2, {{2, 11}}));
  EXPECT_THAT([&] { attribution_graph_json(skip); },
              ThrowsMessage<InputError>(HasSubstr("does not join two consecutive analysed layers")));
  auto outside = sample_input();
  outside.traced.push_back(edge(1, 1, 4, 2, {{2, 11}}));
  EXPECT_THAT([&] { attribution_graph_json(outside); },
              ThrowsMessage<InputError>(HasSubstr("leaves the prompt's 4 tokens")));
  auto twice = sample_input();
  twice.traced.push_back(edge(1, 1, 3, 2, {{2, 9}}));
  EXPECT_THAT([&] { attribution_graph_json(twice); },
              ThrowsMessage<InputError>(HasSubstr("feature 9 of layer 2 arrives twice at token 3")));
  auto ids = sample_input();
  ids.token_ids.pop_back();
  EXPECT_THAT([&] { attribution_graph_json(ids); }, ThrowsMessage<InputError>(HasSubstr("3 token ids for 4 tokens")));
}

TEST(AttributionExport, ScanFromNeuronpediaSaeIds) {
  const auto np = neuronpedia_scan({"gemma-2-2b/3-gemmascope-res-65k", "gemma-2-2b/5-gemmascope-res-65k"}, {3, 5}, "x");
  EXPECT_EQ(np.scan, "gemma-2-2b");
  EXPECT_EQ(np.source_set, "gemmascope-res-65k");
  const auto mixed =
      neuronpedia_scan({"gemma-2-2b/3-gemmascope-res-65k", "gemma-2-2b/5-gemmascope-res-16k"}, {3, 5}, "x");
  EXPECT_EQ(mixed.scan, "x");
  EXPECT_EQ(mixed.source_set, "");
  EXPECT_EQ(neuronpedia_scan({"gemma-2-2b/4-gemmascope-res-65k"}, {3}, "x").scan, "x");  // wrong layer
  EXPECT_EQ(neuronpedia_scan({"/data/saes/blocks.3"}, {3}, "x").scan, "x");
  EXPECT_EQ(neuronpedia_scan({"gpt2-small/3-res-jb"}, {3}, "x").source_set, "res-jb");
}

TEST(TrajectoryTable, HeaderAndRowsWrittenOutByHand) {
  EXPECT_EQ(trajectory_table_header({"heads_jump"}),
            "prompt,length,layer,source_token,distance_back,feature,final_position,traced,source_text,query_text,"
            "heads_jump\n");
  TrajectoryTablePrompt p;
  p.prompt = 7;
  p.tokens = {"<bos>", "say \"hi\"", "\n", "x\xFF"};
  p.traced = {edge(1, 0, 3, 1, {{0, 100}})};
  p.rows = {{4, 1, {1, 100, 0}}, {4, 1, {3, 8, 2}}, {3, 1, {1, 100, 1}}, {2, 0, {0, 5, 0}}};
  p.extras = {1.5, std::numeric_limits<double>::quiet_NaN(), -0.25, 3};
  EXPECT_EQ(trajectory_table_rows(p, 1),
            "7,4,1,1,2,100,0,1,\"say \"\"hi\"\"\",\"x\xEF\xBF\xBD\",1.5\n"
            "7,4,1,3,0,8,2,0,\"x\xEF\xBF\xBD\",\"x\xEF\xBF\xBD\",\n"
            "7,3,1,1,1,100,1,0,\"say \"\"hi\"\"\",\"\n\",-0.25\n"  // same feature, shorter length: not traced
            "7,2,0,0,1,5,0,0,\"<bos>\",\"say \"\"hi\"\"\",3\n");
}

TEST(TrajectoryTable, BadInputsAreRefused) {
  EXPECT_THAT([] { trajectory_table_header({"layer"}); },
              ThrowsMessage<InputError>(HasSubstr("column \"layer\" appears twice")));
  EXPECT_THAT([] { trajectory_table_header({""}); }, ThrowsMessage<InputError>(HasSubstr("empty name")));
  TrajectoryTablePrompt p;
  p.tokens = {"a", "b"};
  p.rows = {{2, 0, {1, 3, 0}}};
  EXPECT_THAT([&] { trajectory_table_rows(p, 1); },
              ThrowsMessage<InputError>(HasSubstr("0 extra values for 1 rows of 1 extra columns")));
  p.rows = {{3, 0, {1, 3, 0}}};
  EXPECT_THAT([&] { trajectory_table_rows(p, 0); },
              ThrowsMessage<InputError>(HasSubstr("does not fit the prompt's 2 tokens")));
}

TEST(ExportWriter, WritesTheTableTheGraphsAndTheirIndex) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/T3";
  ExportWriter w({dir, "demo", 3, {0, 1, 2}, {"gemma-2-2b", "gemmascope-res-65k"},
                  {{"generator", {{"name", "saetraj"}}}},
                  {"order_loo_source"},
                  {{{2, 5}, "five"}}});
  const auto in = sample_input();
  ExportPrompt p{0, in.prompt, in.tokens, in.token_ids, in.traced, {{4, 1, {1, 100, 0}}, {4, 1, {1, 7, 2}}},
                 {1, -1}, {}};
  w.add_prompt(p);
  p.prompt = 12;
  p.rows.clear();
  p.extras.clear();
  w.add_prompt(p);
  w.finish();
  EXPECT_EQ(read_file(dir + "/trajectories.csv"),
            trajectory_table_header({"order_loo_source"}) + "0,4,1,1,2,100,0,1,\"A\",\"C\",1\n" +
                "0,4,1,1,2,7,2,1,\"A\",\"C\",-1\n");
  const json index = json::parse(read_file(dir + "/attribution_graphs/graph-metadata.json"));
  ASSERT_EQ(index["graphs"].size(), 2u);
  EXPECT_EQ(index["graphs"][0]["slug"], "demo-T3-p0000");
  EXPECT_EQ(index["graphs"][1]["slug"], "demo-T3-p0012");
  const json graph = json::parse(read_file(dir + "/attribution_graphs/demo-T3-p0012.json"));
  EXPECT_EQ(graph["metadata"]["slug"], "demo-T3-p0012");
  EXPECT_EQ(graph["metadata"]["info"]["generator"]["name"], "saetraj");
  EXPECT_EQ(graph["links"].size(), 5u);
  EXPECT_EQ(graph["nodes"][6]["node_id"], "2_5_3");
  EXPECT_EQ(graph["nodes"][6]["clerp"], "five");
}

TEST(ExportWriter, RelabelsTheGraphsOfAFolder) {
  // The graphs an ExportWriter wrote without explanations, relabelled, are byte for byte those it writes
  // with them; the index is left alone.
  TempDir tmp;
  const std::map<std::pair<int, int>, std::string> explanations = {{{2, 5}, "five"}, {{1, 7}, "seven"}};
  const auto in = sample_input();
  for (const bool with : {false, true}) {
    ExportWriter w({tmp.path() + (with ? "/with" : "/without"), "demo", 3, {0, 1, 2}, {"gemma-2-2b", ""}, {}, {},
                    with ? explanations : std::map<std::pair<int, int>, std::string>{}});
    for (const int prompt : {0, 7}) w.add_prompt({prompt, in.prompt, in.tokens, in.token_ids, in.traced, {}, {}, {}});
    w.finish();
  }
  const std::string before = read_file(tmp.path() + "/without/attribution_graphs/demo-T3-p0007.json");
  EXPECT_EQ(relabel_attribution_graphs(tmp.path() + "/without", explanations), 2);
  for (const char* name : {"demo-T3-p0000.json", "demo-T3-p0007.json", "graph-metadata.json"}) {
    EXPECT_EQ(read_file(tmp.path() + "/without/attribution_graphs/" + name),
              read_file(tmp.path() + "/with/attribution_graphs/" + name))
        << name;
  }
  EXPECT_NE(read_file(tmp.path() + "/with/attribution_graphs/demo-T3-p0007.json"), before);
  saetraj::testing::write_file(tmp.path() + "/with/attribution_graphs/notes.json", "[1, 2");
  EXPECT_THAT([&] { relabel_attribution_graphs(tmp.path() + "/with", explanations); },
              ThrowsMessage<FormatError>(HasSubstr("notes.json: not an attribution graph (not a JSON object)")));
  EXPECT_THAT([&] { relabel_attribution_graphs(tmp.path() + "/none", explanations); },
              ThrowsMessage<IoError>(HasSubstr("cannot list " + tmp.path() + "/none/attribution_graphs")));
}

TEST(ExportWriter, UnwritableFolderIsAnIoError) {
  TempDir tmp;
  saetraj::testing::write_file(tmp.path() + "/file", "x");
  EXPECT_THAT([&] { ExportWriter w({tmp.path() + "/file/T3", "demo", 3, {0}, {}, {}, {}, {}}); },
              ThrowsMessage<IoError>(HasSubstr("cannot create")));
}

}  // namespace
}  // namespace saetraj::graph
