// `saetraj encode`: given vectors encoded by one SAE folder and reduced to top-k active features, by the
// sweep's own code (SAE loading and preprocessing, the product through W_enc and the fused top-k scan of
// the direct method), so that other tools (tests/fidelity/, which holds saetraj against SAE-Lens) can
// compare saetraj's lists with their own encoding of the same vectors.
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/sae/transcoder.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::cli {

int cmd_encode(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string sae_path, transcoder_path, input, tensor = "x", out, center = "auto";
  int64_t k = 400;
  int layer = -1;
  po::options_description options("Encode options");
  options.add_options()("sae", po::value(&sae_path), "SAE folder or file in any layout saetraj reads: SAE-Lens "
                                                    "(cfg.json + sae_weights.safetensors), Gemma Scope params.npz, "
                                                    "Gemma Scope 2 params.safetensors, Llama Scope "
                                                    "(hyperparams.json), sparsify (cfg.json + sae.safetensors)")(
      "transcoder", po::value(&transcoder_path),
      "instead of --sae: an MLP transcoder (SAE-Lens transcoder folder, Gemma Scope transcoder params.npz, Gemma "
      "Scope 2 transcoder/ folder); its top-k features are listed and its output (decoder, bias and skip term) "
      "is written as 'output' [rows, d_out]")(
      "input", po::value(&input), "safetensors file holding the vectors to encode, [rows, d_in]")(
      "tensor", po::value(&tensor)->default_value(tensor), "name of the tensor in --input")(
      "k", po::value(&k)->default_value(k), "top-k active features kept per row")(
      "center", po::value(&center)->default_value(center),
      "centre each vector before encoding: auto (SAE cfg's center_writing_weights, as sweep), on, off")(
      "layer", po::value(&layer)->default_value(layer),
      "hook layer of a Gemma Scope params.npz whose path has no layer_L component")(
      "out", po::value(&out), "safetensors file to write: indices int32 [rows, k] (-1 = empty slot), values "
                              "float32 [rows, k]");
  po::variables_map vm;
  if (!parse_command("encode", "--sae DIR --input X.safetensors --k K --out LISTS.safetensors", options, {}, args,
                     vm, ctx.comm.rank() == 0))
    return 0;
  SAETRAJ_CHECK(sae_path.empty() != transcoder_path.empty(), InputError,
                "saetraj encode: give --sae DIR or --transcoder DIR (one of them)");
  SAETRAJ_CHECK(!input.empty(), InputError, "saetraj encode: give --input X.safetensors");
  SAETRAJ_CHECK(!out.empty(), InputError, "saetraj encode: give --out LISTS.safetensors");
  SAETRAJ_CHECK(k >= 1, InputError, "saetraj encode: --k must be at least 1, got ", k);
  SAETRAJ_CHECK(center == "auto" || center == "on" || center == "off", InputError,
                "saetraj encode: --center must be auto, on or off, got '", center, "'");
  if (ctx.comm.rank() != 0) return 0;

  c10::InferenceMode guard;
  sae::SaeSourceOptions source;
  if (center != "auto") source.sae_lens.center_residual = center == "on";
  std::optional<sae::Transcoder> transcoder;
  if (!transcoder_path.empty()) transcoder = sae::load_transcoder(transcoder_path, layer, source);
  const auto sae = transcoder ? transcoder->encoder : sae::load_sae(sae_path, layer, source);

  const auto file = io::SafetensorsFile::open(input);
  SAETRAJ_CHECK(file->contains(tensor), FormatError, input, ": no tensor '", tensor, "' (give its name with --tensor)");
  const auto& shape = file->info(tensor).shape;
  SAETRAJ_CHECK(shape.size() == 2 && shape[1] == sae.cfg.d_in, FormatError, "tensor '", tensor, "' in ", input,
                " has wrong shape; expected [rows, ", sae.cfg.d_in, "] (the SAE's d_in), got ",
                shape_str(shape));
  SAETRAJ_CHECK(shape[0] >= 1, FormatError, "tensor '", tensor, "' in ", input, " has no rows");
  const auto x = file->load(tensor, torch::kFloat32);
  const int64_t rows = x.size(0);

  // The direct method's encoding, row block and all: preprocessing, x W_enc, then the activation fused
  // into the top-k scan (a TopK SAE keeps at most its own k).
  const auto product = sae.project(sae.preprocess(x)).contiguous();
  const bool jump = sae.cfg.activation == sae::Activation::JumpReLU;
  const int64_t keep = sae.cfg.activation == sae::Activation::TopK ? std::min(k, sae.cfg.topk_k) : k;
  const auto bias = sae.b_enc.to(torch::kFloat32).contiguous();
  const auto threshold = jump ? sae.threshold.to(torch::kFloat32).contiguous() : torch::Tensor();
  auto indices = torch::empty({rows, k}, torch::kInt32);
  auto values = torch::empty({rows, k}, torch::kFloat32);
  const bool finite =
      sweep::topk_active_fused(product, bias.data_ptr<float>(), jump ? threshold.data_ptr<float>() : nullptr, keep, k,
                               indices.data_ptr<int32_t>(), values.data_ptr<float>());
  SAETRAJ_CHECK(finite, NumericError, "saetraj encode: a pre-activation of ", input, " is NaN or Inf");
  std::vector<std::pair<std::string, torch::Tensor>> written{{"indices", indices}, {"values", values}};
  if (transcoder) written.emplace_back("output", transcoder->forward(x).contiguous());
  io::write_safetensors(out, written);
  std::cout << "encode: " << rows << " rows, " << sae.cfg.id << " (" << sae.cfg.preprocessing_summary() << ") -> "
            << out << "\n";
  return 0;
}

}  // namespace saetraj::cli
