// A prompt's traced graph (SPEC 1.5) in the attribution-graph JSON that Neuronpedia's graph viewer and
// circuit-tracer's local server read (Neuronpedia's apps/webapp/app/api/graph/graph-schema.json, draft-07;
// circuit-tracer's frontend/graph_models.py): {"metadata", "qParams", "nodes", "links"}.
//
// [NOTE] How trajectories map onto an attribution graph
// An attribution graph has feature nodes at (layer, position), one embedding node per prompt token, logit
// nodes at the last position, and weighted links between them. saetraj's traced graph has vertices
// (token, layer) and edges (j, p) -> (t, l) that carry trajectories: SAE features of layer l that entered
// the top-k list at position t when token j's attention contribution was added. The export makes
//   - one embedding node per token: node_id "E_<token id>_<pos>", layer "E", feature = pos;
//   - one feature node per trajectory of the traced graph: node_id "<l>_<f>_<t>", layer "<l>", ctx_idx t,
//     feature = the Cantor pair of (l, f) (metadata.schema_version 1, the encoding Neuronpedia decodes back
//     into layer and index), feature_type "cross layer transcoder" (the only feature kind both viewers
//     draw as a feature; the SAE id is in metadata.info), clerp the feature's explanation when the sweep
//     file has one (after `saetraj explain`), else a saetraj label, and under "saetraj" the source token,
//     final position and prompt length;
//   - one link per (source node, trajectory) of each traced edge (j, p) -> (t, l): from every feature node
//     at (p, j) (the features that themselves arrived at token j's vertex in the traced graph), or from
//     token j's embedding node when none did;
//   - logit nodes for the readout's top tokens when the last analysed layer is the model's last layer
//     (then the readout is the model's own next-token distribution), with no links.
// With the MLP path (sweep --mlp-transcoder; metadata.mlp_path of traced.json), each MLP vertex (the term
// that step s of layer l's MLP path at token t added) becomes
//   - one node "mlp_<l>_<t>_<s>", layer "<l>", ctx_idx t, feature_type "mlp reconstruction error" (the
//     viewers' one kind of MLP-output node; it is never looked up in a feature source, so a transcoder
//     feature is not mistaken for the SAE feature of the same index), feature -1 (as circuit-tracer's error
//     nodes), clerp "MLP L<l>:
//     transcoder #<f> (act 0.53)" (or its explanation, after `saetraj explain`), "MLP L<l>: bias", "... skip
//     term" or "... reconstruction error", and under "saetraj" {mlp_term, transcoder_feature,
//     transcoder_activation, step, steps};
//   - one feature node per SAE feature that step brought into resid_post's top T + 1 (as above, with
//     saetraj {sae_index, mlp_step, final_position, prompt_length} and no source token; clerp "L<l> #<f>
//     from the MLP (rank r)" or the explanation), linked from the MLP node;
//   - links into the MLP node from the feature nodes that arrived at (t, l) through attention, or from token
//     t's embedding node when none did (the MLP reads resid_mid there), weighted by its best feature's rank
//     score;
//   - and those features join (t, l)'s arrivals: the traced edges out of (t, l) link from them too, so that a
//     path runs token -> attention -> feature -> MLP term -> feature -> the next layer.
// What does not map: link weights are not attributions. saetraj measures no effect of one feature on
// another; a link's weight is the target trajectory's rank score (T + 1 - final_position) / (T + 1), so
// that the viewers' widths and orderings follow the final rank, the quantity saetraj filters on. Nodes
// carry no influence (the viewers' pruning slider stays off) and no activation. 0-trajectory edges (the
// spine and vertical edges) carry nothing to link and are left out.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "saetraj/graph/trajectory_graph.h"

namespace saetraj::graph {

struct LogitEntry {
  int token_id = 0;
  std::string text;
  double probability = 0.0;
};

struct AttributionGraphInput {
  std::string slug;                     // the graph's name in the viewers (and its file name, slug.json)
  std::string scan;                     // Neuronpedia model id (metadata.scan)
  std::string source_set;               // Neuronpedia source set ("gemmascope-res-65k"); "" when unknown
  std::string prompt;                   // the prompt text
  std::vector<std::string> tokens;      // token strings of the whole prompt
  std::vector<int32_t> token_ids;       // same length as tokens
  std::vector<int> layers;              // analysed model layers, increasing
  int top_t = 0;                        // the T the graph was built with
  std::vector<Edge> traced;             // trace_graph's output for this prompt
  std::vector<LogitEntry> logits;       // empty: no logit nodes
  // (layer, feature) -> explanation, the clerp of that feature's nodes; nullptr or a missing entry: the
  // saetraj label.
  const std::map<std::pair<int, int>, std::string>* explanations = nullptr;
  std::vector<MlpPathVertex> mlp_path;  // empty: no MLP nodes
  // (layer, transcoder feature) -> explanation, the clerp of that MLP node; nullptr or missing: saetraj's.
  const std::map<std::pair<int, int>, std::string>* transcoder_explanations = nullptr;
  nlohmann::json info = nlohmann::json::object();  // metadata.info (generator, SAE ids, ...)
};

// metadata.scan and feature_details.neuronpedia_source_set from the layers' SAE ids: when every id reads
// "<model>/<layer>-<set>" (Neuronpedia's model/source form) with the same model and set and its own layer,
// {model, set}; otherwise {fallback, ""}.
struct NeuronpediaScan {
  std::string scan;
  std::string source_set;
};
NeuronpediaScan neuronpedia_scan(const std::vector<std::string>& sae_ids, const std::vector<int>& layers,
                                 const std::string& fallback);

// The Cantor pairing (layer + index)(layer + index + 1)/2 + index, Neuronpedia's schema_version 1 feature
// id. InputError for a negative layer or index.
int64_t cantor_feature(int layer, int feature);

// The document of the NOTE above. InputError when an edge's endpoint is outside the prompt, an edge joins
// layers that are not analysed, token_ids and tokens differ in length, a trajectory appears twice, or an
// MLP vertex lies outside the prompt or the analysed layers, or is given twice.
nlohmann::json attribution_graph_json(const AttributionGraphInput& input);

// A feature node's clerp: the explanation of (layer, feature) when `explanations` (may be null) has one,
// else saetraj's label "L<layer> #<feature> from \"<source>\" (rank <final_position>)", `source_label` the
// source token as the viewer shows it (viewer_token).
std::string feature_clerp(int layer, int feature, const std::string& source_label, int final_position,
                          const std::map<std::pair<int, int>, std::string>* explanations);
// An MLP node's clerp (NOTE above): the explanation of (layer, transcoder_feature) when the term is a
// feature and `explanations` (may be null) has one, else saetraj's label.
std::string mlp_clerp(int layer, const std::string& term, int transcoder_feature, double activation,
                      const std::map<std::pair<int, int>, std::string>* explanations);
// Sets the clerp of every feature node (and, with `transcoder_explanations`, every MLP node) of `doc`, a
// document attribution_graph_json wrote, as attribution_graph_json would have set it with these
// explanations: how `saetraj explain` carries explanations into graphs exported before it ran. Returns how
// many clerps changed. FormatError naming `what` when a feature node lacks "layer", or "saetraj" {sae_index,
// final_position} and a source_token or mlp_step, or its source token is not in metadata.prompt_tokens, or
// an MLP node lacks its saetraj {mlp_term, transcoder_feature, transcoder_activation}.
int64_t relabel_attribution_graph(nlohmann::json& doc, const std::map<std::pair<int, int>, std::string>& explanations,
                                  const std::string& what,
                                  const std::map<std::pair<int, int>, std::string>* transcoder_explanations = nullptr);

// The viewer's token label: circuit-tracer's local viewer shows newline, tab and carriage return as
// U+23CE, U+2192 and U+21B5; invalid UTF-8 becomes U+FFFD.
std::string viewer_token(const std::string& token);

// Writes `doc` (UTF-8, indented) to path. IoError when the file cannot be written.
void write_json_file(const std::string& path, const nlohmann::json& doc, const std::string& what);

}  // namespace saetraj::graph
