#include "saetraj/pipeline/sweep_runner.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include <sys/resource.h>

#include "saetraj/core/error.h"
#include "saetraj/core/timing.h"
#include "saetraj/core/strings.h"
#include "saetraj/dist/partition.h"
#include "saetraj/model/model.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/pipeline/activation_exchange.h"
#include "saetraj/pipeline/collective.h"
#include "saetraj/pipeline/graph_builder.h"
#include "saetraj/pipeline/progress.h"
#include "saetraj/pipeline/sae_sources.h"
#include "saetraj/pipeline/prompts.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/readout.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/tokenizer/tokenizer.h"

namespace saetraj::pipeline {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }
}  // namespace

void install_stop_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
}

bool stop_requested() { return g_stop.load(); }

std::string SweepOptions::to_json() const {
  nlohmann::json j;
  j["model"] = model;
  j["sae"] = saes;
  j["layers"] = layers;
  j["prompt"] = prompts;
  j["prompt_file"] = prompt_file;
  j["prompt_ids"] = prompt_ids;
  j["k"] = k;
  j["top_t"] = top_t;
  j["bos"] = bos;
  j["center"] = center;
  j["allow_hook_mismatch"] = allow_hook_mismatch;
  j["gemmascope_root"] = gemmascope_root;
  j["gemmascope_width"] = gemmascope_width;
  j["gemmascope_l0"] = gemmascope_l0;
  j["max_tokens"] = max_tokens;
  j["shard"] = shard;
  j["out"] = out;
  j["chunk_rows"] = chunk_rows;
  j["method"] = method;
  j["graphs"] = graphs;
  j["dtype"] = dtype;
  j["sae_dtype"] = sae_dtype;
  j["device"] = device;
  return j.dump();
}

std::vector<int> parse_layers(const std::string& spec, int64_t n_model_layers) {
  std::vector<int> layers;
  if (spec == "all") {
    for (int l = 0; l < n_model_layers; ++l) layers.push_back(l);
    return layers;
  }
  static const std::regex item(R"(^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$)");
  std::stringstream in(spec);
  std::string part;
  std::set<int> seen;
  while (std::getline(in, part, ',')) {
    std::smatch m;
    SAETRAJ_CHECK(std::regex_match(part, m, item), InputError, "--layers: \"", part,
                  "\" is not a layer or range (examples: all, 0-11, 0,3,5)");
    const int a = std::stoi(m[1].str());
    const int b = m[2].matched ? std::stoi(m[2].str()) : a;
    SAETRAJ_CHECK(a <= b, InputError, "--layers: range \"", part, "\" runs backwards");
    for (int l = a; l <= b; ++l) {
      SAETRAJ_CHECK(l < n_model_layers, InputError, "--layers: layer ", l, " is out of range; the model has ",
                    n_model_layers, " layers (0..", n_model_layers - 1, ")");
      SAETRAJ_CHECK(seen.insert(l).second, InputError, "--layers: layer ", l, " is given more than once");
      layers.push_back(l);
    }
  }
  SAETRAJ_CHECK(!layers.empty(), InputError, "--layers selects no layer");
  std::sort(layers.begin(), layers.end());
  return layers;
}

std::vector<std::string> resolve_sae_folders(const std::vector<std::string>& specs, const std::vector<int>& layers) {
  SAETRAJ_CHECK(!specs.empty(), InputError,
                "no SAEs given: use --sae 'DIR/with/{layer}/in/it' or --sae LAYER=DIR (once per layer)");
  std::map<int, std::string> explicit_folders;
  std::string pattern;
  static const std::regex assignment(R"(^(\d+)=(.+)$)");
  for (const auto& s : specs) {
    std::smatch m;
    if (std::regex_match(s, m, assignment)) {
      const int layer = std::stoi(m[1].str());
      SAETRAJ_CHECK(explicit_folders.emplace(layer, m[2].str()).second, InputError, "--sae: layer ", layer,
                    " is given more than once");
    } else {
      SAETRAJ_CHECK(s.find("{layer}") != std::string::npos, InputError, "--sae \"", s,
                    "\": expected a folder pattern containing {layer} or LAYER=FOLDER");
      SAETRAJ_CHECK(pattern.empty(), InputError, "--sae: only one {layer} pattern may be given");
      pattern = s;
    }
  }
  std::vector<std::string> folders;
  for (int l : layers) {
    auto it = explicit_folders.find(l);
    if (it != explicit_folders.end()) {
      folders.push_back(it->second);
    } else {
      SAETRAJ_CHECK(!pattern.empty(), InputError, "no SAE given for layer ", l,
                    " (add --sae ", l, "=FOLDER or a {layer} pattern)");
      std::string f = pattern;
      for (size_t pos; (pos = f.find("{layer}")) != std::string::npos;) f.replace(pos, 7, std::to_string(l));
      folders.push_back(f);
    }
  }
  return folders;
}


SweepResult run_sweep(const SweepOptions& o, const dist::Communicator& comm) {
  const auto started = std::chrono::steady_clock::now();
  // Where this rank's time goes, printed for every rank at the end: a rank with long "HDF5 writes and
  // waits" waits for the others at the per-prompt collectives (load imbalance, rank 0's model work).
  sweep::PhaseTimes times;
  const bool root = comm.rank() == 0;
  SAETRAJ_CHECK(o.k > 0, InputError, "--k must be positive, got ", o.k);
  SAETRAJ_CHECK(o.top_t >= 0, InputError, "--top-t must be >= 0, got ", o.top_t);
  SAETRAJ_CHECK(o.chunk_rows > 0, InputError, "--chunk-rows must be positive, got ", o.chunk_rows);
  const sweep::Method method = sweep::parse_method(o.method);
  SAETRAJ_CHECK(o.dtype == "float32", InputError, "--dtype ", o.dtype, " is not supported; computation is float32");
  SAETRAJ_CHECK(o.sae_dtype == "float32" || o.sae_dtype == "bfloat16", InputError, "--sae-dtype ", o.sae_dtype,
                " is not supported; use float32 or bfloat16");
  SAETRAJ_CHECK(o.bos == "auto" || o.bos == "on" || o.bos == "off", InputError, "--bos must be auto, on or off");
  SAETRAJ_CHECK(o.center == "auto" || o.center == "on" || o.center == "off", InputError,
                "--center must be auto, on or off");
  SAETRAJ_CHECK(!(o.resume && o.overwrite), InputError, "--resume and --overwrite exclude each other");
  SAETRAJ_CHECK(!o.model.empty(), InputError, "--model is required (a Hugging Face checkpoint folder)");
  const std::unique_ptr<dist::Transport> transport = make_exchange_transport(o.device, comm);

  // ---- what every rank knows before any heavy loading --------------------------------------------------
  const auto config = model::ModelConfig::from_folder(o.model);
  const auto tok = tokenizer::load_tokenizer(o.model, config.bos_token_id);
  const std::vector<int> layers = parse_layers(o.layers, config.n_layers);
  const std::vector<std::string> sae_folders = sweep_sae_paths(o, layers);
  const sae::SaeSourceOptions sae_options = sweep_sae_options(o, config);
  std::vector<sae::SaeConfig> sae_cfgs;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto cfg = sae::read_sae_config(sae_folders[i], layers[i], sae_options);
    SAETRAJ_CHECK(cfg.d_in == config.d_model, InputError, "the SAE for layer ", layers[i], " (", sae_folders[i],
                  ") reads vectors of size ", cfg.d_in, " but the model's d_model is ", config.d_model);
    SAETRAJ_CHECK(cfg.hook_layer == layers[i] || o.allow_hook_mismatch, InputError, "the SAE in ", sae_folders[i],
                  " hooks '", cfg.hook_name, "' (layer ", cfg.hook_layer, ") but is assigned to layer ", layers[i],
                  "; fix --sae or pass --allow-hook-mismatch");
    SAETRAJ_CHECK(o.k <= cfg.d_sae, InputError, "--k ", o.k, " is larger than the SAE's width d_sae = ", cfg.d_sae,
                  " (layer ", layers[i], ")");
    sae_cfgs.push_back(std::move(cfg));
  }

  // BOS (SPEC 1.1): auto follows the SAEs' training (prepend_bos), else the tokenizer's default.
  bool prepend_bos = false;
  if (o.bos == "on") {
    prepend_bos = true;
  } else if (o.bos == "auto") {
    std::optional<bool> from_saes;
    for (const auto& c : sae_cfgs) {
      if (c.prepend_bos) from_saes = from_saes.value_or(false) || *c.prepend_bos;
    }
    prepend_bos = from_saes.value_or(tok->adds_bos_by_default());
  }
  const std::optional<int32_t> bos_id = tok->bos_id() ? tok->bos_id() : config.bos_token_id;
  SAETRAJ_CHECK(!prepend_bos || bos_id, InputError,
                "a BOS token is wanted but neither the tokenizer nor config.json names one; pass --bos off");

  std::vector<RawPrompt> raw;
  for (const auto& p : o.prompts) raw.push_back({std::to_string(raw.size()), p, std::nullopt});
  for (const auto& p : o.prompt_ids) raw.push_back({std::to_string(raw.size()), "", parse_token_ids(p)});
  if (!o.prompt_file.empty()) {
    for (auto& p : read_prompt_file(o.prompt_file)) raw.push_back(std::move(p));
  }
  SAETRAJ_CHECK(!raw.empty(), InputError, "no prompt given: use --prompt TEXT, --prompt-ids or --prompt-file FILE");
  if (!o.shard.empty()) {
    // Job arrays: shard I of N takes input positions I, I+N, I+2N, ... and keeps their ids.
    static const std::regex shard_re(R"(^(\d+)/(\d+)$)");
    std::smatch m;
    SAETRAJ_CHECK(std::regex_match(o.shard, m, shard_re), InputError, "--shard \"", o.shard, "\": expected I/N");
    const int64_t index = std::stoll(m[1].str()), count = std::stoll(m[2].str());
    SAETRAJ_CHECK(count >= 1 && index < count, InputError, "--shard ", o.shard, ": need 0 <= I < N");
    std::vector<RawPrompt> kept;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (static_cast<int64_t>(i) % count == index) kept.push_back(std::move(raw[i]));
    }
    raw = std::move(kept);
    SAETRAJ_CHECK(!raw.empty(), InputError, "--shard ", o.shard, " selects no prompt");
  }
  TokenizeSettings ts;
  ts.prepend_bos = prepend_bos;
  ts.bos_id = bos_id.value_or(-1);
  ts.max_tokens = o.max_tokens;
  ts.context_length = config.n_ctx;
  ts.vocab_size = config.vocab_size;
  PreparedPrompts prepared = prepare_prompts(raw, *tok, ts);
  if (root) {
    for (const auto& s : prepared.skipped) {
      std::cerr << "saetraj: skipping prompt " << s.line << (s.id.empty() ? "" : " (id " + s.id + ")") << ": "
                << s.reason << "\n";
    }
  }
  SAETRAJ_CHECK(!prepared.prompts.empty(), InputError, "no prompt can be analysed (",
                prepared.skipped.size(), " skipped: ", prepared.skipped.front().reason, ")");

  output::SweepHeader header;
  header.model = std::filesystem::path(o.model).lexically_normal().string();
  header.architecture = model::arch_name(config.arch);
  header.d_model = config.d_model;
  header.n_model_layers = config.n_layers;
  header.layers.assign(layers.begin(), layers.end());
  header.k = o.k;
  for (const auto& c : sae_cfgs) {
    header.sae_ids.push_back(c.id);
    header.sae_hooks.push_back(c.hook_name);
    header.sae_preprocessing.push_back(c.preprocessing_summary());
  }
  header.bos = prepend_bos ? "prepended" : "not prepended";
  header.command_line = o.command_line;
  header.config_json = o.to_json();
  header.created_utc = output::utc_now_iso8601();
  header.prompts = std::move(prepared.prompts);
  header.skipped = std::move(prepared.skipped);
  const auto row_offsets = header.row_offsets();
  const int64_t n_prompts = static_cast<int64_t>(header.prompts.size());

  // ---- the file: created (or checked for resume) by rank 0, then opened by all --------------------------
  run_on_root(comm, [&] {
    if (o.resume && std::filesystem::exists(o.out)) {
      output::check_resumable(o.out, header);
    } else {
      output::create_sweep_file(o.out, header, o.overwrite);
    }
  });
  std::vector<uint8_t> done(n_prompts, 0);
  run_on_root(comm, [&] { done = output::read_done_flags(o.out); });
  comm.broadcast(done.data(), done.size(), 0);

  // ---- the plan: which layers this rank owns, which query chunks it computes ----------------------------
  std::vector<double> costs;
  for (const auto& c : sae_cfgs) costs.push_back(static_cast<double>(c.d_in) * static_cast<double>(c.d_sae));
  const dist::WorkPlan plan = dist::plan_work(comm.size(), costs);

  // ---- loading: the model on rank 0 only (NOTE in activation_exchange.h), each rank its own SAEs ---------
  std::unique_ptr<model::Model> model;
  run_on_root(comm, [&] { model = model::load_model(o.model); });
  // The plan comes from the SAEs' shapes alone: every activation is fused into a top-k scan whose cost does
  // not depend on the data (NOTE in sweep/topk.cpp), so a row costs d_in x d_sae whatever the layer.
  const auto exchange = std::make_unique<ActivationExchange>(comm, *transport, plan, layers, config.d_model,
                                                             config.n_heads, model.get());
  std::vector<sae::Sae> saes;
  for (int i : plan.group_for(comm.rank()).layer_indices) {
    saes.push_back(sae::load_sae(sae_folders[i], layers[i], sae_options));
    if (o.sae_dtype == "bfloat16") saes.back().w_enc = saes.back().w_enc.to(torch::kBFloat16);
  }
  const dist::LayerGroup& group = plan.group_for(comm.rank());
  const int member = plan.index_in_group(comm.rank());
  int64_t max_group_layers = 0;
  for (const auto& g : plan.groups) max_group_layers = std::max<int64_t>(max_group_layers, g.layer_indices.size());
  int64_t sae_bytes = 0;
  for (const auto& s : saes) sae_bytes += s.bytes();
  if (root) {
    std::cerr << "saetraj: " << comm.size() << " rank(s), " << plan.groups.size() << " layer group(s); "
              << n_prompts << " prompt(s), " << header.total_rows() << " rows per layer, "
              << layers.size() << " layer(s), k = " << o.k << "\n";
  }
  std::cerr << "saetraj: rank " << comm.rank() << " holds layers";
  for (int i : group.layer_indices) std::cerr << " " << layers[i];
  std::cerr << " (SAE encoders " << human_bytes(static_cast<double>(sae_bytes)) << ")\n";

  output::ParallelSweepFile file(o.out, comm);
  int64_t already_done = 0, rows_to_do = 0;
  for (int64_t p = 0; p < n_prompts; ++p) {
    already_done += done[p];
    if (!done[p]) {
      rows_to_do += sweep::rows_of_prompt(static_cast<int64_t>(header.prompts[p].ids.size())) *
                    static_cast<int64_t>(layers.size());
    }
  }
  Progress progress(comm, n_prompts, rows_to_do);
  progress.add_done_prompts(already_done, 0);

  SweepResult result;
  result.out = o.out;
  result.prompts = n_prompts;
  result.skipped = static_cast<int64_t>(header.skipped.size());
  result.rows = header.total_rows();

  // Fault injection for the resume tests: behave as if SIGTERM arrived after this many prompts, have one
  // rank die by SIGKILL (a killed process or lost node) after this many prompts, or have one rank's writes
  // fail as on a full disk after this many prompts (both "RANK:PROMPTS").
  const char* stop_after_env = std::getenv("SAETRAJ_TEST_STOP_AFTER_PROMPTS");
  const int64_t stop_after = stop_after_env ? std::atoll(stop_after_env) : -1;
  auto rank_spec = [&](const char* name) -> int64_t {
    const char* env = std::getenv(name);
    if (!env) return -1;
    const std::string spec = env;
    const auto colon = spec.find(':');
    if (colon == std::string::npos || std::atoi(spec.substr(0, colon).c_str()) != comm.rank()) return -1;
    return std::atoll(spec.substr(colon + 1).c_str());
  };
  const int64_t kill_after = rank_spec("SAETRAJ_TEST_KILL_RANK_AFTER_PROMPTS");
  const int64_t fail_write_after = rank_spec("SAETRAJ_TEST_FAIL_WRITE_AFTER_PROMPTS");
  int64_t computed = 0;
  // Reused across prompts and layers: the direct method's product buffer and the rows' top-k tables.
  torch::Tensor workspace;
  std::vector<int32_t> indices;
  std::vector<float> values;
  times.startup = seconds_since(started);
  const auto loop_started = std::chrono::steady_clock::now();
  for (int64_t p = 0; p < n_prompts; ++p) {
    if (done[p]) continue;
    if (computed == stop_after) std::raise(SIGTERM);
    if (computed == kill_after) std::raise(SIGKILL);
    if (computed == fail_write_after) file.inject_write_failure(ENOSPC);
    if (comm.any(stop_requested())) {
      result.interrupted = true;
      break;
    }
    const auto& prompt = header.prompts[p];
    const int64_t n = static_cast<int64_t>(prompt.ids.size());
    model::ForwardCapture capture;
    auto t0 = std::chrono::steady_clock::now();
    if (root) capture = model->forward(prompt.ids, layers);
    times.forward += seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    auto activations = exchange->distribute(root ? &capture : nullptr, n);
    times.exchange += seconds_since(t0);
    const auto chunks = dist::query_chunks(n, o.chunk_rows);
    const auto [c_first, c_last] = dist::chunks_for_member(chunks, static_cast<int>(group.ranks.size()), member);
    int64_t my_rows = 0;

    // One collective write per layer slot, so that a rank holds one layer's rows at a time.
    for (int64_t slot = 0; slot < max_group_layers; ++slot) {
      std::vector<output::EvolutionSlab> slabs;
      if (slot < static_cast<int64_t>(group.layer_indices.size()) && c_first < c_last) {
        const int li = group.layer_indices[slot];
        const int layer = layers[li];
        const LayerActivations& act = activations.at(li);
        const model::PostAttentionNorm& norm = exchange->post_attention(li);
        // One call for this rank's whole run of chunks: the direct method encodes it chunk by chunk with the
        // same boundaries (query_chunks), the factored one projects the sources once for all of it.
        sweep::EvolutionRequest req;
        req.resid_pre = &act.resid_pre;
        req.parts = &act.parts;
        req.post_norm = &norm;
        req.k = o.k;
        req.chunk_rows = o.chunk_rows;
        req.method = method;
        req.workspace = &workspace;
        const int64_t q_begin = chunks[c_first].first, q_end = chunks[c_last - 1].second;
        const int64_t rows = sweep::rows_of_prompt(q_end) - sweep::rows_of_prompt(q_begin);
        indices.resize(rows * o.k);
        values.resize(rows * o.k);
        req.q_begin = q_begin;
        req.q_end = q_end;
        with_context(str("layer ", layer, ", prompt ", p, ", queries ", q_begin, "..", q_end - 1), [&] {
          sweep::compute_evolution(saes[slot], req, indices.data(), values.data(), &times);
        });
        slabs.push_back({li, row_offsets[p] + sweep::rows_of_prompt(q_begin), rows, indices.data(), values.data()});
        my_rows += rows;
      }
      t0 = std::chrono::steady_clock::now();
      file.write_evolution(std::move(slabs));
      times.write += seconds_since(t0);
      if (slot < static_cast<int64_t>(group.layer_indices.size())) activations.erase(group.layer_indices[slot]);
    }

    // The layer readout, from rank 0.
    std::vector<int32_t> readout_ids;
    std::vector<float> readout_probs;
    if (root) {
      for (int layer : layers) {
        const auto r = sweep::layer_readout(*model, capture.layers[layer].resid_post.select(0, n - 1),
                                            output::kReadoutTop);
        readout_ids.insert(readout_ids.end(), r.token_ids.begin(), r.token_ids.end());
        readout_probs.insert(readout_probs.end(), r.probs.begin(), r.probs.end());
      }
    }
    t0 = std::chrono::steady_clock::now();
    file.write_readout(p, root ? readout_ids.data() : nullptr, root ? readout_probs.data() : nullptr);
    file.mark_done(p);
    times.write += seconds_since(t0);
    done[p] = 1;
    progress.add_done_prompts(1, my_rows);
    ++computed;
  }
  auto t_close = std::chrono::steady_clock::now();
  file.close();
  times.write += seconds_since(t_close);
  times.other = std::max(0.0, seconds_since(loop_started) - times.measured_loop());
  progress.finish();
  {
    // Peak memory of every rank against the SAE encoder bytes it holds, and where its time went, printed
    // by rank 0.
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::vector<int64_t> mine = {static_cast<int64_t>(usage.ru_maxrss) * 1024, sae_bytes}, all(2 * comm.size());
    comm.allgather(mine.data(), sizeof(int64_t) * 2, all.data());
    result.peak_memory = mine[0];
    result.sae_bytes = sae_bytes;
    result.times = times;
    double my_times[sweep::PhaseTimes::kCount];
    times.to_array(my_times);
    std::vector<double> all_times(sweep::PhaseTimes::kCount * comm.size());
    comm.allgather(my_times, sizeof my_times, all_times.data());
    if (root) {
      for (int r = 0; r < comm.size(); ++r) {
        std::cerr << "saetraj: rank " << r << " peak memory " << human_bytes(static_cast<double>(all[2 * r]))
                  << " (SAE encoders " << human_bytes(static_cast<double>(all[2 * r + 1])) << ")\n";
      }
      for (int r = 0; r < comm.size(); ++r) {
        std::cerr << "saetraj: rank " << r << " time: "
                  << sweep::PhaseTimes::from_array(&all_times[sweep::PhaseTimes::kCount * r]).describe() << "\n";
      }
    }
  }

  int64_t n_done = 0;
  for (uint8_t d : done) n_done += d;
  result.prompts_done = n_done;
  result.complete = n_done == n_prompts;
  if (root) {
    output::finalize_sweep_file(o.out, [&](int32_t id) { return tok->token_text(id); }, result.complete);
    if (result.complete && o.graphs) {
      GraphBuildOptions g;
      g.top_t = {o.top_t};
      g.json_dir = o.graphs_dir;
      result.graphs_dir = build_graphs(o.out, g).json_dir;
    }
  }
  comm.barrier();
  return result;
}

}  // namespace saetraj::pipeline
