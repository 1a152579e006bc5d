#include "synth_support.h"

#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/synth/synth.h"

namespace saetraj::synth::support {

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return (static_cast<double>(next() >> 11) + 0.5) / 9007199254740992.0; }

double Rng::normal() {
  const double u1 = uniform(), u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

torch::Tensor Rng::normal(std::vector<int64_t> shape, double std, double mean) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(mean + std * normal());
  return torch::from_blob(v.data(), shape, torch::kFloat32).clone();
}

void check_options(const SynthOptions& o) {
  SAETRAJ_CHECK(!o.out.empty(), InputError, "synth needs an output folder: give --out DIR");
  const std::pair<const char*, int> sizes[] = {{"--layers", o.n_layers},  {"--d-model", o.d_model},
                                               {"--heads", o.n_heads},    {"--d-mlp", o.d_mlp},
                                               {"--vocab", o.vocab_size}, {"--context", o.n_ctx},
                                               {"--d-sae", o.d_sae},      {"--sliding-window", o.sliding_window}};
  for (const auto& [option, value] : sizes) {
    SAETRAJ_CHECK(value >= 1, InputError, "synth: ", option, " must be at least 1, got ", value);
  }
  SAETRAJ_CHECK(o.n_kv_heads >= 0, InputError, "synth: --kv-heads must be 0 (automatic) or more, got ",
                o.n_kv_heads);
  // create_directories would fail half-way with "Not a directory": say which path is in the way.
  namespace fs = std::filesystem;
  for (fs::path p = fs::path(o.out); !p.empty(); p = p.parent_path()) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    SAETRAJ_CHECK(!fs::exists(st) || fs::is_directory(st), InputError, "--out ", o.out,
                  p == fs::path(o.out) ? std::string() : ": " + p.string(),
                  " is a file, not a folder; choose a folder for --out (it is created if missing)");
    if (p == p.parent_path()) break;
  }
}

void write_json(const std::string& path, const nlohmann::ordered_json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  SAETRAJ_CHECK(out.good(), IoError, "cannot write ", path);
}

void write_gzip_lines(const std::string& path, const std::vector<std::string>& lines) {
  gzFile f = gzopen(path.c_str(), "wb9");
  SAETRAJ_CHECK(f, IoError, "cannot write ", path);
  for (const auto& line : lines) {
    const std::string l = line + "\n";
    if (gzwrite(f, l.data(), static_cast<unsigned>(l.size())) != static_cast<int>(l.size())) {
      gzclose(f);
      throw IoError(str("cannot write ", path));
    }
  }
  SAETRAJ_CHECK(gzclose(f) == Z_OK, IoError, "cannot finish ", path);
}

void write_explanations(const std::string& root, const std::string& model_id, const std::string& source,
                        const torch::Tensor& acts, const std::vector<std::string>& row_token,
                        const std::vector<std::string>& row_prev, Rng& rng) {
  const auto best = acts.max(0);
  const std::string exp_dir = root + "/" + model_id + "/" + source + "/explanations";
  std::filesystem::create_directories(exp_dir);
  std::vector<std::string> batch[2];
  for (int64_t feat = 0; feat < acts.size(1); ++feat) {
    if (rng.next() % 8 == 0) continue;
    const float peak = std::get<0>(best)[feat].item<float>();
    const int64_t row = std::get<1>(best)[feat].item<int64_t>();
    const std::string description =
        peak > 0 ? "fires on \"" + row_token[row] + "\" after \"" + row_prev[row] + "\""
                 : "rarely active (synthetic feature " + std::to_string(feat) + ")";
    batch[rng.next() % 2].push_back(nlohmann::json{
        {"modelId", model_id},
        {"layer", source},
        {"index", std::to_string(feat)},
        {"description", description},
        {"explanationModelName",
         "saetraj-synth"}}.dump());
  }
  for (int b = 0; b < 2; ++b)
    write_gzip_lines(exp_dir + "/batch-" + std::to_string(b) + ".jsonl.gz", batch[b]);
}

Calibration calibrate(const model::Model& model, const tokenizer::Tokenizer& tok, int32_t bos, int64_t n_ctx) {
  const int64_t n_layers = model.config().n_layers;
  std::vector<std::vector<torch::Tensor>> mids(n_layers), posts(n_layers);
  Calibration c;
  std::stringstream lines(demo_corpus());
  for (std::string line; std::getline(lines, line);) {
    std::vector<int32_t> ids = tok.encode(line);
    ids.insert(ids.begin(), bos);
    if (static_cast<int64_t>(ids.size()) > n_ctx) ids.resize(n_ctx);
    const auto cap = model.forward(ids, {});
    for (int64_t l = 0; l < n_layers; ++l) {
      mids[l].push_back(cap.layers[l].resid_mid);
      posts[l].push_back(cap.layers[l].resid_post);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      c.row_token.push_back(tok.token_text(ids[i]));
      c.row_prev.push_back(i ? tok.token_text(ids[i - 1]) : "");
    }
  }
  for (int64_t l = 0; l < n_layers; ++l) {
    c.resid_mid.push_back(torch::cat(mids[l], 0));
    c.resid_post.push_back(torch::cat(posts[l], 0));
  }
  return c;
}

DecoderShape decoder_shape(const SynthOptions& o, bool honours_head_dim) {
  const bool own_head_dim = honours_head_dim && o.head_dim > 0;
  SAETRAJ_CHECK(own_head_dim || o.d_model % o.n_heads == 0, InputError,
                "synth: d_model must be a multiple of n_heads: --d-model ", o.d_model, ", --heads ", o.n_heads);
  const int kv = o.n_kv_heads > 0 ? o.n_kv_heads : (o.n_heads % 2 == 0 ? o.n_heads / 2 : o.n_heads);
  SAETRAJ_CHECK(o.n_heads % kv == 0, InputError, "synth: n_heads ", o.n_heads, " is not a multiple of n_kv_heads ",
                kv, " (--heads, --kv-heads)");
  return DecoderShape{o.d_model, o.d_mlp, o.n_heads, kv, own_head_dim ? o.head_dim : o.d_model / o.n_heads, 0};
}

std::vector<std::pair<std::string, torch::Tensor>> decoder_weights(const SynthOptions& o, const DecoderShape& s,
                                                                   const DecoderLayout& layout, Rng& rng) {
  const double in_d = 1.0 / std::sqrt(static_cast<double>(s.d));
  const double norm_mean = layout.gemma ? 0.0 : 1.0;
  std::vector<std::pair<std::string, torch::Tensor>> w;
  w.emplace_back("model.embed_tokens.weight", rng.normal({s.vocab, s.d}, layout.gemma ? in_d : 1.0));
  w.emplace_back("model.norm.weight", rng.normal({s.d}, 0.1, norm_mean));
  if (!layout.tied) w.emplace_back("lm_head.weight", rng.normal({s.vocab, s.d}, in_d));
  for (int l = 0; l < o.n_layers; ++l) {
    auto add = [&](const char* pattern, std::vector<int64_t> shape, double std, double mean = 0.0) {
      w.emplace_back(layer_name(pattern, l), rng.normal(std::move(shape), std, mean));
    };
    add("model.layers.{L}.input_layernorm.weight", {s.d}, 0.1, norm_mean);
    add("model.layers.{L}.self_attn.q_proj.weight", {s.h * s.hd, s.d}, 2.0 * in_d);
    add("model.layers.{L}.self_attn.k_proj.weight", {s.kv * s.hd, s.d}, 2.0 * in_d);
    add("model.layers.{L}.self_attn.v_proj.weight", {s.kv * s.hd, s.d}, in_d);
    add("model.layers.{L}.self_attn.o_proj.weight", {s.d, s.h * s.hd}, 1.0 / std::sqrt(double(s.h * s.hd)));
    if (layout.qk_norm) {
      // Far from the identity, so that a model skipping them would be caught.
      const double qk_mean = layout.gemma ? 0.0 : 1.5;
      add("model.layers.{L}.self_attn.q_norm.weight", {s.hd}, 0.3, qk_mean);
      add("model.layers.{L}.self_attn.k_norm.weight", {s.hd}, 0.3, qk_mean);
    }
    add("model.layers.{L}.post_attention_layernorm.weight", {s.d}, 0.1, norm_mean);
    if (layout.gemma) add("model.layers.{L}.pre_feedforward_layernorm.weight", {s.d}, 0.1);
    add("model.layers.{L}.mlp.gate_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.up_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.down_proj.weight", {s.d, s.m}, 1.0 / std::sqrt(double(s.m)));
    if (layout.gemma) add("model.layers.{L}.post_feedforward_layernorm.weight", {s.d}, 0.1);
  }
  return w;
}

int64_t bpe_vocab_size(const tokenizer::BpeModel& bpe) {
  int64_t vocab = 0;
  for (const auto& [piece, id] : bpe.vocab) vocab = std::max<int64_t>(vocab, id + 1);
  for (const auto& [piece, id] : bpe.special_tokens) vocab = std::max<int64_t>(vocab, id + 1);
  return vocab;
}

SynthResult sae_lens_result(const SynthOptions& o, const std::string& model_id) {
  SynthResult r;
  r.model_dir = o.out + "/model";
  r.sae_pattern = o.out + "/saes/layer_{layer}";
  r.explanations_root = o.out + "/explanations";
  r.neuronpedia_model = model_id;
  std::filesystem::create_directories(r.model_dir);
  return r;
}

void write_sae_lens_fixture_sae(SynthResult& r, const SynthOptions& o, int layer, const std::string& source_set,
                                nlohmann::ordered_json cfg, const sae::Sae& s, const torch::Tensor& directions,
                                const torch::Tensor& x, const Calibration& calibration, Rng& rng) {
  const std::string dir = o.out + "/saes/layer_" + std::to_string(layer);
  const std::string source = std::to_string(layer) + "-" + source_set;
  std::filesystem::create_directories(dir);
  cfg["metadata"] = {{"model_name", r.neuronpedia_model},
                     {"hook_name", "blocks." + std::to_string(layer) + ".hook_resid_post"},
                     {"prepend_bos", true},
                     {"model_from_pretrained_kwargs", nlohmann::ordered_json::object()},
                     {"neuronpedia_id", r.neuronpedia_model + "/" + source}};
  write_json(dir + "/cfg.json", cfg);
  io::write_safetensors(dir + "/sae_weights.safetensors", {{"W_enc", s.w_enc},
                                                           {"W_dec", directions.contiguous()},
                                                           {"b_enc", s.b_enc},
                                                           {"b_dec", s.b_dec}});
  r.sae_dirs.push_back(dir);
  write_explanations(r.explanations_root, r.neuronpedia_model, source, s.encode(x), calibration.row_token,
                     calibration.row_prev, rng);
}

GemmaStart start_gemma_fixture(const SynthOptions& o, const std::string& model_id) {
  check_options(o);
  DecoderShape shape = decoder_shape(o, true);
  SynthResult r;
  r.model_dir = o.out + "/" + model_id;
  r.gemmascope_root = o.out + "/saes";
  r.explanations_root = o.out + "/explanations";
  r.neuronpedia_model = model_id;
  r.gemmascope_width = sae::gemma_scope_width_label(o.d_sae);
  std::filesystem::create_directories(r.model_dir);
  tokenizer::train_sentencepiece(demo_corpus(), o.vocab_size, r.model_dir + "/tokenizer.model");
  tokenizer::SentencePieceTokenizer tok(r.model_dir + "/tokenizer.model", 2);
  shape.vocab = tok.vocab_size();
  return GemmaStart{std::move(r), std::move(tok), shape};
}

torch::Tensor data_directions(const torch::Tensor& z, int64_t d_sae, Rng& rng) {
  const int64_t d = z.size(1);
  auto directions = rng.normal({d_sae, d}, 1.0);
  for (int64_t feat = 0; feat < d_sae; feat += 2) {
    const int64_t row = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(z.size(0)));
    directions[feat] = z[row] / z[row].norm() * std::sqrt(double(d)) + 0.3 * directions[feat];
  }
  return directions / directions.norm(2, 1, true);
}

// One JumpReLU SAE calibrated on resid_post rows `x`: encoder directions half from the data, half random;
// threshold at the (1 - firing_rate) quantile of each feature's pre-activation.
sae::Sae calibrated_jumprelu_sae(const torch::Tensor& x, int64_t d_sae, double firing_rate, Rng& rng) {
  const int64_t d = x.size(1);
  const double scale = x.pow(2).sum(1).mean().sqrt().item<double>();
  const auto directions = data_directions(x, d_sae, rng);
  sae::Sae s;
  s.cfg.d_in = d;
  s.cfg.d_sae = d_sae;
  s.cfg.activation = sae::Activation::JumpReLU;
  s.cfg.apply_b_dec_to_input = false;
  s.w_enc = (directions / scale).t().contiguous();
  s.b_enc = rng.normal({d_sae}, 0.05);
  s.b_dec = x.mean(0).contiguous();
  s.threshold =
      (torch::matmul(x, s.w_enc) + s.b_enc).quantile(1.0 - firing_rate, 0).clamp_min(1e-3).contiguous();
  return s;
}

}  // namespace saetraj::synth::support
