#include "saetraj/pipeline/merge_runner.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "saetraj/core/error.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/pipeline/collective.h"
#include "saetraj/pipeline/graph_builder.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::pipeline {

namespace {

struct Shard {
  output::SweepReader file;
  int64_t index = 0, count = 0;
  nlohmann::json settings;
  output::SweepReadout readout;
};

// What every shard of one corpus sweep shares: the file's attributes and the run's options, without the two
// that differ per task (--shard, --out) and the attributes that record when and how a task was started.
nlohmann::json shared_settings(const output::SweepReader& r) {
  const auto& a = r.attributes();
  nlohmann::json config = nlohmann::json::parse(a.config_json.empty() ? "{}" : a.config_json, nullptr, false);
  SAETRAJ_CHECK(config.is_object(), FormatError, r.path(), ": attribute 'config' is not a JSON object");
  config.erase("shard");
  config.erase("out");
  return {{"model", a.model}, {"architecture", a.architecture}, {"d_model", a.d_model},
          {"n_model_layers", a.n_model_layers}, {"layers", a.layers}, {"k", a.k}, {"sae_ids", a.sae_ids},
          {"sae_hooks", a.sae_hooks}, {"sae_preprocessing", a.sae_preprocessing}, {"bos", a.bos},
          {"head_slots", r.head_slots()}, {"heads", r.heads()}, {"order_slots", r.order_slots()},
          {"orders", r.orders()}, {"order_seed", r.order_seed()}, {"graphs", r.has_graphs()},
          {"mlp_transcoders", r.mlp_transcoder_ids()}, {"mlp_transcoder_hooks", r.mlp_transcoder_hooks()},
          {"options", config}};
}

// The first setting in which `b` differs from `a`, as "NAME is X there, Y here".
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& prefix = "") {
  for (const auto& [key, value] : a.items()) {
    const std::string name = prefix + key;
    if (!b.contains(key)) return name + " is " + value.dump() + " there and absent here";
    if (value.is_object() && b[key].is_object()) {
      const auto d = first_difference(value, b[key], name + ".");
      if (!d.empty()) return d;
    } else if (value != b[key]) {
      return name + " is " + value.dump() + " there, " + b[key].dump() + " here";
    }
  }
  for (const auto& [key, value] : b.items()) {
    if (!a.contains(key)) return prefix + key + " is absent there and " + value.dump() + " here";
  }
  return "";
}

Shard open_shard(const std::string& path) {
  Shard s{output::SweepReader::open(path), 0, 0, {}, {}};
  const auto& a = s.file.attributes();
  int64_t done = 0;
  for (uint8_t d : s.file.prompts().done) done += d != 0;
  SAETRAJ_CHECK(a.complete && done == s.file.n_prompts(), InputError, path, " is incomplete (", done, " of ",
                s.file.n_prompts(), " prompts done", a.complete ? "" : ", complete = 0",
                "); finish it with its sweep command and --resume, then merge");
  const auto config = nlohmann::json::parse(a.config_json.empty() ? "{}" : a.config_json, nullptr, false);
  const std::string shard = config.is_object() && config.contains("shard") && config["shard"].is_string()
                                ? config["shard"].get<std::string>()
                                : std::string();
  static const std::regex shard_re(R"(^(\d+)/(\d+)$)");
  std::smatch m;
  SAETRAJ_CHECK(std::regex_match(shard, m, shard_re), InputError, path,
                " is not a shard (it was swept without --shard I/N); merge takes the shard files of one corpus sweep");
  s.index = std::stoll(m[1].str());
  s.count = std::stoll(m[2].str());
  SAETRAJ_CHECK(s.count >= 1 && s.index < s.count, FormatError, path, ": its --shard ", shard, " is not I/N with I < N");
  s.settings = shared_settings(s.file);
  s.readout = s.file.readout();
  return s;
}

// Where a shard's prompts and skipped prompts stood in the corpus. Shard I of N took input positions I, I+N,
// ...; its skipped prompts keep their position in that share (/skipped/line), and its prompts fill the
// remaining positions in order.
struct Placed {
  std::vector<int64_t> prompt_position, skipped_position;
};

Placed place(const Shard& s) {
  const auto& p = s.file.prompts();
  const int64_t total = s.file.n_prompts() + static_cast<int64_t>(p.skipped_line.size());
  std::vector<bool> skipped(total, false);
  Placed out;
  for (int64_t line : p.skipped_line) {
    SAETRAJ_CHECK(line >= 0 && line < total && !skipped[line], FormatError, s.file.path(), ": /skipped/line holds ",
                  line, ", not a distinct position among its ", total, " input prompts");
    skipped[line] = true;
    out.skipped_position.push_back(s.index + s.count * line);
  }
  for (int64_t j = 0; j < total; ++j) {
    if (!skipped[j]) out.prompt_position.push_back(s.index + s.count * j);
  }
  return out;
}

}  // namespace

MergeResult merge_shards(const MergeOptions& o, const dist::Communicator& comm) {
  SAETRAJ_CHECK(!o.shards.empty(), InputError, "saetraj merge: give the shard files");
  SAETRAJ_CHECK(!o.out.empty(), InputError, "saetraj merge: --out is required");
  SAETRAJ_CHECK(o.overwrite || !std::filesystem::exists(o.out), InputError, "saetraj merge: ", o.out,
                " already exists; pass --overwrite to replace it, or choose another --out");
  // Every rank reads the same files and so raises the same error: rank 0 speaks for all.
  std::vector<Shard> shards;
  std::vector<Placed> placed;
  output::SweepHeader header;
  struct Source {
    size_t shard;
    int64_t prompt;
  };
  std::vector<Source> sources;
  try {
    for (const auto& path : o.shards) {
      SAETRAJ_CHECK(path != o.out, InputError, "saetraj merge: --out ", o.out, " is also one of the shards");
      shards.push_back(open_shard(path));
    }
    const Shard& first = shards.front();
    std::map<int64_t, std::string> by_index;
    for (const auto& s : shards) {
      SAETRAJ_CHECK(s.count == first.count, InputError, s.file.path(), " is shard ", s.index, "/", s.count, ", but ",
                    first.file.path(), " is one of ", first.count, " shards");
      const auto diff = first_difference(first.settings, s.settings);
      SAETRAJ_CHECK(diff.empty(), InputError, s.file.path(), " was made with other settings than ", first.file.path(),
                    ": ", diff);
      const auto [it, fresh] = by_index.emplace(s.index, s.file.path());
      SAETRAJ_CHECK(fresh, InputError, s.file.path(), " and ", it->second, " are both shard ", s.index, "/", s.count,
                    " (overlapping prompts)");
    }
    for (int64_t i = 0; i < first.count; ++i) {
      SAETRAJ_CHECK(by_index.count(i), InputError, "shard ", i, "/", first.count,
                    " is missing: its prompts would be missing from ", o.out, "; give all ", first.count,
                    " shard files");
    }
    int64_t total = 0;
    for (const auto& s : shards) {
      placed.push_back(place(s));
      total += static_cast<int64_t>(placed.back().prompt_position.size() + placed.back().skipped_position.size());
    }
    for (size_t k = 0; k < shards.size(); ++k) {
      const auto& s = shards[k];
      const int64_t expected = (total - s.index + s.count - 1) / s.count;
      const int64_t held = static_cast<int64_t>(placed[k].prompt_position.size() + placed[k].skipped_position.size());
      SAETRAJ_CHECK(held == expected, InputError, s.file.path(), " holds ", held, " input prompts, but shard ",
                    s.index, "/", s.count, " of a corpus of ", total, " holds ", expected,
                    " (the shards come from different corpora)");
    }
  } catch (Error& e) {
    e.set_collective();
    throw;
  }

  // The header of the unsharded sweep: prompts and skipped prompts in corpus order.
  const Shard& first = shards.front();
  const auto& a = first.file.attributes();
  header.model = a.model;
  header.architecture = a.architecture;
  header.d_model = a.d_model;
  header.n_model_layers = a.n_model_layers;
  header.layers = a.layers;
  header.k = a.k;
  header.sae_ids = a.sae_ids;
  header.sae_hooks = a.sae_hooks;
  header.sae_preprocessing = a.sae_preprocessing;
  header.bos = a.bos;
  header.command_line = o.command_line;
  auto config = nlohmann::json::parse(a.config_json.empty() ? "{}" : a.config_json, nullptr, false);
  config["shard"] = "";
  config["out"] = o.out;
  header.config_json = config.dump();
  header.created_utc = output::utc_now_iso8601();
  if (first.file.has_heads()) {
    header.head_slots = first.file.head_slots();
    header.heads = first.file.heads();
  }
  if (first.file.has_order()) {
    header.order_slots = first.file.order_slots();
    header.orders = first.file.orders();
    header.order_seed = first.file.order_seed();
  }
  if (first.file.has_mlp()) {
    header.mlp_transcoder_ids = first.file.mlp_transcoder_ids();
    header.mlp_transcoder_hooks = first.file.mlp_transcoder_hooks();
    header.mlp_transcoder_hooks_out = first.file.mlp_transcoder_hooks_out();
  }
  std::map<int64_t, Source> prompt_at;
  std::map<int64_t, output::SkippedPrompt> skipped_at;
  for (size_t k = 0; k < shards.size(); ++k) {
    const auto& p = shards[k].file.prompts();
    for (size_t j = 0; j < placed[k].prompt_position.size(); ++j) {
      prompt_at[placed[k].prompt_position[j]] = {k, static_cast<int64_t>(j)};
    }
    for (size_t j = 0; j < placed[k].skipped_position.size(); ++j) {
      skipped_at[placed[k].skipped_position[j]] = {placed[k].skipped_position[j], p.skipped_id[j], p.skipped_text[j],
                                                   p.skipped_reason[j]};
    }
  }
  for (const auto& [position, src] : prompt_at) {
    const auto& p = shards[src.shard].file.prompts();
    const int64_t begin = p.token_offset[src.prompt], n = p.n_tokens[src.prompt];
    header.prompts.push_back({p.id[src.prompt], p.text[src.prompt],
                              std::vector<int32_t>(p.token_ids.begin() + begin, p.token_ids.begin() + begin + n),
                              std::vector<std::string>(p.token_text.begin() + begin, p.token_text.begin() + begin + n)});
    sources.push_back(src);
  }
  for (const auto& [position, s] : skipped_at) header.skipped.push_back(s);

  run_on_root(comm, [&] { output::create_sweep_file(o.out, header, o.overwrite); });
  const int64_t L = static_cast<int64_t>(header.layers.size());
  const auto row_offsets = header.row_offsets();
  const auto query_offsets = header.query_offsets();
  {
    output::ParallelSweepFile file(o.out, comm);
    for (size_t m = 0; m < sources.size(); ++m) {
      // Prompt m is written by one rank; the others join each collective write with nothing.
      const bool mine = static_cast<int>(m % static_cast<size_t>(comm.size())) == comm.rank();
      const Shard& s = shards[sources[m].shard];
      const int64_t p = sources[m].prompt, n = s.file.prompts().n_tokens[p];
      const int64_t rows = sweep::rows_of_prompt(n), from = s.file.prompts().row_offset[p];
      std::vector<std::vector<int32_t>> indices(L);
      std::vector<std::vector<float>> values(L);
      std::vector<output::EvolutionSlab> slabs;
      std::vector<float> split, order;
      std::vector<output::HeadSlab> head_slabs;
      std::vector<output::EvolutionSlab> order_slabs;
      output::MlpRecords mlp;
      std::vector<output::MlpSlab> mlp_slabs;
      if (mine) {
        for (int64_t i = 0; i < L; ++i) {
          indices[i] = s.file.evolution_indices(i, from, rows);
          values[i] = s.file.evolution_values(i, from, rows);
          slabs.push_back({static_cast<int>(i), row_offsets[m], rows, indices[i].data(), values[i].data()});
        }
        if (file.has_heads()) {
          split = s.file.head_split(p);
          const int64_t per_layer = (n - 1) * header.head_slots * (header.heads + 3);
          for (int64_t i = 0; i < L; ++i) {
            head_slabs.push_back({static_cast<int>(i), query_offsets[m], n - 1, split.data() + i * per_layer});
          }
        }
        if (file.has_order()) {
          order = s.file.order_values(from, rows);
          const int64_t per_layer = rows * 3 * header.order_slots;
          for (int64_t i = 0; i < L; ++i) {
            order_slabs.push_back({static_cast<int>(i), row_offsets[m], rows, nullptr, order.data() + i * per_layer});
          }
        }
        if (file.has_mlp()) {
          mlp = s.file.mlp(p);
          const int64_t q = n - 1, k = header.k;
          for (int64_t i = 0; i < L; ++i) {
            mlp_slabs.push_back({static_cast<int>(i), query_offsets[m], q, mlp.steps.data() + i * q,
                                 mlp.final_indices.data() + i * q * k, mlp.final_values.data() + i * q * k,
                                 mlp.slots.data() + i * q * k * output::kMlpSlotColumns,
                                 mlp.activation.data() + i * q * k});
          }
        }
      }
      file.write_evolution(slabs);
      if (file.has_heads()) file.write_heads(head_slabs);
      if (file.has_order()) file.write_order(order_slabs);
      if (file.has_mlp()) file.write_mlp(mlp_slabs);
      const int64_t per_prompt = L * output::kReadoutTop;
      file.write_readout(static_cast<int64_t>(m), mine ? s.readout.token_ids.data() + p * per_prompt : nullptr,
                         mine ? s.readout.probs.data() + p * per_prompt : nullptr);
      file.mark_done(static_cast<int64_t>(m));
    }
    file.close();
  }

  MergeResult result;
  result.prompts = static_cast<int64_t>(header.prompts.size());
  result.skipped = static_cast<int64_t>(header.skipped.size());
  result.shards = static_cast<int64_t>(shards.size());
  run_on_root(comm, [&] {
    // The readout's token text as the shards wrote it, by token id.
    std::map<int32_t, std::string> text_of;
    for (const auto& s : shards) {
      for (size_t i = 0; i < s.readout.token_ids.size(); ++i) text_of.emplace(s.readout.token_ids[i], s.readout.token_text[i]);
    }
    output::finalize_sweep_file(o.out, [&](int32_t id) { return text_of.at(id); }, true);
    if (first.file.has_graphs()) {
      GraphBuildOptions g;
      g.top_t = {static_cast<int>(first.file.graph_top_t())};
      result.graph_prompts = build_graphs(o.out, g).prompts;
    }
  });
  comm.barrier();
  return result;
}

}  // namespace saetraj::pipeline
