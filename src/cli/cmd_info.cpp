#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/dist/memory_plan.h"
#include "saetraj/dist/partition.h"
#include "saetraj/pipeline/compute_device.h"
#include "saetraj/io/npz.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/config.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/pipeline/sae_sources.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/tokenizer/byte_level_bpe.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"

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
  const auto c = sae::inspect_sae(dir, -1, {});
  std::string fits = "yes";
  try {
    sae::require_residual_hook(c);
  } catch (const InputError& e) {
    fits = std::string("no: ") + e.what();
  }
  std::cout << "SAE:           " << dir << "\n"
            << "format:        " << c.format << " (architecture " << c.architecture << ")\n"
            << "id:            " << c.id << "\n"
            << "hook:          " << c.hook_name << " (" << sae::hook_kind_name(c.hook_kind) << ", layer "
            << c.hook_layer << ")" << (c.is_transcoder() ? " -> " + c.hook_name_out + " (transcoder)" : "") << "\n"
            << "residual SAE:  " << fits << "\n"
            << "d_in x d_sae:  " << c.d_in << " x " << c.d_sae << "\n"
            << "preprocessing: " << c.preprocessing_summary() << "\n"
            << "encoder bytes: " << human_bytes(4.0 * (c.d_in + 2) * c.d_sae + 4.0 * c.d_in)
            << " in memory (W_dec is not loaded)\n";
}

void describe_sweep(const std::string& path) {
  const auto r = output::SweepReader::open(path);
  const auto& a = r.attributes();
  int64_t n_done = 0;
  for (auto d : r.prompts().done) n_done += d;
  std::cout << "sweep:        " << path << " (format " << output::kSweepFormat << " v" << a.format_version << ")\n"
            << "model:        " << a.model << " (" << a.architecture << ")\n"
            << "layers:       " << a.layers.size() << " of " << a.n_model_layers << ", k = " << a.k << "\n"
            << "prompts:      " << r.n_prompts() << " (" << n_done << " done), " << r.prompts().skipped_line.size()
            << " skipped\n"
            << "complete:     " << (a.complete ? "yes" : "no") << "\n"
            << "graphs:       " << (r.has_graphs() ? "T = " + std::to_string(r.graph_top_t()) : std::string("not built"))
            << "\n"
            << "explanations: " << (r.has_explanations() ? "yes" : "no") << "\n"
            << "created:      " << a.created_utc << "\n";
  if (r.has_mlp()) {
    std::cout << "MLP path:     /mlp, transcoder per layer (--mlp-transcoder):";
    for (size_t i = 0; i < a.layers.size(); ++i) std::cout << " " << a.layers[i] << "=" << r.mlp_transcoder_ids()[i];
    std::cout << "\n";
  }
}

// [NOTE] What `info` takes a single file for. By name first (a damaged file still has its name), then by its
// first bytes: an HDF5 signature, a zip archive (npz), or a safetensors header (an 8-byte little-endian
// length followed by '{'). Each kind is then read by the reader a sweep uses, so a damaged file is described
// by the same one-line message a sweep would stop with.
enum class FileKind { Sweep, Safetensors, Npz, TokenizerJson, VocabMerges, SentencePiece, Unknown };

FileKind file_kind(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".safetensors")) return FileKind::Safetensors;
  if (ends_with(".npz")) return FileKind::Npz;
  if (ends_with("tokenizer.json")) return FileKind::TokenizerJson;
  if (name == "vocab.json" || name == "merges.txt") return FileKind::VocabMerges;
  if (ends_with(".model")) return FileKind::SentencePiece;
  if (ends_with(".h5") || ends_with(".hdf5")) return FileKind::Sweep;
  unsigned char head[9] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const auto got = in.gcount();
  if (got >= 8 && std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0) return FileKind::Sweep;
  if (got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return FileKind::Npz;
  if (got == 9 && head[8] == '{') {
    // A damaged file may claim more header than it holds; the reader then says so. 100 MB is the format's
    // limit on a header.
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | head[i];
    if (header_len >= 2 && header_len <= 100'000'000) return FileKind::Safetensors;
  }
  return FileKind::Unknown;
}

void describe_safetensors(const std::string& path) {
  const auto f = io::SafetensorsFile::open(path);
  int64_t params = 0;
  std::map<std::string, int64_t> dtypes;
  for (const auto& [name, info] : f->tensors()) {
    params += info.numel();
    ++dtypes[io::dtype_name(info.dtype)];
  }
  std::string dtype_list;
  for (const auto& [d, n] : dtypes) dtype_list += (dtype_list.empty() ? "" : ", ") + std::to_string(n) + " " + d;
  std::cout << "safetensors:  " << path << "\n"
            << "tensors:      " << f->tensors().size() << (dtype_list.empty() ? "" : " (" + dtype_list + ")")
            << "\n"
            << "parameters:   " << params << "\n";
  int shown = 0;
  for (const auto& [name, info] : f->tensors()) {
    if (shown++ == 8) {
      std::cout << "  ... and " << f->tensors().size() - 8 << " more\n";
      break;
    }
    std::cout << "  " << name << " " << io::dtype_name(info.dtype) << " " << shape_str(info.shape) << "\n";
  }
}

void describe_npz(const std::string& path) {
  const auto f = io::NpzFile::open(path);
  const auto names = f.names();
  std::cout << "npz:          " << path << "\n"
            << "arrays:       " << names.size() << "\n";
  for (const auto& name : names) std::cout << "  " << name << " " << shape_str(f.shape(name)) << "\n";
}

void describe_tokenizer(const std::string& path, FileKind kind) {
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (kind == FileKind::SentencePiece) {
    tok = std::make_unique<tokenizer::SentencePieceTokenizer>(path, std::nullopt);
  } else if (kind == FileKind::VocabMerges) {
    const auto dir = fs::path(path).parent_path();
    const std::string vocab = (dir / "vocab.json").string(), merges = (dir / "merges.txt").string();
    SAETRAJ_CHECK(fs::is_regular_file(vocab) && fs::is_regular_file(merges), FormatError, path,
                  ": a byte-level BPE tokenizer needs vocab.json and merges.txt side by side; ",
                  fs::is_regular_file(vocab) ? merges : vocab, " is missing");
    tok = std::make_unique<tokenizer::ByteLevelBpe>(
        tokenizer::ByteLevelBpe::from_vocab_merges(vocab, merges, std::nullopt));
  } else {
    SAETRAJ_CHECK(tokenizer::is_byte_level_tokenizer_json(path), FormatError, path,
                  " is not a byte-level BPE tokenizer.json (saetraj reads the tokenizer.model beside such a file)");
    tok = std::make_unique<tokenizer::ByteLevelBpe>(
        tokenizer::ByteLevelBpe::from_tokenizer_json(path, std::nullopt));
  }
  std::cout << "tokenizer:    " << path << "\n"
            << "kind:         " << tok->kind() << "\n"
            << "vocabulary:   " << tok->vocab_size() << "\n"
            << "BOS:          " << (tok->bos_id() ? std::to_string(*tok->bos_id()) : std::string("none"))
            << (tok->adds_bos_by_default() ? " (added by default)" : "") << "\n";
}

void describe_file(const std::string& path) {
  switch (const FileKind kind = file_kind(path)) {
    case FileKind::Sweep: return describe_sweep(path);
    case FileKind::Safetensors: return describe_safetensors(path);
    case FileKind::Npz: return describe_npz(path);
    case FileKind::TokenizerJson:
    case FileKind::VocabMerges:
    case FileKind::SentencePiece: return describe_tokenizer(path, kind);
    case FileKind::Unknown: break;
  }
  throw InputError(str("saetraj info: ", path, " is none of the files info reads: a sweep file (HDF5), a "
                       ".safetensors file, an .npz archive, or a tokenizer file (tokenizer.json, vocab.json, "
                       "merges.txt, tokenizer.model)"));
}

}  // namespace

int cmd_info(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string path;
  po::options_description options("Info options");
  options.add_options()("path", po::value(&path),
                        "a checkpoint folder, an SAE folder, a sweep file, or one .safetensors, .npz or "
                        "tokenizer file");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (!parse_command("info", "PATH", options, pos, args, vm, ctx.comm.rank() == 0)) return 0;
  SAETRAJ_CHECK(!path.empty(), InputError, "saetraj info: give a path");
  if (ctx.comm.rank() != 0) return 0;
  if (fs::is_directory(path) && fs::exists(path + "/config.json")) {
    describe_model(path);
  } else if (sae::is_sae_path(path)) {
    describe_sae(path);
  } else if (fs::is_regular_file(path)) {
    describe_file(path);
  } else if (!fs::exists(path)) {
    throw IoError(str("saetraj info: ", path, ": no such file or folder; check the path"));
  } else {
    throw InputError(str("saetraj info: ", path, " is neither a checkpoint folder (config.json), an SAE-Lens folder ",
                         "(cfg.json), a sparsify folder (cfg.json + sae.safetensors), a Llama Scope folder (hyperparams.json), a "
                         "Gemma Scope params.npz or Gemma Scope 2 params.safetensors, nor a sweep file"));
  }
  return 0;
}

int cmd_plan(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string model_dir, layers_spec = "all", device = "cpu", gpu_memory, sae_dtype = "float32";
  std::vector<std::string> saes, transcoders;
  int ranks = 0;
  int64_t n_tokens = 25, chunk_rows = 2048;
  po::options_description options("Plan options");
  options.add_options()("model", po::value(&model_dir), "checkpoint folder")(
      "sae", po::value(&saes)->composing(), "SAE folders, as for sweep")(
      "mlp-transcoder", po::value(&transcoders)->composing(),
      "MLP transcoders, as for sweep --mlp-transcoder: counted on their layers' ranks")(
      "layers", po::value(&layers_spec)->default_value(layers_spec), "analysed layers")(
      "ranks,n", po::value(&ranks), "number of ranks to plan for (default: this job's)")(
      "tokens", po::value(&n_tokens)->default_value(n_tokens), "prompt length to show the query split for")(
      "chunk-rows", po::value(&chunk_rows)->default_value(chunk_rows), "rows per matrix product")(
      "sae-dtype", po::value(&sae_dtype)->default_value(sae_dtype), "storage of W_enc: float32 or bfloat16")(
      "device", po::value(&device)->default_value(device), "cpu, or cuda: also print each GPU's memory need")(
      "gpu-memory", po::value(&gpu_memory),
      "with --device cuda: memory of one GPU (80GiB, 141G, ...; powers of 1024), to check the split against");
  po::variables_map vm;
  if (!parse_command("plan", "--model DIR --sae PATTERN [--mlp-transcoder PATTERN] [--ranks N] [--device cuda --gpu-memory 80GiB]", options,
                     {}, args, vm, ctx.comm.rank() == 0)) {
    return 0;
  }
  if (ctx.comm.rank() != 0) return 0;
  SAETRAJ_CHECK(!model_dir.empty(), InputError, "saetraj plan: --model is required");
  SAETRAJ_CHECK(sae_dtype == "float32" || sae_dtype == "bfloat16", InputError, "--sae-dtype must be float32 or bfloat16");
  const bool cuda = pipeline::parse_device(device) == pipeline::DeviceKind::Cuda;
  SAETRAJ_CHECK(cuda || gpu_memory.empty(), InputError, "--gpu-memory goes with --device cuda");
  if (ranks <= 0) ranks = ctx.comm.size();
  const auto config = model::ModelConfig::from_folder(model_dir);
  const auto layers = pipeline::parse_layers(layers_spec, config.n_layers);
  const auto folders = pipeline::resolve_sae_folders(saes, layers);
  std::vector<double> costs;
  dist::MemoryPlanInput mp;
  mp.bf16 = sae_dtype == "bfloat16";
  mp.chunk_rows = chunk_rows;
  mp.max_tokens = n_tokens;
  mp.heads = config.n_heads;
  mp.model_bytes = model::weight_bytes(config);
  pipeline::SweepOptions with_transcoders;
  with_transcoders.mlp_transcoders = transcoders;
  const auto transcoder_paths = pipeline::sweep_transcoder_paths(with_transcoders, layers);
  const auto transcoder_cfgs = pipeline::read_transcoder_configs(transcoder_paths, layers, config.d_model, {});
  for (size_t i = 0; i < folders.size(); ++i) {
    const auto c = sae::read_sae_config(folders[i], layers[i], {});
    costs.push_back(double(c.d_in) * double(c.d_sae));
    mp.layers.push_back({c.d_in, c.d_sae, transcoder_cfgs.empty() ? 0 : transcoder_cfgs[i].d_sae});
  }
  const auto plan = dist::plan_work(ranks, costs);
  const auto memory = dist::plan_memory(plan, mp);
  const auto chunks = dist::query_chunks(n_tokens, chunk_rows);
  std::cout << "plan for " << ranks << " rank(s), " << layers.size() << " layer(s), a prompt of " << n_tokens
            << " tokens (" << sweep::rows_of_prompt(n_tokens) << " rows per layer, " << chunks.size() << " chunk(s))\n";
  for (int r = 0; r < ranks; ++r) {
    const auto& g = plan.group_for(r);
    const auto [c0, c1] = dist::chunks_for_member(chunks, static_cast<int>(g.ranks.size()), plan.index_in_group(r));
    const int64_t rows = c0 < c1 ? sweep::rows_of_prompt(chunks[c1 - 1].second) - sweep::rows_of_prompt(chunks[c0].first) : 0;
    std::string names;
    for (int i : g.layer_indices) names += " " + std::to_string(layers[i]);
    std::cout << "  rank " << r << ": layers" << names << "; rows per layer " << rows
              << (transcoder_paths.empty() ? "; SAE encoders " : "; SAE encoders and transcoders ")
              << human_bytes(static_cast<double>(memory[r].encoders));
    if (cuda) {
      std::cout << "; GPU: working set " << human_bytes(static_cast<double>(memory[r].working))
                << (r == 0 ? "; model " + human_bytes(static_cast<double>(memory[r].model)) : std::string())
                << "; total " << human_bytes(static_cast<double>(memory[r].total()));
    }
    std::cout << "\n";
  }
  if (cuda && !gpu_memory.empty()) {
    const int64_t capacity = dist::parse_bytes(gpu_memory);
    const std::string shortfall = dist::memory_shortfall(plan, mp, layers, capacity);
    if (shortfall.empty()) {
      std::cout << "every rank fits in " << human_bytes(static_cast<double>(capacity)) << " of GPU memory\n";
    } else {
      std::cout << "does not fit: " << shortfall << "\n";
      return 2;
    }
  }
  return 0;
}

}  // namespace saetraj::cli
