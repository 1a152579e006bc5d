#include "saetraj/graph/graph_json.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include "saetraj/core/error.h"

namespace saetraj::graph {

using nlohmann::json;

namespace {

json vertex_json(int token, int layer) { return json::array({token, layer}); }

// `where` is "<source>: edges[3]" and the like, so that every message names the file and the spot.
const json& member(const json& object, const char* key, const std::string& where) {
  SAETRAJ_CHECK(object.is_object(), FormatError, where, ": expected a JSON object but found ",
                object.type_name());
  const auto it = object.find(key);
  SAETRAJ_CHECK(it != object.end(), FormatError, where, ": missing key \"", key, "\"");
  return *it;
}

int as_int(const json& value, const std::string& what) {
  SAETRAJ_CHECK(value.is_number_integer(), FormatError, what, ": expected an integer but found ",
                value.type_name(), " ", value.dump());
  const bool fits = value.is_number_unsigned()
                        ? value.get<uint64_t>() <= static_cast<uint64_t>(INT_MAX)
                        : value.get<int64_t>() >= INT_MIN && value.get<int64_t>() <= INT_MAX;
  SAETRAJ_CHECK(fits, FormatError, what, ": integer ", value.dump(), " does not fit in 32 bits");
  return value.get<int>();
}

int int_member(const json& object, const char* key, const std::string& where) {
  return as_int(member(object, key, where), where + ": \"" + key + "\"");
}

const json& array_member(const json& object, const char* key, const std::string& where) {
  const json& value = member(object, key, where);
  SAETRAJ_CHECK(value.is_array(), FormatError, where, ": \"", key, "\" should be an array but is ",
                value.type_name());
  return value;
}

// "from"/"to": [token, layer] with 0 <= token < prompt_length and layer >= 0.
std::pair<int, int> vertex_member(const json& edge, const char* key, int prompt_length,
                                  const std::string& where) {
  const json& v = array_member(edge, key, where);
  const std::string what = where + ": \"" + key + "\"";
  SAETRAJ_CHECK(v.size() == 2, FormatError, what, ": expected [token, layer] but found ", v.size(),
                " entries");
  const int token = as_int(v[0], what + " token"), layer = as_int(v[1], what + " layer");
  SAETRAJ_CHECK(token >= 0 && token < prompt_length, FormatError, what, ": token ", token, " is outside 0..",
                prompt_length - 1);
  SAETRAJ_CHECK(layer >= 0, FormatError, what, ": layer ", layer, " is negative");
  return {token, layer};
}

Edge edge_from_json(const json& j, int prompt_length, const std::string& where) {
  Edge e;
  std::tie(e.from_token, e.from_layer) = vertex_member(j, "from", prompt_length, where);
  std::tie(e.to_token, e.to_layer) = vertex_member(j, "to", prompt_length, where);
  e.num_trajectories = int_member(j, "num_trajectories", where);
  e.best_final_position = int_member(j, "best_final_position", where);
  const json& all = array_member(j, "all_trajectories", where);
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string at = where + ": all_trajectories[" + std::to_string(i) + "]";
    const int rank = int_member(all[i], "final_position", at), feature = int_member(all[i], "sae_index", at);
    SAETRAJ_CHECK(rank >= 0 && feature >= 0, FormatError, at,
                  ": expected final_position and sae_index >= 0 but found ", rank, " and ", feature);
    e.trajectories.emplace_back(rank, feature);
  }
  SAETRAJ_CHECK(e.num_trajectories == static_cast<int>(e.trajectories.size()), FormatError, where,
                ": num_trajectories is ", e.num_trajectories, " but all_trajectories holds ",
                e.trajectories.size(), " entries");
  if (e.trajectories.empty()) {
    // The original code's 0 (what saetraj writes), or the -1 that older saetraj versions wrote.
    SAETRAJ_CHECK(e.best_final_position == 0 || e.best_final_position == -1, FormatError, where,
                  ": best_final_position is ", e.best_final_position,
                  " but an edge without trajectories carries 0 (or -1, as older saetraj files do)");
    e.best_final_position = -1;
    return e;
  }
  int best = e.trajectories.front().first;
  for (const auto& [rank, feature] : e.trajectories) best = std::min(best, rank);
  SAETRAJ_CHECK(e.best_final_position == best, FormatError, where, ": best_final_position is ",
                e.best_final_position, " but the trajectories give ", best, " (the smallest final_position)");
  return e;
}

}  // namespace

json graph_to_json(const GraphDocument& doc) {
  SAETRAJ_CHECK(static_cast<int>(doc.tokens.size()) == doc.prompt_length, InputError,
                "graph of prompt_length ", doc.prompt_length, " needs ", doc.prompt_length,
                " token strings but has ", doc.tokens.size());
  json edges = json::array();
  for (const Edge& e : doc.edges) {
    json all = json::array();
    for (const auto& [rank, feature] : e.trajectories) {
      json entry = {{"final_position", rank}, {"sae_index", feature}};
      if (doc.extras) {
        const json extra = doc.extras(e, rank, feature);
        if (extra.is_object()) entry.update(extra);
      }
      all.push_back(std::move(entry));
    }
    edges.push_back({{"from", vertex_json(e.from_token, e.from_layer)},
                     {"to", vertex_json(e.to_token, e.to_layer)},
                     {"num_trajectories", e.num_trajectories},
                     {"best_final_position", e.trajectories.empty() ? 0 : e.best_final_position},
                     {"all_trajectories", std::move(all)}});
  }
  return {{"prompt_length", doc.prompt_length},
          {"tokens", doc.tokens},
          {"metadata", doc.metadata},
          {"edges", std::move(edges)}};
}

GraphDocument graph_from_json(const json& j, const std::string& source) {
  GraphDocument doc;
  doc.prompt_length = int_member(j, "prompt_length", source);
  SAETRAJ_CHECK(doc.prompt_length >= 1, FormatError, source, ": prompt_length should be >= 1 but is ",
                doc.prompt_length);
  const json& tokens = array_member(j, "tokens", source);
  SAETRAJ_CHECK(tokens.size() == static_cast<size_t>(doc.prompt_length), FormatError, source, ": expected ",
                doc.prompt_length, " tokens (prompt_length) but found ", tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    SAETRAJ_CHECK(tokens[i].is_string(), FormatError, source, ": tokens[", i, "] should be a string but is ",
                  tokens[i].type_name());
    doc.tokens.push_back(tokens[i].get<std::string>());
  }
  doc.metadata = member(j, "metadata", source);
  SAETRAJ_CHECK(doc.metadata.is_object(), FormatError, source, ": \"metadata\" should be an object but is ",
                doc.metadata.type_name());
  const json& edges = array_member(j, "edges", source);
  for (size_t i = 0; i < edges.size(); ++i) {
    doc.edges.push_back(
        edge_from_json(edges[i], doc.prompt_length, source + ": edges[" + std::to_string(i) + "]"));
  }
  return doc;
}

void write_graph_json(const std::string& path, const GraphDocument& doc) {
  const std::string text = graph_to_json(doc).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  std::ofstream out(path, std::ios::binary);
  SAETRAJ_CHECK(out.is_open(), IoError, "cannot open ", path, " for writing the graph JSON");
  out << text;
  out.close();
  SAETRAJ_CHECK(!out.fail(), IoError, "writing the graph JSON to ", path, " failed");
}

GraphDocument read_graph_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SAETRAJ_CHECK(in.is_open(), IoError, "cannot open graph JSON ", path);
  std::ostringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw FormatError(str(path, ": not valid JSON: ", e.what()));
  }
  return graph_from_json(j, path);
}

}  // namespace saetraj::graph
