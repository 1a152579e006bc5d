#include "saetraj/graph/attribution_export.h"

#include <charconv>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::graph {

using nlohmann::json;

namespace {

std::string feature_node_id(int layer, int feature, int position) {
  return std::to_string(layer) + "_" + std::to_string(feature) + "_" + std::to_string(position);
}

std::string embedding_node_id(int32_t token_id, int position) {
  return "E_" + std::to_string(token_id) + "_" + std::to_string(position);
}

std::string probability_text(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", p);
  return buf;
}

}  // namespace

NeuronpediaScan neuronpedia_scan(const std::vector<std::string>& sae_ids, const std::vector<int>& layers,
                                 const std::string& fallback) {
  const NeuronpediaScan none{fallback, ""};
  if (sae_ids.empty() || sae_ids.size() != layers.size()) return none;
  NeuronpediaScan found;
  for (size_t i = 0; i < sae_ids.size(); ++i) {
    const std::string& id = sae_ids[i];
    const auto slash = id.find('/');
    const std::string prefix = std::to_string(layers[i]) + "-";
    if (slash == std::string::npos || slash == 0 || id.compare(slash + 1, prefix.size(), prefix) != 0) return none;
    const std::string model = id.substr(0, slash), set = id.substr(slash + 1 + prefix.size());
    if (set.empty() || set.find('/') != std::string::npos) return none;
    if (i == 0) found = {model, set};
    if (model != found.scan || set != found.source_set) return none;
  }
  return found;
}

int64_t cantor_feature(int layer, int feature) {
  SAETRAJ_CHECK(layer >= 0 && feature >= 0, InputError, "Cantor feature id needs layer >= 0 and index >= 0, got (",
                layer, ", ", feature, ")");
  const int64_t s = static_cast<int64_t>(layer) + feature;
  return s * (s + 1) / 2 + feature;
}

std::string viewer_token(const std::string& token) {
  std::string out;
  for (char c : sanitize_utf8(token)) {
    if (c == '\n') {
      out += "\u23CE";
    } else if (c == '\t') {
      out += "\u2192";
    } else if (c == '\r') {
      out += "\u21B5";
    } else {
      out += c;
    }
  }
  return out;
}

std::string feature_clerp(int layer, int feature, const std::string& source_label, int final_position,
                          const std::map<std::pair<int, int>, std::string>* explanations) {
  if (explanations) {
    const auto explained = explanations->find({layer, feature});
    if (explained != explanations->end()) return sanitize_utf8(explained->second);
  }
  return "L" + std::to_string(layer) + " #" + std::to_string(feature) + " from \"" + source_label + "\" (rank " +
         std::to_string(final_position) + ")";
}

int64_t relabel_attribution_graph(json& doc, const std::map<std::pair<int, int>, std::string>& explanations,
                                  const std::string& what) {
  const auto tokens = doc.contains("metadata") && doc["metadata"].is_object()
                          ? doc["metadata"].value("prompt_tokens", json::array())
                          : json::array();
  SAETRAJ_CHECK(doc.contains("nodes") && doc["nodes"].is_array(), FormatError, what, ": no \"nodes\" array");
  int64_t changed = 0;
  for (auto& node : doc["nodes"]) {
    if (node.value("feature_type", "") != "cross layer transcoder") continue;
    const auto& extra = node.value("saetraj", json::object());
    const bool complete = node.contains("layer") && node["layer"].is_string() && extra.is_object() &&
                          extra.contains("sae_index") && extra["sae_index"].is_number_integer() &&
                          extra.contains("source_token") && extra["source_token"].is_number_integer() &&
                          extra.contains("final_position") && extra["final_position"].is_number_integer();
    SAETRAJ_CHECK(complete, FormatError, what, ": feature node ", node.value("node_id", std::string("?")),
                  " lacks its layer or saetraj {sae_index, source_token, final_position}");
    const int source = extra["source_token"].get<int>();
    SAETRAJ_CHECK(source >= 0 && source < static_cast<int>(tokens.size()) && tokens[source].is_string(),
                  FormatError, what, ": feature node ", node.value("node_id", std::string("?")), "'s source token ",
                  source, " is not in metadata.prompt_tokens (", tokens.size(), " tokens)");
    const std::string layer_text = node["layer"].get<std::string>();
    int layer = -1;
    const auto [end, ec] = std::from_chars(layer_text.data(), layer_text.data() + layer_text.size(), layer);
    SAETRAJ_CHECK(ec == std::errc() && end == layer_text.data() + layer_text.size() && layer >= 0, FormatError, what,
                  ": feature node ", node.value("node_id", std::string("?")), " has layer \"", layer_text,
                  "\", not a layer number");
    const std::string clerp = feature_clerp(layer, extra["sae_index"].get<int>(), tokens[source].get<std::string>(),
                                            extra["final_position"].get<int>(), &explanations);
    if (node.value("clerp", "") != clerp) {
      node["clerp"] = clerp;
      ++changed;
    }
  }
  return changed;
}

json attribution_graph_json(const AttributionGraphInput& in) {
  const int n = static_cast<int>(in.tokens.size());
  SAETRAJ_CHECK(in.token_ids.size() == in.tokens.size(), InputError, "attribution graph ", in.slug, ": ",
                in.token_ids.size(), " token ids for ", in.tokens.size(), " tokens");
  SAETRAJ_CHECK(!in.layers.empty(), InputError, "attribution graph ", in.slug, ": no analysed layers");
  std::map<int, int> previous_layer;  // analysed layer -> the analysed layer before it
  for (size_t i = 1; i < in.layers.size(); ++i) previous_layer[in.layers[i]] = in.layers[i - 1];

  // Feature nodes at each vertex (token, layer): the trajectories the traced graph brings there.
  std::map<std::pair<int, int>, std::vector<std::string>> arrivals;
  json features = json::array();
  std::set<std::string> seen;
  for (const auto& e : in.traced) {
    SAETRAJ_CHECK(e.from_token >= 0 && e.from_token < n && e.to_token >= 0 && e.to_token < n, InputError,
                  "attribution graph ", in.slug, ": edge (", e.from_token, ", ", e.from_layer, ") -> (", e.to_token,
                  ", ", e.to_layer, ") leaves the prompt's ", n, " tokens");
    const auto prev = previous_layer.find(e.to_layer);
    SAETRAJ_CHECK(prev != previous_layer.end() && prev->second == e.from_layer, InputError, "attribution graph ",
                  in.slug, ": edge (", e.from_token, ", ", e.from_layer, ") -> (", e.to_token, ", ", e.to_layer,
                  ") does not join two consecutive analysed layers");
    for (const auto& [final_position, feature] : e.trajectories) {
      const std::string id = feature_node_id(e.to_layer, feature, e.to_token);
      SAETRAJ_CHECK(seen.insert(id).second, InputError, "attribution graph ", in.slug, ": feature ", feature,
                    " of layer ", e.to_layer, " arrives twice at token ", e.to_token);
      arrivals[{e.to_token, e.to_layer}].push_back(id);
      features.push_back({{"node_id", id},
                          {"feature", cantor_feature(e.to_layer, feature)},
                          {"layer", std::to_string(e.to_layer)},
                          {"ctx_idx", e.to_token},
                          {"feature_type", "cross layer transcoder"},
                          {"jsNodeId", id},
                          {"clerp", feature_clerp(e.to_layer, feature, viewer_token(in.tokens[e.from_token]),
                                                  final_position, in.explanations)},
                          {"influence", nullptr},
                          {"activation", nullptr},
                          {"saetraj",
                           {{"sae_index", feature},
                            {"source_token", e.from_token},
                            {"final_position", final_position},
                            {"prompt_length", e.to_token + 1}}}});
    }
  }

  json nodes = json::array();
  for (int pos = 0; pos < n; ++pos) {
    const std::string id = embedding_node_id(in.token_ids[pos], pos);
    nodes.push_back({{"node_id", id}, {"feature", pos}, {"layer", "E"}, {"ctx_idx", pos},
                     {"feature_type", "embedding"}, {"jsNodeId", id}, {"clerp", ""}});
  }
  for (auto& f : features) nodes.push_back(std::move(f));
  if (!in.logits.empty()) {
    const std::string layer = std::to_string(in.layers.back() + 1);
    for (size_t i = 0; i < in.logits.size(); ++i) {
      const auto& l = in.logits[i];
      const std::string id = layer + "_" + std::to_string(l.token_id) + "_" + std::to_string(n - 1);
      nodes.push_back({{"node_id", id},
                       {"feature", l.token_id},
                       {"layer", layer},
                       {"ctx_idx", n - 1},
                       {"feature_type", "logit"},
                       {"jsNodeId", id},
                       {"clerp", "Output \"" + viewer_token(l.text) + "\" (p=" + probability_text(l.probability) + ")"},
                       {"token_prob", l.probability},
                       {"is_target_logit", i == 0}});
    }
  }

  json links = json::array();
  const double denominator = in.top_t + 1.0;
  for (const auto& e : in.traced) {
    const auto source_features = arrivals.find({e.from_token, e.from_layer});
    const std::vector<std::string> sources =
        source_features != arrivals.end() ? source_features->second
                                          : std::vector<std::string>{embedding_node_id(in.token_ids[e.from_token],
                                                                                       e.from_token)};
    for (const auto& [final_position, feature] : e.trajectories) {
      const std::string target = feature_node_id(e.to_layer, feature, e.to_token);
      const double weight = (denominator - final_position) / denominator;
      for (const auto& source : sources) links.push_back({{"source", source}, {"target", target}, {"weight", weight}});
    }
  }

  std::vector<std::string> prompt_tokens;
  for (const auto& t : in.tokens) prompt_tokens.push_back(viewer_token(t));
  json metadata = {{"slug", in.slug},
                   {"scan", in.scan},
                   {"prompt_tokens", prompt_tokens},
                   {"prompt", sanitize_utf8(in.prompt)},
                   {"schema_version", 1},
                   {"transcoder_list", json::array()},
                   {"info", in.info},
                   {"generation_settings", {{"top_t", in.top_t}, {"layers", in.layers}}}};
  if (!in.source_set.empty()) metadata["feature_details"] = {{"neuronpedia_source_set", in.source_set}};
  return {{"metadata", std::move(metadata)},
          {"qParams",
           {{"pinnedIds", json::array()}, {"supernodes", json::array()}, {"linkType", "both"}, {"clickedId", ""},
            {"sg_pos", ""}}},
          {"nodes", std::move(nodes)},
          {"links", std::move(links)}};
}

void write_json_file(const std::string& path, const json& doc, const std::string& what) {
  const std::string text = doc.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
  std::ofstream out(path, std::ios::binary);
  SAETRAJ_CHECK(out.is_open(), IoError, "cannot open ", path, " for writing ", what);
  out << text;
  out.close();
  SAETRAJ_CHECK(!out.fail(), IoError, "writing ", what, " to ", path, " failed");
}

}  // namespace saetraj::graph
