#include "saetraj/graph/attribution_export.h"

#include <algorithm>
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

std::string mlp_node_id(int layer, int position, int step) {
  return "mlp_" + std::to_string(layer) + "_" + std::to_string(position) + "_" + std::to_string(step);
}

// The explanation of (layer, feature) in `explanations` (may be null), else `label`.
std::string explained_or(int layer, int feature, std::string label,
                         const std::map<std::pair<int, int>, std::string>* explanations) {
  if (explanations) {
    const auto explained = explanations->find({layer, feature});
    if (explained != explanations->end()) return sanitize_utf8(explained->second);
  }
  return label;
}

std::string mlp_feature_clerp(int layer, int feature, int final_position,
                              const std::map<std::pair<int, int>, std::string>* explanations) {
  return explained_or(layer, feature,
                      "L" + std::to_string(layer) + " #" + std::to_string(feature) + " from the MLP (rank " +
                          std::to_string(final_position) + ")",
                      explanations);
}

// A feature node (NOTE in the header): SAE feature `feature` of `layer` at `token`, brought in by what
// `origin` says (source_token or mlp_step) at rank `final_position`.
json feature_node(int layer, int feature, int token, std::string clerp, std::pair<const char*, int> origin,
                  int final_position) {
  const std::string id = feature_node_id(layer, feature, token);
  return {{"node_id", id},
          {"feature", cantor_feature(layer, feature)},
          {"layer", std::to_string(layer)},
          {"ctx_idx", token},
          {"feature_type", "cross layer transcoder"},
          {"jsNodeId", id},
          {"clerp", std::move(clerp)},
          {"influence", nullptr},
          {"activation", nullptr},
          {"saetraj",
           {{"sae_index", feature}, {origin.first, origin.second}, {"final_position", final_position},
            {"prompt_length", token + 1}}}};
}

bool is_int(const json& extra, const char* key) { return extra.contains(key) && extra[key].is_number_integer(); }

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
  return explained_or(layer, feature,
                      "L" + std::to_string(layer) + " #" + std::to_string(feature) + " from \"" + source_label +
                          "\" (rank " + std::to_string(final_position) + ")",
                      explanations);
}

std::string mlp_clerp(int layer, const std::string& term, int transcoder_feature, double activation,
                      const std::map<std::pair<int, int>, std::string>* explanations) {
  const std::string prefix = "MLP L" + std::to_string(layer) + ": ";
  if (term == "feature") {
    char act[32];
    std::snprintf(act, sizeof act, "%.3g", activation);
    return explained_or(layer, transcoder_feature,
                        prefix + "transcoder #" + std::to_string(transcoder_feature) + " (act " + act + ")",
                        explanations);
  }
  if (term == "skip") return prefix + "skip term";
  if (term == "error") return prefix + "reconstruction error";
  return prefix + term;
}

int64_t relabel_attribution_graph(json& doc, const std::map<std::pair<int, int>, std::string>& explanations,
                                  const std::string& what,
                                  const std::map<std::pair<int, int>, std::string>* transcoder_explanations) {
  const auto tokens = doc.contains("metadata") && doc["metadata"].is_object()
                          ? doc["metadata"].value("prompt_tokens", json::array())
                          : json::array();
  SAETRAJ_CHECK(doc.contains("nodes") && doc["nodes"].is_array(), FormatError, what, ": no \"nodes\" array");
  int64_t changed = 0;
  for (auto& node : doc["nodes"]) {
    const std::string type = node.value("feature_type", "");
    const bool mlp = type == "mlp reconstruction error" && node.contains("saetraj");
    if (type != "cross layer transcoder" && !(mlp && transcoder_explanations)) continue;
    const std::string id = node.value("node_id", std::string("?"));
    const auto& extra = node.value("saetraj", json::object());
    const auto layer_of = [&] {
      SAETRAJ_CHECK(node.contains("layer") && node["layer"].is_string(), FormatError, what, ": ",
                    mlp ? "MLP node " : "feature node ", id, " lacks its layer");
      const std::string layer_text = node["layer"].get<std::string>();
      int layer = -1;
      const auto [end, ec] = std::from_chars(layer_text.data(), layer_text.data() + layer_text.size(), layer);
      SAETRAJ_CHECK(ec == std::errc() && end == layer_text.data() + layer_text.size() && layer >= 0, FormatError,
                    what, ": ", mlp ? "MLP node " : "feature node ", id, " has layer \"", layer_text,
                    "\", not a layer number");
      return layer;
    };
    std::string clerp;
    if (mlp) {
      const bool complete = extra.is_object() && extra.contains("mlp_term") && extra["mlp_term"].is_string() &&
                            extra.contains("transcoder_feature") && extra.contains("transcoder_activation");
      SAETRAJ_CHECK(complete, FormatError, what, ": MLP node ", id,
                    " lacks its saetraj {mlp_term, transcoder_feature, transcoder_activation}");
      const std::string term = extra["mlp_term"].get<std::string>();
      const bool feature = term == "feature";
      SAETRAJ_CHECK(!feature || (is_int(extra, "transcoder_feature") && extra["transcoder_activation"].is_number()),
                    FormatError, what, ": MLP node ", id, " is a transcoder feature without its index or activation");
      clerp = mlp_clerp(layer_of(), term, feature ? extra["transcoder_feature"].get<int>() : -1,
                        feature ? extra["transcoder_activation"].get<double>() : 0.0, transcoder_explanations);
    } else {
      const bool complete = node.contains("layer") && node["layer"].is_string() && extra.is_object() &&
                            is_int(extra, "sae_index") && is_int(extra, "final_position") &&
                            (is_int(extra, "source_token") || is_int(extra, "mlp_step"));
      SAETRAJ_CHECK(complete, FormatError, what, ": feature node ", id,
                    " lacks its layer or saetraj {sae_index, source_token, final_position}");
      const int layer = layer_of();
      if (is_int(extra, "source_token")) {
        const int source = extra["source_token"].get<int>();
        SAETRAJ_CHECK(source >= 0 && source < static_cast<int>(tokens.size()) && tokens[source].is_string(),
                      FormatError, what, ": feature node ", id, "'s source token ", source,
                      " is not in metadata.prompt_tokens (", tokens.size(), " tokens)");
        clerp = feature_clerp(layer, extra["sae_index"].get<int>(), tokens[source].get<std::string>(),
                              extra["final_position"].get<int>(), &explanations);
      } else {
        clerp = mlp_feature_clerp(layer, extra["sae_index"].get<int>(), extra["final_position"].get<int>(),
                                  &explanations);
      }
    }
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
      features.push_back(feature_node(e.to_layer, feature, e.to_token,
                                      feature_clerp(e.to_layer, feature, viewer_token(in.tokens[e.from_token]),
                                                    final_position, in.explanations),
                                      {"source_token", e.from_token}, final_position));
    }
  }

  // The MLP path's nodes (NOTE above): its terms, the features they brought in, and the links between.
  json mlp_nodes = json::array();
  json mlp_links = json::array();
  const std::set<int> analysed(in.layers.begin(), in.layers.end());
  std::map<std::pair<int, int>, std::vector<std::string>> mlp_arrivals;
  for (const auto& v : in.mlp_path) {
    SAETRAJ_CHECK(v.token >= 0 && v.token < n && analysed.count(v.layer), InputError, "attribution graph ",
                  in.slug, ": MLP vertex (", v.token, ", ", v.layer, ") is not a token and analysed layer of the graph");
    const std::string id = mlp_node_id(v.layer, v.token, v.step);
    SAETRAJ_CHECK(seen.insert(id).second, InputError, "attribution graph ", in.slug, ": MLP step ", v.step,
                  " of layer ", v.layer, " at token ", v.token, " is given twice");
    const bool feature = v.term == "feature";
    mlp_nodes.push_back({{"node_id", id},
                         {"feature", -1},  // circuit-tracer's error nodes: never a feature index
                         {"layer", std::to_string(v.layer)},
                         {"ctx_idx", v.token},
                         {"feature_type", "mlp reconstruction error"},
                         {"jsNodeId", id},
                         {"clerp", mlp_clerp(v.layer, v.term, v.transcoder_feature, v.transcoder_activation,
                                             in.transcoder_explanations)},
                         {"influence", nullptr},
                         {"activation", feature ? json(v.transcoder_activation) : json(nullptr)},
                         {"saetraj",
                          {{"mlp_term", v.term},
                           {"transcoder_feature", feature ? json(v.transcoder_feature) : json(nullptr)},
                           {"transcoder_activation", feature ? json(v.transcoder_activation) : json(nullptr)},
                           {"step", v.step},
                           {"steps", v.steps}}}});
    const double denominator = in.top_t + 1.0;
    int best = in.top_t + 1;
    for (const auto& [final_position, f] : v.features) {
      best = std::min(best, final_position);
      const std::string fid = feature_node_id(v.layer, f, v.token);
      if (seen.insert(fid).second) {
        mlp_nodes.push_back(feature_node(v.layer, f, v.token,
                                         mlp_feature_clerp(v.layer, f, final_position, in.explanations),
                                         {"mlp_step", v.step}, final_position));
        mlp_arrivals[{v.token, v.layer}].push_back(fid);
      }
      mlp_links.push_back({{"source", id}, {"target", fid}, {"weight", (denominator - final_position) / denominator}});
    }
    // Into the MLP term: what attention brought to (t, l), else the token itself.
    const auto attended = arrivals.find({v.token, v.layer});
    const std::vector<std::string> sources = attended != arrivals.end()
                                                 ? attended->second
                                                 : std::vector<std::string>{embedding_node_id(in.token_ids[v.token], v.token)};
    for (const auto& source : sources) {
      mlp_links.push_back({{"source", source}, {"target", id}, {"weight", (denominator - best) / denominator}});
    }
  }
  for (auto& [vertex, ids] : mlp_arrivals) {
    auto& all = arrivals[vertex];
    all.insert(all.end(), ids.begin(), ids.end());
  }

  json nodes = json::array();
  for (int pos = 0; pos < n; ++pos) {
    const std::string id = embedding_node_id(in.token_ids[pos], pos);
    nodes.push_back({{"node_id", id}, {"feature", pos}, {"layer", "E"}, {"ctx_idx", pos},
                     {"feature_type", "embedding"}, {"jsNodeId", id}, {"clerp", ""}});
  }
  for (auto& f : features) nodes.push_back(std::move(f));
  for (auto& m : mlp_nodes) nodes.push_back(std::move(m));
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

  json links = std::move(mlp_links);
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
