// `saetraj forward` and `saetraj tokenize`: what the model and the tokenizer compute, written out so that
// other tools (tests/fidelity/, which holds saetraj against transformers, tokenizers and sentencepiece)
// can compare it with their own.
#include <c10/core/InferenceMode.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/sweep/readout.h"
#include "saetraj/tokenizer/tokenizer.h"

namespace saetraj::cli {

namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SAETRAJ_CHECK(used == item.size() && !item.empty() && v >= 0 && v <= INT32_MAX, InputError,
                  "--prompt-ids: '", item, "' is not a non-negative token id (expected e.g. 1,2,3)");
    ids.push_back(static_cast<int32_t>(v));
  }
  SAETRAJ_CHECK(!ids.empty(), InputError, "--prompt-ids: no token ids given (expected e.g. 1,2,3)");
  return ids;
}

// A JSON string literal: the error messages written by `tokenize` may quote arbitrary bytes of the input.
std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x80) {
      // Non-ASCII bytes escaped one by one: the message may hold invalid UTF-8, and JSON must not.
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

int cmd_forward(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string model_dir, ids_text, out;
  bool readout = false;
  po::options_description options("Forward options");
  options.add_options()("model", po::value(&model_dir), "Hugging Face checkpoint folder")(
      "prompt-ids", po::value(&ids_text), "comma-separated token ids, e.g. 1,2,3")(
      "out", po::value(&out), "safetensors file to write: logits, resid_pre.L, resid_mid.L, resid_post.L")(
      "readout", po::bool_switch(&readout), "also write readout.L.ids/probs (SPEC 1.6, top 5, last position)");
  po::variables_map vm;
  if (!parse_command("forward", "--model DIR --prompt-ids 1,2,3 --out FILE.safetensors", options, {}, args, vm,
                     ctx.comm.rank() == 0))
    return 0;
  SAETRAJ_CHECK(!model_dir.empty(), InputError, "saetraj forward: give --model DIR");
  SAETRAJ_CHECK(!ids_text.empty(), InputError, "saetraj forward: give --prompt-ids 1,2,3");
  SAETRAJ_CHECK(!out.empty(), InputError, "saetraj forward: give --out FILE.safetensors");
  const auto ids = parse_ids(ids_text);
  if (ctx.comm.rank() != 0) return 0;

  c10::InferenceMode guard;
  const auto model = model::load_model(model_dir);
  const auto capture = model->forward(ids, {});
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {{"logits", capture.logits.to(torch::kFloat32)}};
  for (size_t l = 0; l < capture.layers.size(); ++l) {
    const auto& layer = capture.layers[l];
    const auto name = std::to_string(l);
    tensors.emplace_back("resid_pre." + name, layer.resid_pre.to(torch::kFloat32));
    tensors.emplace_back("resid_mid." + name, layer.resid_mid.to(torch::kFloat32));
    tensors.emplace_back("resid_post." + name, layer.resid_post.to(torch::kFloat32));
    if (readout) {
      const auto r = sweep::layer_readout(*model, layer.resid_post[layer.resid_post.size(0) - 1]);
      tensors.emplace_back("readout." + name + ".ids",
                           torch::tensor(std::vector<int32_t>(r.token_ids), torch::kInt32));
      tensors.emplace_back("readout." + name + ".probs", torch::tensor(std::vector<float>(r.probs)));
    }
  }
  io::write_safetensors(out, tensors);
  std::cout << "forward: " << ids.size() << " tokens, " << capture.layers.size() << " layers -> " << out << "\n";
  return 0;
}

int cmd_tokenize(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string model_dir, in, out;
  bool null_separated = false;
  po::options_description options("Tokenize options");
  options.add_options()("model", po::value(&model_dir), "folder with the tokenizer files")(
      "in", po::value(&in), "text file, one prompt per line ('\\n' separated; no BOS is added)")(
      "null-separated", po::bool_switch(&null_separated),
      "prompts in --in end with a NUL byte instead of a newline, so they may hold newlines")(
      "out", po::value(&out), "JSON lines: an array of ids per line, or {\"error\": MESSAGE} for a refused line");
  po::variables_map vm;
  if (!parse_command("tokenize", "--model DIR --in LINES.txt --out IDS.jsonl", options, {}, args, vm,
                     ctx.comm.rank() == 0))
    return 0;
  SAETRAJ_CHECK(!model_dir.empty(), InputError, "saetraj tokenize: give --model DIR");
  SAETRAJ_CHECK(!in.empty() && !out.empty(), InputError, "saetraj tokenize: give --in LINES.txt and --out IDS.jsonl");
  if (ctx.comm.rank() != 0) return 0;

  const auto tok = tokenizer::load_tokenizer(model_dir, std::nullopt);
  std::ifstream input(in, std::ios::binary);
  SAETRAJ_CHECK(input, IoError, "saetraj tokenize: cannot read ", in);
  std::ofstream output(out, std::ios::binary | std::ios::trunc);
  SAETRAJ_CHECK(output, IoError, "saetraj tokenize: cannot write ", out);
  std::string line;
  size_t lines = 0, refused = 0;
  while (std::getline(input, line, null_separated ? '\0' : '\n')) {
    ++lines;
    try {
      const auto ids = tok->encode(line);
      output << "[";
      for (size_t i = 0; i < ids.size(); ++i) output << (i ? "," : "") << ids[i];
      output << "]\n";
    } catch (const InputError& e) {
      // Refusing a line (invalid UTF-8) is an answer to compare, not a failure of the command.
      ++refused;
      output << "{\"error\":" << json_string(e.what()) << "}\n";
    }
  }
  output.close();
  SAETRAJ_CHECK(output, IoError, "saetraj tokenize: could not finish writing ", out);
  std::cout << "tokenize: " << lines << " lines (" << refused << " refused) -> " << out << "\n";
  return 0;
}

}  // namespace saetraj::cli
