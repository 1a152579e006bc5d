#include <filesystem>
#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/dist/partition.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/config.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::cli {

namespace fs = std::filesystem;

namespace {

void describe_model(const std::string& dir) {
  const auto c = model::ModelConfig::from_folder(dir);
  const auto weights = io::SafetensorsSet::open_folder(dir);
  int64_t params = 0;
  for (const auto& name : weights.names()) params += weights.info(name).numel();
  std::cout << "model:        " << dir << "\n"
            << "architecture: " << model::arch_name(c.arch) << "\n"
            << "layers:       " << c.n_layers << "\n"
            << "d_model:      " << c.d_model << " (" << c.n_heads << " heads of " << c.head_dim << ", "
            << c.n_kv_heads << " key/value heads)\n"
            << "vocabulary:   " << c.vocab_size << ", context " << c.n_ctx << "\n"
            << "parameters:   " << params << " (" << human_bytes(4.0 * params) << " as float32)\n";
}

void describe_sae(const std::string& dir) {
  const auto c = sae::is_gemma_scope(dir) ? sae::read_gemma_scope_config(dir) : sae::read_sae_lens_config(dir);
  std::cout << "SAE:           " << dir << "\n"
            << "id:            " << c.id << "\n"
            << "hook:          " << c.hook_name << " (layer " << c.hook_layer << ")\n"
            << "d_in x d_sae:  " << c.d_in << " x " << c.d_sae << "\n"
            << "preprocessing: " << c.preprocessing_summary() << "\n"
            << "encoder bytes: " << human_bytes(4.0 * (c.d_in + 2) * c.d_sae + 4.0 * c.d_in)
            << " in memory (W_dec is not loaded)\n";
}

void describe_sweep(const std::string& path) {
  using namespace output;
  const H5Handle f = h5_file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "opening " + path);
  SAETRAJ_CHECK(has_attr(f, "format") && read_attr_string(f, "format") == kSweepFormat, FormatError, path,
                " is not a saetraj sweep file");
  const auto layers = read_attr_ints(f, "layers");
  const auto done = read_vector<uint8_t>(f, "prompts/done");
  int64_t n_done = 0;
  for (auto d : done) n_done += d;
  std::cout << "sweep:        " << path << " (format " << read_attr_string(f, "format") << " v"
            << read_attr_int(f, "format_version") << ")\n"
            << "model:        " << read_attr_string(f, "model") << " (" << read_attr_string(f, "architecture") << ")\n"
            << "layers:       " << layers.size() << " of " << read_attr_int(f, "n_model_layers") << ", k = "
            << read_attr_int(f, "k") << "\n"
            << "prompts:      " << done.size() << " (" << n_done << " done), "
            << read_vector<int64_t>(f, "skipped/line").size() << " skipped\n"
            << "complete:     " << (read_attr_int(f, "complete") ? "yes" : "no") << "\n"
            << "graphs:       " << (link_exists(f, "graphs") ? "T = " + std::to_string(read_attr_int(
                                                                     h5_group(H5Gopen2(f, "graphs", H5P_DEFAULT), "graphs"), "top_t"))
                                                             : std::string("not built")) << "\n"
            << "explanations: " << (link_exists(f, "explanations") ? "yes" : "no") << "\n"
            << "created:      " << read_attr_string(f, "created_utc") << "\n";
}

}  // namespace

int cmd_info(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string path;
  po::options_description options("Info options");
  options.add_options()("path", po::value(&path), "a checkpoint folder, an SAE-Lens folder or a sweep file");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (!parse_command("info", "PATH", options, pos, args, vm, ctx.comm.rank() == 0)) return 0;
  SAETRAJ_CHECK(!path.empty(), InputError, "saetraj info: give a path");
  if (ctx.comm.rank() != 0) return 0;
  if (fs::is_directory(path) && fs::exists(path + "/config.json")) {
    describe_model(path);
  } else if ((fs::is_directory(path) && fs::exists(path + "/cfg.json")) || sae::is_gemma_scope(path)) {
    describe_sae(path);
  } else if (fs::is_regular_file(path)) {
    describe_sweep(path);
  } else {
    throw InputError(str("saetraj info: ", path, " is neither a checkpoint folder (config.json), an SAE-Lens folder ",
                         "(cfg.json), a Gemma Scope params.npz nor a sweep file"));
  }
  return 0;
}

int cmd_plan(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string model_dir, layers_spec = "all";
  std::vector<std::string> saes;
  int ranks = 0;
  int64_t n_tokens = 25, chunk_rows = 2048;
  po::options_description options("Plan options");
  options.add_options()("model", po::value(&model_dir), "checkpoint folder")(
      "sae", po::value(&saes)->composing(), "SAE folders, as for sweep")(
      "layers", po::value(&layers_spec)->default_value(layers_spec), "analysed layers")(
      "ranks,n", po::value(&ranks), "number of ranks to plan for (default: this job's)")(
      "tokens", po::value(&n_tokens)->default_value(n_tokens), "prompt length to show the query split for")(
      "chunk-rows", po::value(&chunk_rows)->default_value(chunk_rows), "rows per matrix product");
  po::variables_map vm;
  if (!parse_command("plan", "--model DIR --sae PATTERN [--ranks N]", options, {}, args, vm, ctx.comm.rank() == 0)) {
    return 0;
  }
  if (ctx.comm.rank() != 0) return 0;
  SAETRAJ_CHECK(!model_dir.empty(), InputError, "saetraj plan: --model is required");
  if (ranks <= 0) ranks = ctx.comm.size();
  const auto config = model::ModelConfig::from_folder(model_dir);
  const auto layers = pipeline::parse_layers(layers_spec, config.n_layers);
  const auto folders = pipeline::resolve_sae_folders(saes, layers);
  std::vector<double> costs;
  std::vector<double> bytes;
  for (size_t i = 0; i < folders.size(); ++i) {
    const auto c = sae::read_sae_config(folders[i], layers[i], {});
    costs.push_back(double(c.d_in) * double(c.d_sae));
    bytes.push_back(4.0 * (c.d_in + 2) * c.d_sae + 4.0 * c.d_in);
  }
  const auto plan = dist::plan_work(ranks, costs);
  const auto chunks = dist::query_chunks(n_tokens, chunk_rows);
  std::cout << "plan for " << ranks << " rank(s), " << layers.size() << " layer(s), a prompt of " << n_tokens
            << " tokens (" << sweep::rows_of_prompt(n_tokens) << " rows per layer, " << chunks.size() << " chunk(s))\n";
  for (int r = 0; r < ranks; ++r) {
    const auto& g = plan.group_for(r);
    const auto [c0, c1] = dist::chunks_for_member(chunks, static_cast<int>(g.ranks.size()), plan.index_in_group(r));
    const int64_t rows = c0 < c1 ? sweep::rows_of_prompt(chunks[c1 - 1].second) - sweep::rows_of_prompt(chunks[c0].first) : 0;
    double held = 0;
    std::string names;
    for (int i : g.layer_indices) {
      held += bytes[i];
      names += " " + std::to_string(layers[i]);
    }
    std::cout << "  rank " << r << ": layers" << names << "; rows per layer " << rows << "; SAE encoders "
              << human_bytes(held) << "\n";
  }
  return 0;
}

}  // namespace saetraj::cli
