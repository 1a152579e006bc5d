#include "saetraj/pipeline/sweep_runner.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include <sys/resource.h>
#include <unistd.h>

#include "saetraj/core/error.h"
#include "saetraj/core/timing.h"
#include "saetraj/core/strings.h"
#include "saetraj/dist/memory_plan.h"
#include "saetraj/dist/partition.h"
#include "saetraj/model/model.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/pipeline/activation_exchange.h"
#include "saetraj/pipeline/collective.h"
#include "saetraj/pipeline/compute_device.h"
#include "saetraj/pipeline/gpu_memory.h"
#include "saetraj/pipeline/graph_builder.h"
#include "saetraj/pipeline/progress.h"
#include "saetraj/pipeline/sae_sources.h"
#include "saetraj/pipeline/prompts.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/sae/transcoder.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/head_split.h"
#include "saetraj/sweep/mlp_rows.h"
#include "saetraj/sweep/order_free.h"
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
  j["strict_input"] = strict_input;
  j["k"] = k;
  j["top_t"] = top_t;
  j["heads"] = heads;
  j["orders"] = orders;
  j["order_seed"] = order_seed;
  // Only with the option, so that a sweep without it writes the config attribute it always wrote.
  if (!mlp_transcoders.empty()) j["mlp_transcoder"] = mlp_transcoders;
  j["bos"] = bos;
  j["center"] = center;
  j["allow_hook_mismatch"] = allow_hook_mismatch;
  j["gemmascope_root"] = gemmascope_root;
  j["gemmascope_width"] = gemmascope_width;
  j["gemmascope_l0"] = gemmascope_l0;
  j["gemmascope_l0_layer"] = gemmascope_l0_layers;
  j["gemmascope2_root"] = gemmascope2_root;
  j["gemmascope2_width"] = gemmascope2_width;
  j["gemmascope2_l0"] = gemmascope2_l0;
  j["gemmascope2_l0_layer"] = gemmascope2_l0_layers;
  j["max_tokens"] = max_tokens;
  j["shard"] = shard;
  j["out"] = out;
  j["chunk_rows"] = chunk_rows;
  j["method"] = method;
  j["graphs"] = graphs;
  j["dtype"] = dtype;
  j["sae_dtype"] = sae_dtype;
  j["device"] = device;
  j["exchange"] = exchange;
  j["gpu"] = gpu;
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


namespace {

// ---- the steps of a sweep (run_sweep at the end lists them in order) --------------------------------------

void check_options(const SweepOptions& o) {
  SAETRAJ_CHECK(o.k > 0, InputError, "--k must be positive, got ", o.k);
  SAETRAJ_CHECK(o.top_t >= 0, InputError, "--top-t must be >= 0, got ", o.top_t);
  SAETRAJ_CHECK(o.orders == 0 || o.orders >= 2, InputError, "--orders must be 0 (off) or at least 2, got ",
                o.orders);
  SAETRAJ_CHECK(o.chunk_rows > 0, InputError, "--chunk-rows must be positive, got ", o.chunk_rows);
  SAETRAJ_CHECK(o.dtype == "float32", InputError, "--dtype ", o.dtype, " is not supported; computation is float32");
  SAETRAJ_CHECK(o.sae_dtype == "float32" || o.sae_dtype == "bfloat16", InputError, "--sae-dtype ", o.sae_dtype,
                " is not supported; use float32 or bfloat16");
  SAETRAJ_CHECK(o.bos == "auto" || o.bos == "on" || o.bos == "off", InputError, "--bos must be auto, on or off");
  SAETRAJ_CHECK(o.center == "auto" || o.center == "on" || o.center == "off", InputError,
                "--center must be auto, on or off");
  SAETRAJ_CHECK(!(o.resume && o.overwrite), InputError, "--resume and --overwrite exclude each other");
  SAETRAJ_CHECK(!o.model.empty(), InputError, "--model is required (a Hugging Face checkpoint folder)");
  SAETRAJ_CHECK(o.gpu >= -1, InputError, "--gpu must be a device index (0, 1, ...), got ", o.gpu);
}

// What every rank knows before any heavy loading: the model's config, the tokenizer, the layers, the SAEs'
// configs, the prompts, and the file header they make.
struct SweepInputs {
  model::ModelConfig config;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::vector<int> layers;
  std::vector<std::string> sae_folders;
  sae::SaeSourceOptions sae_options;
  std::vector<sae::SaeConfig> sae_cfgs;
  std::vector<std::string> transcoder_paths;  // --mlp-transcoder, per layer axis; empty without it
  std::vector<sae::SaeConfig> transcoder_cfgs;
  output::SweepHeader header;
  std::vector<int64_t> row_offsets;
  std::vector<int64_t> query_offsets;
  // Each prompt's position in the whole input (all shards together): what seeds its --orders samples, so
  // that a shard's /order/values equal those of one unsharded sweep (and `saetraj merge` can copy them).
  std::vector<int64_t> corpus_position;
};

std::vector<sae::SaeConfig> read_sae_configs(const SweepOptions& o, const SweepInputs& in) {
  std::vector<sae::SaeConfig> cfgs;
  for (size_t i = 0; i < in.layers.size(); ++i) {
    auto cfg = sae::read_sae_config(in.sae_folders[i], in.layers[i], in.sae_options);
    SAETRAJ_CHECK(cfg.d_in == in.config.d_model, InputError, "the SAE for layer ", in.layers[i], " (",
                  in.sae_folders[i], ") reads vectors of size ", cfg.d_in, " but the model's d_model is ",
                  in.config.d_model);
    SAETRAJ_CHECK(cfg.hook_layer == in.layers[i] || o.allow_hook_mismatch, InputError, "the SAE in ",
                  in.sae_folders[i], " hooks '", cfg.hook_name, "' (layer ", cfg.hook_layer,
                  ") but is assigned to layer ", in.layers[i], "; fix --sae or pass --allow-hook-mismatch");
    SAETRAJ_CHECK(o.k <= cfg.d_sae, InputError, "--k ", o.k, " is larger than the SAE's width d_sae = ", cfg.d_sae,
                  " (layer ", in.layers[i], ")");
    cfgs.push_back(std::move(cfg));
  }
  return cfgs;
}

// BOS (SPEC 1.1): auto follows the SAEs' training (prepend_bos), else the tokenizer's default.
bool decide_bos(const SweepOptions& o, const SweepInputs& in) {
  if (o.bos != "auto") return o.bos == "on";
  std::optional<bool> from_saes;
  for (const auto& c : in.sae_cfgs) {
    if (c.prepend_bos) from_saes = from_saes.value_or(false) || *c.prepend_bos;
  }
  return from_saes.value_or(in.tok->adds_bos_by_default());
}

// --shard I/N as {I, N}; {0, 1} without it.
std::pair<int64_t, int64_t> shard_of(const SweepOptions& o) {
  if (o.shard.empty()) return {0, 1};
  static const std::regex shard_re(R"(^(\d+)/(\d+)$)");
  std::smatch m;
  SAETRAJ_CHECK(std::regex_match(o.shard, m, shard_re), InputError, "--shard \"", o.shard, "\": expected I/N");
  const int64_t index = std::stoll(m[1].str()), count = std::stoll(m[2].str());
  SAETRAJ_CHECK(count >= 1 && index < count, InputError, "--shard ", o.shard, ": need 0 <= I < N");
  return {index, count};
}

// The input prompts in order (--prompt, --prompt-ids, --prompt-file), then this shard's share of them.
std::vector<RawPrompt> collect_prompts(const SweepOptions& o) {
  std::vector<RawPrompt> raw;
  for (const auto& p : o.prompts) raw.push_back({std::to_string(raw.size()), p, std::nullopt});
  for (const auto& p : o.prompt_ids) raw.push_back({std::to_string(raw.size()), "", parse_token_ids(p)});
  if (!o.prompt_file.empty()) {
    for (auto& p : read_prompt_file(o.prompt_file, o.strict_input)) raw.push_back(std::move(p));
  }
  SAETRAJ_CHECK(!raw.empty(), InputError, "no prompt given: use --prompt TEXT, --prompt-ids or --prompt-file FILE");
  if (o.shard.empty()) return raw;
  // Job arrays: shard I of N takes input positions I, I+N, I+2N, ... and keeps their ids.
  const auto [index, count] = shard_of(o);
  std::vector<RawPrompt> kept;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (static_cast<int64_t>(i) % count == index) kept.push_back(std::move(raw[i]));
  }
  SAETRAJ_CHECK(!kept.empty(), InputError, "--shard ", o.shard, " selects no prompt");
  return kept;
}

SweepInputs read_inputs(const SweepOptions& o, const dist::Communicator& comm) {
  SweepInputs in;
  in.config = model::ModelConfig::from_folder(o.model);
  in.tok = tokenizer::load_tokenizer(o.model, in.config.bos_token_id);
  in.layers = parse_layers(o.layers, in.config.n_layers);
  in.sae_folders = sweep_sae_paths(o, in.layers);
  in.sae_options = sweep_sae_options(o, in.config);
  in.sae_cfgs = read_sae_configs(o, in);
  in.transcoder_paths = sweep_transcoder_paths(o, in.layers);
  in.transcoder_cfgs = read_transcoder_configs(in.transcoder_paths, in.layers, in.config.d_model, in.sae_options);

  const bool prepend_bos = decide_bos(o, in);
  const std::optional<int32_t> bos_id = in.tok->bos_id() ? in.tok->bos_id() : in.config.bos_token_id;
  SAETRAJ_CHECK(!prepend_bos || bos_id, InputError,
                "a BOS token is wanted but neither the tokenizer nor config.json names one; pass --bos off");
  TokenizeSettings ts;
  ts.prepend_bos = prepend_bos;
  ts.bos_id = bos_id.value_or(-1);
  ts.max_tokens = o.max_tokens;
  ts.context_length = in.config.n_ctx;
  ts.vocab_size = in.config.vocab_size;
  PreparedPrompts prepared = prepare_prompts(collect_prompts(o), *in.tok, ts);
  if (comm.rank() == 0) {
    for (const auto& s : prepared.skipped) {
      std::cerr << "saetraj: skipping prompt " << s.line << (s.id.empty() ? "" : " (id " + s.id + ")") << ": "
                << s.reason << "\n";
    }
  }
  SAETRAJ_CHECK(!prepared.prompts.empty(), InputError, "no prompt can be analysed (", prepared.skipped.size(),
                " skipped: ", prepared.skipped.front().reason, ")");
  {  // the shard's share: skipped prompts keep their place in it (/skipped/line), prompts fill the rest in order
    const auto [index, count] = shard_of(o);
    const size_t share = prepared.prompts.size() + prepared.skipped.size();
    std::vector<bool> skipped(share, false);
    for (const auto& s : prepared.skipped) skipped.at(static_cast<size_t>(s.line)) = true;
    for (size_t j = 0; j < share; ++j) {
      if (!skipped[j]) in.corpus_position.push_back(index + count * static_cast<int64_t>(j));
    }
  }

  output::SweepHeader& h = in.header;
  h.model = std::filesystem::path(o.model).lexically_normal().string();
  h.architecture = model::arch_name(in.config.arch);
  h.d_model = in.config.d_model;
  h.n_model_layers = in.config.n_layers;
  h.layers.assign(in.layers.begin(), in.layers.end());
  h.k = o.k;
  for (const auto& c : in.sae_cfgs) {
    h.sae_ids.push_back(c.id);
    h.sae_hooks.push_back(c.hook_name);
    h.sae_preprocessing.push_back(c.preprocessing_summary());
  }
  h.bos = prepend_bos ? "prepended" : "not prepended";
  h.command_line = o.command_line;
  h.config_json = o.to_json();
  h.created_utc = output::utc_now_iso8601();
  h.prompts = std::move(prepared.prompts);
  h.skipped = std::move(prepared.skipped);
  if (o.heads) {
    h.head_slots = std::min<int64_t>(o.k, static_cast<int64_t>(o.top_t) + 1);
    h.heads = in.config.n_heads;
  }
  if (o.orders > 0) {
    h.order_slots = std::min<int64_t>(o.k, static_cast<int64_t>(o.top_t) + 1);
    h.orders = o.orders;
    h.order_seed = o.order_seed;
  }
  for (const auto& c : in.transcoder_cfgs) {
    h.mlp_transcoder_ids.push_back(c.id);
    h.mlp_transcoder_hooks.push_back(c.hook_name);
    h.mlp_transcoder_hooks_out.push_back(c.hook_name_out);
  }
  in.row_offsets = h.row_offsets();
  in.query_offsets = h.query_offsets();
  return in;
}

// The file, created (or checked for --resume) by rank 0; returns every rank's copy of the done flags.
std::vector<uint8_t> open_output(const SweepOptions& o, const output::SweepHeader& header,
                                 const dist::Communicator& comm) {
  run_on_root(comm, [&] {
    if (o.resume && std::filesystem::exists(o.out)) {
      output::check_resumable(o.out, header);
    } else {
      output::create_sweep_file(o.out, header, o.overwrite);
    }
  });
  std::vector<uint8_t> done(header.prompts.size(), 0);
  run_on_root(comm, [&] { done = output::read_done_flags(o.out); });
  comm.broadcast(done.data(), done.size(), 0);
  return done;
}

// On a GPU, before anything is loaded: does this rank's share fit? (NOTE in dist/memory_plan.h.) Every rank
// measures its own GPU; all refuse together with the first shortfall's message.
void check_gpu_memory(const SweepOptions& o, const SweepInputs& in, const dist::WorkPlan& plan,
                      const torch::Device& device, const dist::Communicator& comm) {
  // A build without the CUDA parts (no NCCL found) cannot query GPU memory; the allocator then reports
  // an out-of-memory error itself.
  if (!device.is_cuda() || !gpu_memory_supported()) return;
  dist::MemoryPlanInput mp;
  for (size_t i = 0; i < in.sae_cfgs.size(); ++i) {
    mp.layers.push_back({in.sae_cfgs[i].d_in, in.sae_cfgs[i].d_sae,
                         in.transcoder_cfgs.empty() ? 0 : in.transcoder_cfgs[i].d_sae});
  }
  mp.bf16 = o.sae_dtype == "bfloat16";
  mp.chunk_rows = o.chunk_rows;
  for (const auto& p : in.header.prompts) mp.max_tokens = std::max<int64_t>(mp.max_tokens, p.ids.size());
  mp.heads = in.config.n_heads;
  mp.model_bytes = model::weight_bytes(in.config);
  const int64_t capacity = gpu_memory(device.index()).free;
  // Ranks that share a GPU (same node, same device) share its memory: each may use its share of what is free.
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const uint64_t mine = std::hash<std::string>{}(host) * 31 + static_cast<uint64_t>(device.index());
  std::vector<uint64_t> devices(comm.size());
  comm.allgather(&mine, sizeof mine, devices.data());
  const auto sharing = std::count(devices.begin(), devices.end(), mine);
  const std::string mine_message =
      dist::memory_shortfall(plan, mp, in.layers, capacity / std::max<int64_t>(1, sharing), comm.rank());
  if (comm.any(!mine_message.empty())) {
    throw InputError(mine_message.empty() ? "another rank's GPU cannot hold its share (its message says which)"
                                          : "--device cuda: " + mine_message);
  }
}

// What this rank holds for the whole sweep: its place in the plan, the model (rank 0), the exchange and
// its own layers' SAEs on its device.
struct RankWork {
  const dist::WorkPlan* plan = nullptr;  // run_sweep's, which outlives this
  int rank = 0;
  std::unique_ptr<model::Model> model;
  std::unique_ptr<ActivationExchange> exchange;
  std::vector<sae::Sae> saes;  // one per layer of its group, in the group's order
  std::vector<sae::Transcoder> transcoders;  // --mlp-transcoder: likewise (empty without it)
  int64_t sae_bytes = 0;
  int64_t transcoder_bytes = 0;
  int64_t max_group_layers = 0;
  const dist::LayerGroup& group() const { return plan->group_for(rank); }
};

RankWork load_rank_work(const SweepOptions& o, const SweepInputs& in, const dist::WorkPlan& plan,
                        const torch::Device& device, const dist::Transport& transport, const dist::Communicator& comm) {
  RankWork w;
  w.plan = &plan;
  w.rank = comm.rank();
  // The model on rank 0 only (NOTE in activation_exchange.h), on its compute device.
  run_on_root(comm, [&] { w.model = model::load_model(o.model, device); });
  w.exchange = std::make_unique<ActivationExchange>(comm, transport, plan, in.layers, in.config.d_model,
                                                    in.config.n_heads, w.model.get(), device,
                                                    !in.transcoder_paths.empty());
  for (int i : w.group().layer_indices) {
    sae::Sae s = sae::load_sae(in.sae_folders[i], in.layers[i], in.sae_options);
    if (o.sae_dtype == "bfloat16") s.w_enc = s.w_enc.to(torch::kBFloat16);
    s.to(device);
    w.sae_bytes += s.bytes();
    w.saes.push_back(std::move(s));
    if (in.transcoder_paths.empty()) continue;
    sae::Transcoder t = sae::load_transcoder(in.transcoder_paths[i], in.layers[i], in.sae_options);
    SAETRAJ_CHECK(t.d_out == in.config.d_model, InputError, "--mlp-transcoder for layer ", in.layers[i], " (",
                  in.transcoder_paths[i], ") writes vectors of size d_out = ", t.d_out, " but the model's d_model is ",
                  in.config.d_model);
    t.encoder.to(device);
    t.w_dec = t.w_dec.to(device);
    t.b_dec = t.b_dec.to(device);
    if (t.has_skip()) t.w_skip = t.w_skip.to(device);
    w.transcoder_bytes += t.bytes();
    w.transcoders.push_back(std::move(t));
  }
  for (const auto& g : plan.groups) w.max_group_layers = std::max<int64_t>(w.max_group_layers, g.layer_indices.size());
  return w;
}

void announce(const SweepInputs& in, const RankWork& w, const torch::Device& device, const SweepOptions& o,
              const dist::Communicator& comm) {
  if (comm.rank() == 0) {
    std::cerr << "saetraj: " << comm.size() << " rank(s), " << w.plan->groups.size() << " layer group(s); "
              << in.header.prompts.size() << " prompt(s), " << in.header.total_rows() << " rows per layer, "
              << in.layers.size() << " layer(s), k = " << o.k << "\n";
  }
  std::cerr << "saetraj: rank " << comm.rank() << " computes on " << device.str() << ", holds layers";
  for (int i : w.group().layer_indices) std::cerr << " " << in.layers[i];
  std::cerr << " (SAE encoders " << human_bytes(static_cast<double>(w.sae_bytes));
  if (!w.transcoders.empty()) std::cerr << ", MLP transcoders " << human_bytes(static_cast<double>(w.transcoder_bytes));
  std::cerr << ")\n";
}

// Fault injection for the resume tests: behave as if SIGTERM arrived after this many prompts, have one
// rank die by SIGKILL (a killed process or lost node) after this many prompts, or have one rank's writes
// fail as on a full disk after this many prompts (both "RANK:PROMPTS"). And a pause point for tests that
// send real signals: SAETRAJ_TEST_PAUSE="PROMPTS:DIR" makes every rank, after that many prompts, create
// DIR/paused.RANK and wait until DIR/continue exists, so that the signal lands mid-sweep whatever the
// machine's speed; a rank that receives SIGINT/SIGTERM while waiting stops waiting.
struct FaultInjection {
  int64_t stop_after = -1, kill_after = -1, fail_write_after = -1, pause_after = -1;
  std::string pause_dir;
  int rank = 0;

  explicit FaultInjection(int rank_) : rank(rank_) {
    const char* stop_env = std::getenv("SAETRAJ_TEST_STOP_AFTER_PROMPTS");
    stop_after = stop_env ? std::atoll(stop_env) : -1;
    if (const char* pause = std::getenv("SAETRAJ_TEST_PAUSE")) {
      const std::string spec = pause;
      const auto colon = spec.find(':');
      if (colon != std::string::npos) {
        pause_after = std::atoll(spec.substr(0, colon).c_str());
        pause_dir = spec.substr(colon + 1);
      }
    }
    kill_after = for_rank("SAETRAJ_TEST_KILL_RANK_AFTER_PROMPTS", rank);
    fail_write_after = for_rank("SAETRAJ_TEST_FAIL_WRITE_AFTER_PROMPTS", rank);
  }
  static int64_t for_rank(const char* name, int rank) {
    const char* env = std::getenv(name);
    if (!env) return -1;
    const std::string spec = env;
    const auto colon = spec.find(':');
    if (colon == std::string::npos || std::atoi(spec.substr(0, colon).c_str()) != rank) return -1;
    return std::atoll(spec.substr(colon + 1).c_str());
  }
  void before_prompt(int64_t computed, output::ParallelSweepFile& file) const {
    if (computed == pause_after) {
      std::ofstream(pause_dir + "/paused." + std::to_string(rank)).put('\n');
      while (!std::filesystem::exists(pause_dir + "/continue") && !stop_requested()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    if (computed == stop_after) std::raise(SIGTERM);
    if (computed == kill_after) std::raise(SIGKILL);
    if (computed == fail_write_after) file.inject_write_failure(ENOSPC);
  }
};

// Buffers reused across prompts and layers: the direct method's product buffer and the rows' top-k tables.
struct Scratch {
  torch::Tensor workspace;
  std::vector<int32_t> indices;
  std::vector<float> values;
  std::vector<float> heads;  // /heads/split of the rank's queries of one layer
  std::vector<float> order;  // /order/values of the rank's rows of one layer
  // /mlp of the rank's queries of one layer
  std::vector<int32_t> mlp_steps, mlp_indices, mlp_slots;
  std::vector<float> mlp_values, mlp_activation;
};

// The MLP path (NOTE The MLP path in output/sweep_file.h) of every query of `req` (positions q_begin..q_end-1).
output::MlpSlab mlp_rows(const sae::Transcoder& transcoder, const sae::Sae& sae, const LayerActivations& act,
                         const sweep::EvolutionRequest& req, Scratch& scratch, int64_t query_offset, int layer_index) {
  const int64_t queries = req.q_end - req.q_begin, k = req.k;
  scratch.mlp_steps.resize(queries);
  scratch.mlp_indices.resize(queries * k);
  scratch.mlp_values.resize(queries * k);
  scratch.mlp_slots.resize(queries * k * sweep::kMlpSlotInts);
  scratch.mlp_activation.resize(queries * k);
  struct OneThread {  // as in split_heads: many small ops per query
    int saved = at::get_num_threads();
    OneThread() { at::set_num_threads(1); }
    ~OneThread() { at::set_num_threads(saved); }
  } one_thread;
  for (int64_t q = req.q_begin; q < req.q_end; ++q) {
    const int64_t i = q - req.q_begin;
    sweep::mlp_query(transcoder, sae, act.mlp_in[q], act.resid_mid[q], act.resid_post[q], k,
                     scratch.mlp_steps.data() + i, scratch.mlp_indices.data() + i * k, scratch.mlp_values.data() + i * k,
                     scratch.mlp_slots.data() + i * k * sweep::kMlpSlotInts, scratch.mlp_activation.data() + i * k);
  }
  return {layer_index,           query_offset + req.q_begin - 1, queries,
          scratch.mlp_steps.data(), scratch.mlp_indices.data(),   scratch.mlp_values.data(),
          scratch.mlp_slots.data(), scratch.mlp_activation.data()};
}

// The head split (sweep/head_split.h) of every query of `req`, whose lists are in scratch.indices.
output::HeadSlab split_heads(const sae::Sae& sae, const sweep::EvolutionRequest& req, const output::SweepHeader& h,
                             Scratch& scratch, int64_t query_offset, int layer_index) {
  const int64_t queries = req.q_end - req.q_begin, per_query = h.head_slots * sweep::split_columns(h.heads);
  scratch.heads.resize(queries * per_query);
  // Hundreds of small ops per query: one thread, so that no OpenMP team is started (and waited for) per op
  // (4.5x the plain sweep's time with 2 threads on a busy 2-core machine, 1.2-1.4x with one).
  struct OneThread {
    int saved = at::get_num_threads();
    OneThread() { at::set_num_threads(1); }
    ~OneThread() { at::set_num_threads(saved); }
  } one_thread;
  for (int64_t q = req.q_begin; q < req.q_end; ++q) {
    const int64_t row = sweep::rows_of_prompt(q) - sweep::rows_of_prompt(req.q_begin);
    sweep::head_split(sae, req, q, scratch.indices.data() + row * req.k, req.k, h.head_slots,
                      scratch.heads.data() + (q - req.q_begin) * per_query);
  }
  return {layer_index, query_offset + req.q_begin - 1, queries, scratch.heads.data()};
}

// The order-free views (sweep/order_free.h) of every query of `req` in /order/values' row layout (NOTE
// Format versions in output/sweep_file.h), with orders seeded by (seed, the prompt's position in the whole
// input, layer axis, query).
output::EvolutionSlab order_rows(const sae::Sae& sae, const sweep::EvolutionRequest& req, const SweepOptions& o,
                                 const output::SweepHeader& h, Scratch& scratch, int64_t prompt, int64_t row_begin,
                                 int layer_index) {
  const int64_t slots = h.order_slots, width = 3 * slots;
  const int64_t rows = sweep::rows_of_prompt(req.q_end) - sweep::rows_of_prompt(req.q_begin);
  scratch.order.assign(rows * width, std::numeric_limits<float>::quiet_NaN());
  struct OneThread {  // as in split_heads
    int saved = at::get_num_threads();
    OneThread() { at::set_num_threads(1); }
    ~OneThread() { at::set_num_threads(saved); }
  } one_thread;
  std::vector<float> values, full(slots), empty(slots);
  for (int64_t q = req.q_begin; q < req.q_end; ++q) {
    const int64_t row = sweep::rows_of_prompt(q) - sweep::rows_of_prompt(req.q_begin), n = q + 1;
    values.resize(slots * n * sweep::kOrderColumns);
    sweep::order_free(sae, req, q, scratch.indices.data() + row * req.k, req.k, slots, o.orders,
                      sweep::order_seed(static_cast<uint64_t>(o.order_seed), prompt, layer_index, q), values.data(),
                      full.data(), empty.data());
    float* out = scratch.order.data() + row * width;
    for (int64_t i = 0; i < slots; ++i) {
      out[3 * i] = full[i], out[3 * i + 1] = empty[i];
      for (int64_t j = 0; j < n; ++j) {
        std::copy_n(values.data() + (i * n + j) * sweep::kOrderColumns, 3, out + (j + 1) * width + 3 * i);
      }
    }
  }
  return {layer_index, row_begin, rows, nullptr, scratch.order.data()};
}

// One prompt: forward (rank 0), exchange, this rank's rows of each of its layers, one collective write per
// layer slot (so a rank holds one layer's rows at a time). Returns the rows this rank computed.
int64_t sweep_prompt(int64_t p, const SweepOptions& o, const SweepInputs& in, RankWork& w, sweep::Method method,
                     const torch::Device& device, output::ParallelSweepFile& file, Scratch& scratch,
                     sweep::PhaseTimes& times, const dist::Communicator& comm, model::ForwardCapture& capture) {
  const bool root = comm.rank() == 0;
  const auto& prompt = in.header.prompts[p];
  const int64_t n = static_cast<int64_t>(prompt.ids.size());
  auto t0 = std::chrono::steady_clock::now();
  if (root) capture = w.model->forward(prompt.ids, in.layers);
  times.forward += seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  auto activations = w.exchange->distribute(root ? &capture : nullptr, n);
  times.exchange += seconds_since(t0);
  const dist::LayerGroup& group = w.group();
  const auto chunks = dist::query_chunks(n, o.chunk_rows);
  const auto [c_first, c_last] =
      dist::chunks_for_member(chunks, static_cast<int>(group.ranks.size()), w.plan->index_in_group(comm.rank()));
  int64_t my_rows = 0;
  for (int64_t slot = 0; slot < w.max_group_layers; ++slot) {
    std::vector<output::EvolutionSlab> slabs;
    std::vector<output::HeadSlab> head_slabs;
    std::vector<output::EvolutionSlab> order_slabs;
    std::vector<output::MlpSlab> mlp_slabs;
    if (slot < static_cast<int64_t>(group.layer_indices.size()) && c_first < c_last) {
      const int li = group.layer_indices[slot];
      const LayerActivations& act = activations.at(li);
      // One call for this rank's whole run of chunks: both methods go through it chunk by chunk with the
      // same boundaries (query_chunks), so rows never depend on the rank count.
      sweep::EvolutionRequest req;
      req.resid_pre = &act.resid_pre;
      req.parts = &act.parts;
      req.post_norm = &w.exchange->post_attention(li);
      req.k = o.k;
      req.chunk_rows = o.chunk_rows;
      req.method = method;
      req.workspace = &scratch.workspace;
      req.device = device;
      req.q_begin = chunks[c_first].first;
      req.q_end = chunks[c_last - 1].second;
      const int64_t rows = sweep::rows_of_prompt(req.q_end) - sweep::rows_of_prompt(req.q_begin);
      scratch.indices.resize(rows * o.k);
      scratch.values.resize(rows * o.k);
      with_context(str("layer ", in.layers[li], ", prompt ", p, ", queries ", req.q_begin, "..", req.q_end - 1), [&] {
        sweep::compute_evolution(w.saes[slot], req, scratch.indices.data(), scratch.values.data(), &times);
      });
      slabs.push_back({li, in.row_offsets[p] + sweep::rows_of_prompt(req.q_begin), rows, scratch.indices.data(),
                       scratch.values.data()});
      if (file.has_heads()) {
        head_slabs.push_back(split_heads(w.saes[slot], req, in.header, scratch, in.query_offsets[p], li));
      }
      if (file.has_order()) {
        order_slabs.push_back(order_rows(w.saes[slot], req, o, in.header, scratch, in.corpus_position[p],
                                         in.row_offsets[p] + sweep::rows_of_prompt(req.q_begin), li));
      }
      if (file.has_mlp()) {
        with_context(str("the MLP path of layer ", in.layers[li], ", prompt ", p), [&] {
          mlp_slabs.push_back(mlp_rows(w.transcoders[slot], w.saes[slot], act, req, scratch, in.query_offsets[p], li));
        });
      }
      my_rows += rows;
    }
    t0 = std::chrono::steady_clock::now();
    file.write_evolution(std::move(slabs));
    if (file.has_heads()) file.write_heads(std::move(head_slabs));
    if (file.has_order()) file.write_order(std::move(order_slabs));
    if (file.has_mlp()) file.write_mlp(std::move(mlp_slabs));
    times.write += seconds_since(t0);
    if (slot < static_cast<int64_t>(group.layer_indices.size())) activations.erase(group.layer_indices[slot]);
  }
  return my_rows;
}

// The layer readout of the prompt (SPEC 1.6), computed by rank 0 and written collectively, then the done flag.
void write_readout_and_done(int64_t p, const SweepInputs& in, const RankWork& w, const model::ForwardCapture& capture,
                            output::ParallelSweepFile& file, sweep::PhaseTimes& times, const dist::Communicator& comm) {
  const bool root = comm.rank() == 0;
  std::vector<int32_t> ids;
  std::vector<float> probs;
  if (root) {
    const int64_t n = static_cast<int64_t>(in.header.prompts[p].ids.size());
    for (int layer : in.layers) {
      const auto r = sweep::layer_readout(*w.model, capture.layers[layer].resid_post.select(0, n - 1),
                                          output::kReadoutTop);
      ids.insert(ids.end(), r.token_ids.begin(), r.token_ids.end());
      probs.insert(probs.end(), r.probs.begin(), r.probs.end());
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  file.write_readout(p, root ? ids.data() : nullptr, root ? probs.data() : nullptr);
  file.mark_done(p);
  times.write += seconds_since(t0);
}

// Every rank's peak memory (host and, on GPUs, device) against the SAE bytes it holds, and where its time
// went, printed by rank 0.
void report_resources(const RankWork& w, const torch::Device& device, const sweep::PhaseTimes& times,
                      SweepResult& result, const dist::Communicator& comm) {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const int64_t gpu_peak = device.is_cuda() ? gpu_peak_allocated(device.index()) : -1;
  std::vector<int64_t> mine = {static_cast<int64_t>(usage.ru_maxrss) * 1024, w.sae_bytes, gpu_peak},
                       all(3 * comm.size());
  comm.allgather(mine.data(), sizeof(int64_t) * 3, all.data());
  result.peak_memory = mine[0];
  result.sae_bytes = w.sae_bytes;
  result.times = times;
  double my_times[sweep::PhaseTimes::kCount];
  times.to_array(my_times);
  std::vector<double> all_times(sweep::PhaseTimes::kCount * comm.size());
  comm.allgather(my_times, sizeof my_times, all_times.data());
  if (comm.rank() != 0) return;
  for (int r = 0; r < comm.size(); ++r) {
    std::cerr << "saetraj: rank " << r << " peak memory " << human_bytes(static_cast<double>(all[3 * r]))
              << (all[3 * r + 2] >= 0 ? " (GPU " + human_bytes(static_cast<double>(all[3 * r + 2])) + ")" : "")
              << " (SAE encoders " << human_bytes(static_cast<double>(all[3 * r + 1])) << ")\n";
  }
  for (int r = 0; r < comm.size(); ++r) {
    std::cerr << "saetraj: rank " << r << " time: "
              << sweep::PhaseTimes::from_array(&all_times[sweep::PhaseTimes::kCount * r]).describe() << "\n";
  }
}

}  // namespace

SweepResult run_sweep(const SweepOptions& o, const dist::Communicator& comm) {
  const auto started = std::chrono::steady_clock::now();
  // Where this rank's time goes, printed for every rank at the end: a rank with long "HDF5 writes and
  // waits" waits for the others at the per-prompt collectives (load imbalance, rank 0's model work).
  sweep::PhaseTimes times;
  check_options(o);
  const sweep::Method method = sweep::parse_method(o.method);
  const torch::Device device = select_compute_device(parse_device(o.device), o.gpu, comm);
  const auto transport = make_exchange_transport(parse_exchange(o.exchange), device, comm);

  const SweepInputs in = read_inputs(o, comm);
  std::vector<uint8_t> done = open_output(o, in.header, comm);
  // The plan comes from the SAEs' shapes alone: every activation is fused into a top-k scan whose cost does
  // not depend on the data (NOTE in sweep/topk_cpu.cpp), so a row costs d_in x d_sae whatever the layer.
  std::vector<double> costs;
  for (const auto& c : in.sae_cfgs) costs.push_back(static_cast<double>(c.d_in) * static_cast<double>(c.d_sae));
  const dist::WorkPlan plan = dist::plan_work(comm.size(), costs);
  check_gpu_memory(o, in, plan, device, comm);
  if (device.is_cuda()) gpu_reset_peak(device.index());
  RankWork work = load_rank_work(o, in, plan, device, *transport, comm);
  announce(in, work, device, o, comm);

  output::ParallelSweepFile file(o.out, comm);
  const int64_t n_prompts = static_cast<int64_t>(in.header.prompts.size());
  int64_t already_done = 0, rows_to_do = 0;
  for (int64_t p = 0; p < n_prompts; ++p) {
    already_done += done[p];
    if (!done[p]) {
      rows_to_do += sweep::rows_of_prompt(static_cast<int64_t>(in.header.prompts[p].ids.size())) *
                    static_cast<int64_t>(in.layers.size());
    }
  }
  Progress progress(comm, n_prompts, rows_to_do);
  progress.add_done_prompts(already_done, 0);
  SweepResult result;
  result.out = o.out;
  result.prompts = n_prompts;
  result.skipped = static_cast<int64_t>(in.header.skipped.size());
  result.rows = in.header.total_rows();

  const FaultInjection faults(comm.rank());
  Scratch scratch;
  int64_t computed = 0;
  times.startup = seconds_since(started);
  const auto loop_started = std::chrono::steady_clock::now();
  for (int64_t p = 0; p < n_prompts; ++p) {
    if (done[p]) continue;
    faults.before_prompt(computed, file);
    if (comm.any(stop_requested())) {
      result.interrupted = true;
      break;
    }
    model::ForwardCapture capture;
    const int64_t my_rows = sweep_prompt(p, o, in, work, method, device, file, scratch, times, comm, capture);
    write_readout_and_done(p, in, work, capture, file, times, comm);
    done[p] = 1;
    progress.add_done_prompts(1, my_rows);
    ++computed;
  }
  const auto t_close = std::chrono::steady_clock::now();
  file.close();
  times.write += seconds_since(t_close);
  times.other = std::max(0.0, seconds_since(loop_started) - times.measured_loop());
  progress.finish();
  report_resources(work, device, times, result, comm);

  int64_t n_done = 0;
  for (uint8_t d : done) n_done += d;
  result.prompts_done = n_done;
  result.complete = n_done == n_prompts;
  if (comm.rank() == 0) {
    output::finalize_sweep_file(o.out, [&](int32_t id) { return in.tok->token_text(id); }, result.complete);
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
