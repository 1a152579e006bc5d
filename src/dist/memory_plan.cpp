#include "saetraj/dist/memory_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::dist {

namespace {

std::vector<double> layer_costs(const MemoryPlanInput& in) {
  std::vector<double> costs;
  for (const auto& l : in.layers) costs.push_back(static_cast<double>(l.d_in) * static_cast<double>(l.d_sae));
  return costs;
}

bool fits(const std::vector<RankMemory>& ranks, int64_t capacity) {
  return std::all_of(ranks.begin(), ranks.end(), [&](const RankMemory& r) { return r.total() <= capacity; });
}

}  // namespace

int64_t encoder_bytes(const LayerShape& shape, bool bf16) {
  return shape.d_in * shape.d_sae * (bf16 ? 2 : 4) + 4 * (2 * shape.d_sae + shape.d_in);
}

int64_t transcoder_bytes(const LayerShape& shape) {
  const int64_t d = shape.d_in, w = shape.transcoder_width;
  return w > 0 ? 4 * (2 * d * w + 2 * w + 2 * d + d * d) : 0;
}

int64_t mlp_activation_bytes(const LayerShape& shape, int64_t max_tokens) {
  return shape.transcoder_width > 0 ? 3 * 4 * max_tokens * shape.d_in : 0;
}

int64_t gpu_working_bytes(const LayerShape& shape, int64_t chunk_rows, int64_t max_tokens, int64_t heads) {
  const int64_t rows = std::max(chunk_rows, max_tokens + 1);
  const int64_t projections = ((heads + 1) * max_tokens + 2) * shape.d_sae * 4;
  return rows * shape.d_sae * kGpuBytesPerChunkEntry + projections;
}

std::vector<RankMemory> plan_memory(const WorkPlan& plan, const MemoryPlanInput& in) {
  std::vector<RankMemory> out;
  for (int r = 0; r < static_cast<int>(plan.group_of_rank.size()); ++r) {
    RankMemory m;
    m.rank = r;
    int64_t mlp_tensors = 0;
    for (int i : plan.group_for(r).layer_indices) {
      m.encoders += encoder_bytes(in.layers[i], in.bf16) + transcoder_bytes(in.layers[i]);
      m.working = std::max(m.working, gpu_working_bytes(in.layers[i], in.chunk_rows, in.max_tokens, in.heads));
      mlp_tensors += mlp_activation_bytes(in.layers[i], in.max_tokens);
    }
    m.working += mlp_tensors;
    if (r == 0) m.model = in.model_bytes;
    out.push_back(m);
  }
  return out;
}

int min_ranks_that_fit(const MemoryPlanInput& in, int64_t capacity) {
  const auto costs = layer_costs(in);
  for (int ranks = 1; ranks <= static_cast<int>(in.layers.size()); ++ranks) {
    if (fits(plan_memory(plan_work(ranks, costs), in), capacity)) return ranks;
  }
  return -1;
}

std::string memory_shortfall(const WorkPlan& plan, const MemoryPlanInput& in, const std::vector<int>& model_layers,
                             int64_t capacity, int only_rank) {
  const auto ranks = plan_memory(plan, in);
  for (const auto& m : ranks) {
    if (m.total() <= capacity || (only_rank >= 0 && m.rank != only_rank)) continue;
    std::string layers;
    for (int i : plan.group_for(m.rank).layer_indices) layers += (layers.empty() ? "" : ",") + std::to_string(model_layers[i]);
    std::string advice;
    const int need = min_ranks_that_fit(in, capacity);
    if (need > 0) {
      advice = str("; ", need, " GPU(s) of this size would fit (mpirun -n ", need, " or more)");
    } else {
      advice = "; even one layer per GPU does not fit";
    }
    // The largest --chunk-rows with which this rank fits, if any.
    for (int64_t rows = in.chunk_rows / 2; rows >= 64; rows /= 2) {
      MemoryPlanInput smaller = in;
      smaller.chunk_rows = rows;
      if (plan_memory(plan, smaller)[m.rank].total() <= capacity) {
        advice += str(", or --chunk-rows ", rows, " with this many GPUs");
        break;
      }
    }
    if (!in.bf16) advice += ", or --sae-dtype bfloat16 (half the encoder memory)";
    return str("rank ", m.rank, "'s GPU cannot hold its share: layers ", layers, " need SAE encoders ",
               human_bytes(static_cast<double>(m.encoders)), " + working set ", human_bytes(static_cast<double>(m.working)),
               " (--chunk-rows ", in.chunk_rows, ", prompts up to ", in.max_tokens, " tokens)",
               m.model ? str(" + model ", human_bytes(static_cast<double>(m.model))) : std::string(), " = ",
               human_bytes(static_cast<double>(m.total())), ", but ", human_bytes(static_cast<double>(capacity)),
               " is available", advice);
  }
  return {};
}

int64_t parse_bytes(const std::string& text) {
  static const std::regex pattern(R"(^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*$)");
  std::smatch m;
  SAETRAJ_CHECK(std::regex_match(text, m, pattern), InputError, "\"", text,
                "\" is not a size (examples: 80GiB, 141G, 512MiB, 1000000)");
  const double value = std::stod(m[1].str());
  const char unit = static_cast<char>(std::toupper(m[2].str().empty() ? ' ' : m[2].str()[0]));
  const double base = m[3].matched && !m[3].str().empty() ? 1024.0 : (unit == ' ' ? 1.0 : 1024.0);
  int power = 0;
  switch (unit) {
    case 'K': power = 1; break;
    case 'M': power = 2; break;
    case 'G': power = 3; break;
    case 'T': power = 4; break;
    default: break;
  }
  return static_cast<int64_t>(value * std::pow(base, power));
}

}  // namespace saetraj::dist
