#include "saetraj/graph/graphml.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::graph {

namespace {

// Token strings are arbitrary bytes (byte-level BPE pieces, control characters). XML 1.0 forbids C0
// controls other than tab/LF/CR and U+FFFE/U+FFFF even as character references, so those become U+FFFD;
// tab/LF/CR are written as references so that parsers do not normalise them away.
const char* escape_for(unsigned char c) {
  static const std::pair<unsigned char, const char*> table[] = {
      {'&', "&amp;"},   {'<', "&lt;"},  {'>', "&gt;"},   {'"', "&quot;"},
      {'\'', "&apos;"}, {'\t', "&#9;"}, {'\n', "&#10;"}, {'\r', "&#13;"}};
  for (const auto& [from, to] : table) {
    if (c == from) return to;
  }
  return c < 0x20 ? "\xEF\xBF\xBD" : nullptr;
}

std::string xml_text(const std::string& raw) {
  const std::string text = sanitize_utf8(raw);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (const char* escaped = escape_for(c)) {
      out += escaped;
    } else if (c == 0xEF && i + 2 < text.size() && text[i + 1] == '\xBF' &&
               (text[i + 2] == '\xBE' || text[i + 2] == '\xBF')) {
      out += "\xEF\xBF\xBD";  // U+FFFE or U+FFFF
      i += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string node_id(int token, int layer) { return str("t", token, "_l", layer); }

std::string mlp_node_id(const MlpPathVertex& v) { return str("mlp_t", v.token, "_l", v.layer, "_s", v.step); }

}  // namespace

std::string graph_to_graphml(const std::vector<Edge>& edges, const std::vector<std::string>& tokens,
                             const std::vector<MlpPathVertex>& mlp_path) {
  std::set<std::pair<int, int>> nodes;  // (layer, token): layer by layer, as the graph is drawn
  for (const Edge& e : edges) {
    for (const auto& [token, layer] :
         {std::pair{e.from_token, e.from_layer}, std::pair{e.to_token, e.to_layer}}) {
      SAETRAJ_CHECK(token >= 0 && static_cast<size_t>(token) < tokens.size(), InputError, "edge endpoint (",
                    token, ", ", layer, ") names a token outside the prompt's ", tokens.size(), " tokens");
      nodes.insert({layer, token});
    }
  }

  for (const auto& v : mlp_path) {
    SAETRAJ_CHECK(nodes.count({v.layer, v.token}), InputError, "MLP vertex (", v.token, ", ", v.layer,
                  ") is not an endpoint of the graph's edges");
  }
  const bool mlp = !mlp_path.empty();

  std::ostringstream x;
  x << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\" "
       "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
       "xsi:schemaLocation=\"http://graphml.graphdrawing.org/xmlns "
       "http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n"
    << "  <key id=\"token\" for=\"node\" attr.name=\"token\" attr.type=\"int\"/>\n"
    << "  <key id=\"layer\" for=\"node\" attr.name=\"layer\" attr.type=\"int\"/>\n"
    << "  <key id=\"token_text\" for=\"node\" attr.name=\"token_text\" attr.type=\"string\"/>\n"
    << "  <key id=\"num_trajectories\" for=\"edge\" attr.name=\"num_trajectories\" attr.type=\"int\"/>\n"
    << "  <key id=\"best_final_position\" for=\"edge\" attr.name=\"best_final_position\" "
       "attr.type=\"int\"/>\n"
    << "  <key id=\"features\" for=\"edge\" attr.name=\"features\" attr.type=\"string\"/>\n";
  if (mlp) {
    x << "  <key id=\"kind\" for=\"node\" attr.name=\"kind\" attr.type=\"string\"/>\n"
      << "  <key id=\"mlp_term\" for=\"node\" attr.name=\"mlp_term\" attr.type=\"string\"/>\n"
      << "  <key id=\"transcoder_feature\" for=\"node\" attr.name=\"transcoder_feature\" attr.type=\"int\"/>\n"
      << "  <key id=\"transcoder_activation\" for=\"node\" attr.name=\"transcoder_activation\" "
         "attr.type=\"double\"/>\n"
      << "  <key id=\"step\" for=\"node\" attr.name=\"step\" attr.type=\"int\"/>\n"
      << "  <key id=\"steps\" for=\"node\" attr.name=\"steps\" attr.type=\"int\"/>\n";
  }
  x << "  <graph id=\"trajectories\" edgedefault=\"directed\">\n";
  const auto node_data = [&](int token, int layer) {
    x << "<data key=\"token\">" << token << "</data>"
      << "<data key=\"layer\">" << layer << "</data>"
      << "<data key=\"token_text\">" << xml_text(tokens[static_cast<size_t>(token)]) << "</data>";
  };
  for (const auto& [layer, token] : nodes) {
    x << "    <node id=\"" << node_id(token, layer) << "\">";
    node_data(token, layer);
    if (mlp) x << "<data key=\"kind\">vertex</data>";
    x << "</node>\n";
  }
  for (const auto& v : mlp_path) {
    x << "    <node id=\"" << mlp_node_id(v) << "\">";
    node_data(v.token, v.layer);
    x << "<data key=\"kind\">mlp</data><data key=\"mlp_term\">" << xml_text(v.term) << "</data>"
      << "<data key=\"transcoder_feature\">" << (v.term == "feature" ? v.transcoder_feature : -1) << "</data>";
    if (v.term == "feature") {
      x << "<data key=\"transcoder_activation\">" << nlohmann::json(v.transcoder_activation).dump() << "</data>";
    }
    x << "<data key=\"step\">" << v.step << "</data><data key=\"steps\">" << v.steps << "</data></node>\n";
  }
  const auto edge = [&](const std::string& source, const std::string& target, int count, int best,
                        const std::vector<std::pair<int, int>>& trajectories) {
    std::string features;
    for (const auto& [rank, feature] : trajectories) features += (features.empty() ? "" : " ") + std::to_string(feature);
    x << "    <edge source=\"" << source << "\" target=\"" << target << "\">"
      << "<data key=\"num_trajectories\">" << count << "</data>"
      << "<data key=\"best_final_position\">" << best << "</data>";
    // An empty <data> element reads back as a missing value anyway (networkx skips it), so say so plainly.
    if (!features.empty()) x << "<data key=\"features\">" << features << "</data>";
    x << "</edge>\n";
  };
  for (const Edge& e : edges) {
    edge(node_id(e.from_token, e.from_layer), node_id(e.to_token, e.to_layer), e.num_trajectories,
         e.best_final_position, e.trajectories);
  }
  for (const auto& v : mlp_path) {
    int best = -1;
    for (const auto& [rank, feature] : v.features) best = best < 0 ? rank : std::min(best, rank);
    edge(mlp_node_id(v), node_id(v.token, v.layer), static_cast<int>(v.features.size()), best, v.features);
  }
  x << "  </graph>\n</graphml>\n";
  return x.str();
}

void write_graphml(const std::string& path, const std::vector<Edge>& edges, const std::vector<std::string>& tokens,
                   const std::vector<MlpPathVertex>& mlp_path) {
  const std::string text = graph_to_graphml(edges, tokens, mlp_path);
  std::ofstream out(path, std::ios::binary);
  SAETRAJ_CHECK(out.is_open(), IoError, "cannot open ", path, " for writing the GraphML graph");
  out << text;
  out.close();
  SAETRAJ_CHECK(!out.fail(), IoError, "writing the GraphML graph to ", path, " failed");
}

}  // namespace saetraj::graph
