#include "config_reader.h"

namespace saetraj::model {

void check_size(int64_t value, const char* key, const std::string& origin) {
  SAETRAJ_CHECK(value > 0, FormatError, origin, ": field \"", key, "\" must be positive, got ", value);
  SAETRAJ_CHECK(value <= kMaxConfigSize, FormatError, origin, ": field \"", key, "\" is ", value,
                ", above the limit of ", kMaxConfigSize, "; the config is corrupt");
}

void read_decoder_sizes(const ConfigReader& j, ModelConfig& c, const ModelConfig* defaults) {
  auto size = [&](const char* key, int64_t ModelConfig::*member) {
    c.*member = defaults ? j.optional<int64_t>(key, defaults->*member) : j.required<int64_t>(key);
  };
  size("hidden_size", &ModelConfig::d_model);
  size("num_hidden_layers", &ModelConfig::n_layers);
  check_size(c.n_layers, "number of layers", j.origin());
  size("num_attention_heads", &ModelConfig::n_heads);
  size("vocab_size", &ModelConfig::vocab_size);
  size("intermediate_size", &ModelConfig::d_mlp);
  c.n_kv_heads = j.optional<int64_t>("num_key_value_heads", defaults ? defaults->n_kv_heads : c.n_heads);
  c.head_dim = j.optional<int64_t>("head_dim", defaults ? defaults->head_dim : 0);
  c.n_ctx = j.optional<int64_t>("max_position_embeddings", defaults ? defaults->n_ctx : 8192);
  c.norm_eps = j.optional<double>("rms_norm_eps", defaults ? defaults->norm_eps : 1e-6);
  c.bos_token_id = j.has("bos_token_id") ? j.token("bos_token_id") : defaults ? defaults->bos_token_id : std::nullopt;
  c.eos_token_id = j.has("eos_token_id") ? j.token("eos_token_id") : defaults ? defaults->eos_token_id : std::nullopt;
}

RopeParams read_rope_object(const ConfigReader& rope, RopeParams base, std::initializer_list<const char*> supported,
                            const char* arch) {
  RopeParams p = base;
  p.theta = rope.optional<double>("rope_theta", p.theta);
  p.type = rope.optional<std::string>("rope_type", rope.optional<std::string>("type", "default"));
  bool known = false;
  std::string names;
  for (const char* s : supported) {
    known = known || p.type == s;
    names += (names.empty() ? "" : ", ") + std::string(s);
  }
  const std::string where = rope.field("rope_type");
  SAETRAJ_CHECK(known, InputError, rope.origin(), ": ", where.substr(0, where.rfind('.')), " type \"", p.type,
                "\" is not supported for ", arch, " (", names, ")");
  if (p.type == "linear" || p.type == "llama3") p.factor = rope.optional<double>("factor", 1.0);
  if (p.type == "llama3") {
    p.low_freq_factor = rope.optional<double>("low_freq_factor", 1.0);
    p.high_freq_factor = rope.optional<double>("high_freq_factor", 4.0);
    p.original_max_position = rope.optional<int64_t>("original_max_position_embeddings", 8192);
  }
  SAETRAJ_CHECK(p.theta > 0 && p.factor > 0, FormatError, rope.origin(), ": ", where.substr(0, where.rfind('.')),
                " has rope_theta ", p.theta, " and factor ", p.factor, "; both must be positive");
  return p;
}

// [NOTE] Two generations of RoPE fields. transformers 4 (the files on the Hub) writes a top-level
// rope_theta and, for scaled RoPE, a rope_scaling object; transformers 5 writes one rope_parameters
// object holding rope_theta, rope_type and the scaling fields, and no top-level rope_theta. Reading only
// the first would silently run a re-saved Llama-3 with theta 10000 and no llama3 scaling.
RopeParams read_rope(const ConfigReader& j, std::initializer_list<const char*> supported, const char* arch,
                     double default_theta) {
  RopeParams base;
  base.theta = j.optional<double>("rope_theta", default_theta);
  for (const char* field : {"rope_parameters", "rope_scaling"}) {
    if (j.has(field) && j.raw(field).is_object()) return read_rope_object(*j.child(field), base, supported, arch);
  }
  return base;
}

}  // namespace saetraj::model
