#include <iostream>
#include <regex>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/pipeline/explain_runner.h"

namespace saetraj::cli {

int cmd_explain(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string file;
  std::vector<std::string> sources, mlp_sources;
  pipeline::ExplainOptions o;
  po::options_description options("Explain options");
  options.add_options()("file", po::value(&file), "sweep HDF5 file (with graphs)")(
      "bulk-root", po::value(&o.store.bulk_root),
      "folder of Neuronpedia bulk exports: <root>/<modelId>/<sourceId>/explanations/batch-N.jsonl.gz")(
      "cache-dir", po::value(&o.store.cache_dir), "local cache of fetched explanations")(
      "fetch", po::bool_switch(&o.store.fetch), "ask the Neuronpedia feature API for what cache and files lack")(
      "api-base-url", po::value(&o.store.api.base_url)->default_value(o.store.api.base_url), "feature API server")(
      "api-key-env", po::value(&o.store.api.api_key_env)->default_value(o.store.api.api_key_env),
      "environment variable holding the API key (sent as x-api-key; never printed)")(
      "min-interval", po::value(&o.store.api.min_interval_s)->default_value(o.store.api.min_interval_s),
      "seconds between API requests")(
      "timeout", po::value(&o.store.api.timeout_s)->default_value(o.store.api.timeout_s), "seconds per request")(
      "source", po::value(&sources)->composing(),
      "LAYER=MODEL/SOURCE: Neuronpedia source of a layer's SAE when its cfg has no neuronpedia_id; repeatable")(
      "mlp-source", po::value(&mlp_sources)->composing(),
      "LAYER=MODEL/SOURCE: Neuronpedia source of a layer's MLP transcoder (sweeps with --mlp-transcoder) when its "
      "cfg has no neuronpedia_id; repeatable")(
      "json-dir", po::value(&o.json_dirs)->composing(),
      "a folder `saetraj graph --json-dir` wrote: its attribution graphs get the explanations as labels too (those "
      "in the sweep's default FILE_graphs/ always do); repeatable");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (!parse_command("explain", "FILE [--bulk-root DIR] [--cache-dir DIR] [--fetch]", options, pos, args, vm,
                     ctx.comm.rank() == 0)) {
    return 0;
  }
  SAETRAJ_CHECK(!file.empty(), InputError, "saetraj explain: give the sweep file");
  SAETRAJ_CHECK(!o.store.bulk_root.empty() || !o.store.cache_dir.empty() || o.store.fetch, InputError,
                "saetraj explain: give --bulk-root, --cache-dir or --fetch (nothing to read explanations from)");
  static const std::regex source_re(R"(^(\d+)=(.+)$)");
  for (const auto& s : sources) {
    std::smatch m;
    SAETRAJ_CHECK(std::regex_match(s, m, source_re), InputError, "--source \"", s, "\": expected LAYER=MODEL/SOURCE");
    o.sources[std::stoi(m[1].str())] = m[2].str();
  }
  for (const auto& s : mlp_sources) {
    std::smatch m;
    SAETRAJ_CHECK(std::regex_match(s, m, source_re), InputError, "--mlp-source \"", s,
                  "\": expected LAYER=MODEL/SOURCE");
    o.mlp_sources[std::stoi(m[1].str())] = m[2].str();
  }
  if (ctx.comm.rank() != 0) return 0;
  const auto r = pipeline::explain_sweep(file, o);
  std::cout << "explanations: " << r.written << " written to " << file << " (" << r.counts.missing
            << " features have none)\n";
  if (r.mlp_written > 0 || r.mlp_counts.requested > 0) {
    std::cout << "transcoder explanations: " << r.mlp_written << " written to " << file << " ("
              << r.mlp_counts.missing << " transcoder features have none)\n";
  }
  for (const auto& dir : r.relabelled_dirs) std::cout << "feature labels set in " << dir << "\n";
  return 0;
}

}  // namespace saetraj::cli
