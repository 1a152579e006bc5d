// The MLP path in the sweep file (issue 15 part 3, step 3; NOTE The MLP path in output/sweep_file.h): a sweep
// with --mlp-transcoder writes format version 3 with /mlp, whose every (layer, query) record equals the MLP
// decomposition recomputed here from a fresh forward pass (mlp_query on the captured MLP input, resid_mid and
// resid_post, itself held to an independent double-precision recomputation in test_mlp_rows), whose step counts
// are the active transcoder features counted here from the raw tensors plus bias, skip and error, and whose
// final lists are the SAE's top-k of resid_post; a sweep without the option writes version 2 without /mlp and
// the same /evolution and /readout; bad --mlp-transcoder inputs and a /mlp in a version 2 file are refused in
// one line naming what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/model/model.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/pipeline/explain_runner.h"
#include "saetraj/pipeline/graph_builder.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae_lens.h"
#include "saetraj/sae/transcoder.h"
#include "saetraj/sweep/mlp_rows.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"
#include "test_support.h"

using namespace saetraj;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

namespace {

constexpr int64_t kD = 32, kK = 16, kWidth = 96;

struct Fixture {
  saetraj::testing::TempDir dir{"saetraj-mlp-file"};
  synth::SynthResult synth;
  std::vector<synth::RawTranscoder> raw;  // per model layer
  std::string transcoder_pattern;         // <dir>/tc/layer_{layer}
};

const Fixture& fixture() {
  static const Fixture* f = [] {
    auto* x = new Fixture;
    synth::SynthOptions o;
    o.out = x->dir.path();
    o.n_layers = 2;
    o.d_model = kD;
    o.n_heads = 4;
    o.d_mlp = 64;
    o.vocab_size = 320;
    o.n_ctx = 40;
    o.d_sae = kWidth;
    x->synth = synth::synth_gpt2_fixture(o);
    for (int l = 0; l < 2; ++l) {
      x->raw.push_back(synth::random_raw_transcoder(kD, kD, kWidth, l == 1, 500 + l));
      synth::write_sae_lens_transcoder(x->dir.file("tc/layer_" + std::to_string(l)),
                                       l == 1 ? "jumprelu_skip_transcoder" : "jumprelu_transcoder", l, x->raw[l]);
    }
    x->transcoder_pattern = x->dir.file("tc") + "/layer_{layer}";
    return x;
  }();
  return *f;
}

pipeline::SweepOptions options(const std::string& out, bool mlp) {
  pipeline::SweepOptions o;
  o.model = fixture().synth.model_dir;
  o.saes = {fixture().synth.sae_pattern};
  o.prompts = {"Mark gave flashlight to Max.", "Smith left the dark room"};
  o.k = kK;
  o.top_t = 5;
  o.chunk_rows = 20;
  o.graphs = false;
  if (mlp) o.mlp_transcoders = {fixture().transcoder_pattern};
  o.out = out;
  return o;
}

pipeline::SweepResult run(const pipeline::SweepOptions& o) {
  const auto comm = dist::make_serial_communicator();
  return pipeline::run_sweep(o, *comm);
}

// Active features of the raw transcoder at input m, as the JumpReLU encoder decides in float32.
int64_t active_features(const synth::RawTranscoder& raw, const torch::Tensor& m) {
  const auto pre = m.unsqueeze(0).mm(raw.w_enc).squeeze(0) + raw.b_enc;
  return (pre.gt(raw.threshold) & pre.gt(0)).sum().item<int64_t>();
}

}  // namespace

TEST(MlpFile, EveryRecordMatchesTheRecomputedDecomposition) {
  saetraj::testing::TempDir dir;
  const auto o = options(dir.file("m.h5"), true);
  ASSERT_TRUE(run(o).complete);
  const auto r = output::SweepReader::open(o.out);
  EXPECT_EQ(r.attributes().format_version, 3);
  ASSERT_TRUE(r.has_mlp());
  ASSERT_EQ(r.mlp_transcoder_hooks(), (std::vector<std::string>{"blocks.0.ln2.hook_normalized", "blocks.1.ln2.hook_normalized"}));
  EXPECT_EQ(r.mlp_transcoder_hooks_out()[1], "blocks.1.hook_mlp_out");
  EXPECT_THAT(r.attributes().config_json, HasSubstr("\"mlp_transcoder\""));

  const auto model = model::load_model(fixture().synth.model_dir);
  std::vector<sae::Sae> saes;
  std::vector<sae::Transcoder> transcoders;
  for (int l = 0; l < 2; ++l) {
    saes.push_back(sae::load_sae_lens(fixture().synth.sae_dirs[l]));
    transcoders.push_back(sae::load_transcoder(fixture().dir.file("tc/layer_" + std::to_string(l)), l));
  }
  int64_t newcomers = 0, feature_newcomers = 0;
  for (int64_t p = 0; p < r.n_prompts(); ++p) {
    const auto& pr = r.prompts();
    const std::vector<int32_t> ids(pr.token_ids.begin() + pr.token_offset[p],
                                   pr.token_ids.begin() + pr.token_offset[p] + pr.n_tokens[p]);
    const auto cap = model->forward(ids, {0, 1});
    const auto m = r.mlp(p);
    const int64_t Q = pr.n_tokens[p] - 1;
    ASSERT_EQ(static_cast<int64_t>(m.steps.size()), 2 * Q);
    for (int l = 0; l < 2; ++l) {
      const auto& c = cap.layers[l];
      for (int64_t q = 1; q <= Q; ++q) {
        const int64_t at = l * Q + q - 1;
        int32_t steps = 0;
        std::vector<int32_t> indices(kK), slots(kK * 3);
        std::vector<float> values(kK), activation(kK);
        sweep::mlp_query(transcoders[l], saes[l], c.mlp_in[q], c.resid_mid[q], c.resid_post[q], kK, &steps,
                         indices.data(), values.data(), slots.data(), activation.data());
        const std::string where = "prompt " + std::to_string(p) + " layer " + std::to_string(l) + " q " + std::to_string(q);
        // T + 1 rows: the active features, b_dec, the skip term (layer 1's transcoder only), the error, and x_0.
        EXPECT_EQ(m.steps[at], active_features(fixture().raw[l], c.mlp_in[q]) + (l == 1 ? 3 : 2) + 1) << where;
        EXPECT_EQ(m.steps[at], steps) << where;
        // The final list is the SAE's top-k of resid_post (x_T = resid_mid + y): its features carry its values.
        const auto acts = saes[l].encode(c.resid_post[q].unsqueeze(0)).squeeze(0);
        for (int64_t s = 0; s < kK; ++s) {
          const int64_t e = at * kK + s;
          EXPECT_EQ(m.final_indices[e], indices[s]) << where << " slot " << s;
          EXPECT_NEAR(m.final_values[e], values[s], 1e-4f * (1 + std::fabs(values[s]))) << where;
          if (m.final_indices[e] >= 0) {
            EXPECT_NEAR(m.final_values[e], acts[m.final_indices[e]].item<float>(), 1e-3f * (1 + std::fabs(values[s])));
          }
          for (int j = 0; j < 3; ++j) EXPECT_EQ(m.slots[e * 3 + j], slots[s * 3 + j]) << where << " slot " << s;
          if (std::isnan(activation[s])) {
            EXPECT_TRUE(std::isnan(m.activation[e])) << where;
          } else {
            EXPECT_NEAR(m.activation[e], activation[s], 1e-5f * (1 + std::fabs(activation[s]))) << where;
          }
          if (m.slots[e * 3] >= 1) {
            ++newcomers;
            const int32_t kind = m.slots[e * 3 + 1], feature = m.slots[e * 3 + 2];
            EXPECT_TRUE(kind >= 0 && kind <= 3) << where;
            EXPECT_LT(m.slots[e * 3], m.steps[at]) << where;
            if (kind == 0) {
              ++feature_newcomers;
              ASSERT_GE(feature, 0);
              // Its activation is the raw transcoder's pre-activation of that feature.
              const float pre = (c.mlp_in[q].unsqueeze(0).mm(fixture().raw[l].w_enc).squeeze(0) + fixture().raw[l].b_enc)[feature].item<float>();
              EXPECT_NEAR(m.activation[e], pre, 1e-4f * (1 + std::fabs(pre))) << where;
            } else {
              EXPECT_EQ(feature, -1) << where;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(newcomers, 0);
  EXPECT_GT(feature_newcomers, 0);
}

TEST(MlpFile, WithoutTheOptionTheFileIsVersion2AndItsDatasetsAreUnchanged) {
  saetraj::testing::TempDir dir;
  const auto with = options(dir.file("with.h5"), true), without = options(dir.file("without.h5"), false);
  ASSERT_TRUE(run(with).complete);
  ASSERT_TRUE(run(without).complete);
  const auto a = output::SweepReader::open(with.out), b = output::SweepReader::open(without.out);
  EXPECT_EQ(b.attributes().format_version, output::kSweepFormatVersion);
  EXPECT_EQ(output::kSweepFormatVersion, 2);
  EXPECT_FALSE(b.has_mlp());
  EXPECT_THAT(b.attributes().config_json, ::testing::Not(HasSubstr("mlp_transcoder")));
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_EQ(a.evolution_indices(l, 0, a.total_rows()), b.evolution_indices(l, 0, b.total_rows()));
    EXPECT_EQ(a.evolution_values(l, 0, a.total_rows()), b.evolution_values(l, 0, b.total_rows()));
  }
  EXPECT_EQ(a.readout().token_ids, b.readout().token_ids);
  EXPECT_EQ(a.prompts().token_ids, b.prompts().token_ids);
  EXPECT_THAT([&] { (void)b.mlp(0); }, ThrowsMessage<InputError>(HasSubstr("has no /mlp")));
  // explain --mlp-source on it (a copy: this test holds it open) is refused, saying why.
  const std::string copy = dir.file("without-copy.h5");
  std::filesystem::copy_file(without.out, copy);
  pipeline::ExplainOptions x;
  x.store.cache_dir = dir.file("cache");
  x.mlp_sources[0] = "synthetic-model/0-tc-96";
  EXPECT_THAT([&] { pipeline::explain_sweep(copy, x); },
              ThrowsMessage<InputError>(HasSubstr(copy + " has no /mlp (it was swept without --mlp-transcoder)")));
  // Resuming across the option is refused, naming it.
  auto resumed = with;
  resumed.out = without.out;
  resumed.resume = true;
  EXPECT_THAT([&] { run(resumed); }, ThrowsMessage<InputError>(HasSubstr("MLP transcoders (--mlp-transcoder)")));
}

TEST(MlpFile, BadTranscodersAreRefusedInOneLine) {
  saetraj::testing::TempDir dir;
  const auto& f = fixture();
  const auto tc = [&](int l) { return f.dir.file("tc/layer_" + std::to_string(l)); };
  auto o = options(dir.file("bad.h5"), false);
  const auto refuses = [&](std::vector<std::string> specs, const std::string& layers, const auto& matcher) {
    auto x = o;
    x.mlp_transcoders = std::move(specs);
    x.layers = layers;
    EXPECT_THAT([&] { run(x); }, ThrowsMessage<InputError>(matcher)) << layers;
    EXPECT_FALSE(std::filesystem::exists(x.out));
  };
  // A transcoder for a layer that is not swept.
  refuses({"0=" + tc(0), "1=" + tc(1)}, "0", AllOf(HasSubstr("--mlp-transcoder 1="), HasSubstr("not among the analysed layers")));
  // An analysed layer without one.
  refuses({"0=" + tc(0)}, "all", HasSubstr("no transcoder given for analysed layer 1"));
  // Layer 1's transcoder (blocks.1.ln2.hook_normalized) given for layer 0: the hook check names both.
  refuses({"0=" + tc(1)}, "0", AllOf(HasSubstr("layer 0"), HasSubstr("blocks.1.")));
  // A pattern without {layer}.
  refuses({tc(0)}, "0", HasSubstr("expected a folder pattern containing {layer} or LAYER=FOLDER"));
  // A transcoder of another width (d_in = 16 against d_model = 32), and one whose output is another width.
  synth::write_sae_lens_transcoder(dir.file("narrow"), "jumprelu_transcoder", 0,
                                   synth::random_raw_transcoder(16, kD, kWidth, false, 7));
  refuses({"0=" + dir.file("narrow")}, "0", AllOf(HasSubstr("reads vectors of size 16"), HasSubstr("d_model is 32")));
  synth::write_sae_lens_transcoder(dir.file("wide_out"), "jumprelu_transcoder", 0,
                                   synth::random_raw_transcoder(kD, 48, kWidth, false, 8));
  o.out = dir.file("bad_out.h5");
  auto x = o;
  x.mlp_transcoders = {"0=" + dir.file("wide_out")};
  x.layers = "0";
  EXPECT_THAT([&] { run(x); }, ThrowsMessage<InputError>(AllOf(HasSubstr("d_out = 48"), HasSubstr("d_model is 32"))));
}

TEST(MlpFile, MlpInAVersion2FileAndBrokenMlpAreRefused) {
  saetraj::testing::TempDir dir;
  const auto o = options(dir.file("m.h5"), true);
  ASSERT_TRUE(run(o).complete);
  {
    const output::H5Handle f = output::h5_file(H5Fopen(o.out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    output::write_attr(f, "format_version", int64_t{2});
  }
  EXPECT_THAT([&] { output::SweepReader::open(o.out); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr(o.out), HasSubstr("/mlp"), HasSubstr("format_version 2"))));
  {
    const output::H5Handle f = output::h5_file(H5Fopen(o.out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    output::write_attr(f, "format_version", int64_t{4});
  }
  EXPECT_THAT([&] { output::SweepReader::open(o.out); },
              ThrowsMessage<FormatError>(HasSubstr("reads versions 1 to 3")));
  // A /mlp of the wrong shape, or with a transcoder list that does not match the layers.
  {
    const output::H5Handle f = output::h5_file(H5Fopen(o.out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    output::write_attr(f, "format_version", int64_t{3});
    H5Ldelete(f, "mlp/steps", H5P_DEFAULT);
    output::write_vector(f, "mlp/steps", std::vector<int32_t>{1, 2, 3});
  }
  EXPECT_THAT([&] { output::SweepReader::open(o.out); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr(o.out + ": /mlp/steps has shape [3]; expected [2, "),
                                               HasSubstr("(layers x queries)"))));
  {
    const output::H5Handle f = output::h5_file(H5Fopen(o.out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    const auto group = output::h5_group(H5Gopen2(f, "mlp", H5P_DEFAULT), "/mlp");
    output::write_attr(group, "transcoder_ids", std::vector<std::string>{"only one"});
  }
  EXPECT_THAT([&] { output::SweepReader::open(o.out); },
              ThrowsMessage<FormatError>(HasSubstr(o.out + ": an attribute of /mlp holds 1 transcoders (ids or hooks) for 2 layers")));
}

// Step 4's JSON part: each length graph and the traced graph list the MLP path's newcomers with final position
// <= T of their query as "mlp_vertices" in their metadata, each with the transcoder feature (or term) that
// brought it in; read back from the JSON files and held to /mlp as the reader gives it.
TEST(MlpFile, JsonGraphsCarryTheMlpVertices) {
  saetraj::testing::TempDir dir;
  auto o = options(dir.file("g.h5"), true);
  o.graphs = true;
  o.top_t = 3;
  ASSERT_TRUE(run(o).complete);
  const auto r = output::SweepReader::open(o.out);
  const auto& pr = r.prompts();
  int64_t checked = 0;
  for (int64_t p = 0; p < r.n_prompts(); ++p) {
    const auto m = r.mlp(p);
    const int64_t Q = pr.n_tokens[p] - 1;
    for (int64_t q = 1; q <= Q; ++q) {
      const std::string folder = dir.file("g_graphs/T3/prompt_000" + std::to_string(p));
      const std::string file = q == Q ? folder + "/traced.json" : folder + "/length_" + (q + 1 < 10 ? "00" : "0") +
                                                                      std::to_string(q + 1) + ".json";
      std::ifstream in(file);
      ASSERT_TRUE(in.good()) << file;
      const auto json = nlohmann::json::parse(in);
      const auto& got = json.at("metadata").at("mlp_vertices");
      nlohmann::json want = nlohmann::json::array();
      for (int l = 0; l < 2; ++l) {
        const int64_t at = l * Q + q - 1;
        for (int64_t s = 0; s <= 3; ++s) {
          const int32_t* slot = m.slots.data() + (at * kK + s) * 3;
          if (slot[0] < 1) continue;
          const char* kinds[] = {"feature", "bias", "skip", "error"};
          want.push_back({{"layer", l}, {"feature", m.final_indices[at * kK + s]}, {"final_position", s},
                          {"step", slot[0]}, {"steps", m.steps[at]}, {"term", kinds[slot[1]]},
                          {"transcoder_feature", slot[1] == 0 ? nlohmann::json(slot[2]) : nlohmann::json(nullptr)},
                          {"transcoder_activation",
                           slot[1] == 0 ? nlohmann::json(m.activation[at * kK + s]) : nlohmann::json(nullptr)},
                          {"transcoder_explanation", nullptr},  // no `saetraj explain` ran
                          {"activation", m.final_values[at * kK + s]}});
        }
      }
      EXPECT_EQ(got, want) << file;
      checked += static_cast<int64_t>(want.size());
    }
  }
  EXPECT_GT(checked, 0);
  // traced.json's mlp_path: at every vertex (t >= 1) its traced edges touch, one MLP vertex per step that
  // brought features with final position <= 3 in, steps in increasing order; /graphs/mlp_path holds the same,
  // one row per feature.
  int64_t path_features = 0;
  const auto tables = r.graphs();
  ASSERT_TRUE(tables.has_mlp_path);
  std::vector<output::MlpPathRecord> want_rows;
  std::vector<float> want_activation;
  for (int64_t p = 0; p < r.n_prompts(); ++p) {
    const auto m = r.mlp(p);
    const int64_t Q = pr.n_tokens[p] - 1;
    std::ifstream in(dir.file("g_graphs/T3/prompt_000" + std::to_string(p) + "/traced.json"));
    const auto json = nlohmann::json::parse(in);
    std::set<std::pair<int, int>> vertices;
    for (const auto& e : json.at("edges")) {
      for (const char* end : {"from", "to"}) {
        if (e.at(end)[0].get<int>() >= 1) vertices.insert({e.at(end)[0].get<int>(), e.at(end)[1].get<int>()});
      }
    }
    ASSERT_FALSE(vertices.empty());
    nlohmann::json want = nlohmann::json::array();
    for (const auto& [t, l] : vertices) {
      const int64_t at = l * Q + t - 1;
      for (int32_t step = 1; step < m.steps[at]; ++step) {
        nlohmann::json features = nlohmann::json::array();
        const int32_t* term = nullptr;
        float activation = 0;
        for (int64_t s = 0; s <= 3; ++s) {
          const int32_t* slot = m.slots.data() + (at * kK + s) * 3;
          if (slot[0] != step) continue;
          term = slot;
          activation = m.activation[at * kK + s];
          features.push_back({{"feature", m.final_indices[at * kK + s]}, {"final_position", s},
                              {"activation", m.final_values[at * kK + s]}});
        }
        if (term == nullptr) continue;
        const char* kinds[] = {"feature", "bias", "skip", "error"};
        for (const auto& f : features) {
          want_rows.push_back({static_cast<int32_t>(p), t, l, step, m.steps[at], term[1], term[1] == 0 ? term[2] : -1,
                               f.at("feature").get<int32_t>(), f.at("final_position").get<int32_t>()});
          want_activation.push_back(term[1] == 0 ? activation : std::numeric_limits<float>::quiet_NaN());
        }
        want.push_back({{"token", t}, {"layer", l}, {"step", step}, {"steps", m.steps[at]}, {"term", kinds[term[1]]},
                        {"transcoder_feature", term[1] == 0 ? nlohmann::json(term[2]) : nlohmann::json(nullptr)},
                        {"transcoder_activation", term[1] == 0 ? nlohmann::json(activation) : nlohmann::json(nullptr)},
                        {"transcoder_explanation", nullptr},
                        {"features", features}});
        path_features += static_cast<int64_t>(features.size());
      }
    }
    EXPECT_EQ(json.at("metadata").at("mlp_path"), want) << "prompt " << p;
  }
  EXPECT_GT(path_features, static_cast<int64_t>(r.n_prompts()));
  EXPECT_EQ(tables.mlp_path, want_rows);
  ASSERT_EQ(tables.mlp_path_activation.size(), want_activation.size());
  for (size_t i = 0; i < want_activation.size(); ++i) {
    if (std::isnan(want_activation[i])) {
      EXPECT_TRUE(std::isnan(tables.mlp_path_activation[i])) << i;
    } else {
      EXPECT_EQ(tables.mlp_path_activation[i], want_activation[i]) << i;
    }
  }
  // A row that is no MLP step is refused on reading, naming the file, the table and the row.
  {
    const std::string broken = dir.file("broken.h5");
    std::filesystem::copy_file(o.out, broken);
    auto rows = want_rows;
    rows[0].term = 5;
    {
      const output::H5Handle f = output::h5_file(H5Fopen(broken.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
      H5Ldelete(f, "graphs/mlp_path", H5P_DEFAULT);
      const output::H5Handle g = output::h5_group(H5Gopen2(f, "graphs", H5P_DEFAULT), "graphs");
      const hsize_t n = rows.size();
      const output::H5Handle type = output::h5_type(H5Tcreate(H5T_COMPOUND, 9 * sizeof(int32_t)), "type");
      const char* names[] = {"prompt", "token", "layer", "step", "steps", "term", "transcoder_feature", "feature",
                             "final_position"};
      for (size_t i = 0; i < 9; ++i) H5Tinsert(type, names[i], i * sizeof(int32_t), H5T_NATIVE_INT32);
      const output::H5Handle space = output::h5_space(H5Screate_simple(1, &n, nullptr), "space");
      const output::H5Handle ds = output::h5_dataset(
          H5Dcreate2(g, "mlp_path", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "mlp_path");
      H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data());
    }
    EXPECT_THAT([&] { (void)output::SweepReader::open(broken).graphs(); },
                ThrowsMessage<FormatError>(AllOf(HasSubstr(broken + ": /graphs/mlp_path row 0 (term 5"),
                                                 HasSubstr("is not an MLP step"))));
  }
  // A sweep without --mlp-transcoder writes no such key.
  auto plain = options(dir.file("plain.h5"), false);
  plain.graphs = true;
  plain.top_t = 3;
  ASSERT_TRUE(run(plain).complete);
  std::ifstream in(dir.file("plain_graphs/T3/prompt_0000/traced.json"));
  const auto plain_meta = nlohmann::json::parse(in).at("metadata");
  EXPECT_FALSE(plain_meta.contains("mlp_vertices"));
  EXPECT_FALSE(plain_meta.contains("mlp_path"));
  EXPECT_FALSE(output::SweepReader::open(plain.out).graphs().has_mlp_path);
}

namespace {

void write_gzip_file(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  const int written = gzwrite(file, text.data(), static_cast<unsigned>(text.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
  ASSERT_EQ(written, static_cast<int>(text.size()));
}

std::string bulk_line(int64_t index, const std::string& text) {
  return nlohmann::json{{"modelId", "synthetic-model"}, {"index", std::to_string(index)}, {"description", text}}
             .dump() +
         "\n";
}

}  // namespace

// `saetraj explain` on a sweep with /mlp explains the transcoder features /mlp references (term "feature"),
// from offline bulk files under the transcoder's Neuronpedia id (its cfg's neuronpedia_id, recorded in /mlp's
// transcoder_ids, or --mlp-source), into /mlp_explanations; `saetraj graph` then writes them into every MLP
// vertex of mlp_vertices and mlp_path as transcoder_explanation (null for other terms and missing texts).
TEST(MlpFile, ExplainStoresTranscoderExplanationsAndTheGraphsCarryThem) {
  namespace fs = std::filesystem;
  saetraj::testing::TempDir dir;
  // Layer 1's transcoder names its Neuronpedia source in its cfg; layer 0's does not.
  fs::create_directories(dir.file("tc"));
  for (int l = 0; l < 2; ++l) {
    fs::copy(fixture().dir.file("tc/layer_" + std::to_string(l)), dir.file("tc/layer_" + std::to_string(l)),
             fs::copy_options::recursive);
  }
  {
    const std::string cfg_path = dir.file("tc/layer_1/cfg.json");
    std::ifstream in(cfg_path);
    auto cfg = nlohmann::json::parse(in);
    in.close();
    cfg["neuronpedia_id"] = "synthetic-model/1-tc-96";
    std::ofstream(cfg_path) << cfg.dump();
  }
  auto o = options(dir.file("e.h5"), true);
  o.mlp_transcoders = {dir.file("tc") + "/layer_{layer}"};
  o.graphs = true;
  o.top_t = 3;
  ASSERT_TRUE(run(o).complete);

  // The transcoder features /mlp references, per layer, recounted from the records.
  std::map<int, std::set<int64_t>> referenced;
  {
    const auto r = output::SweepReader::open(o.out);
    EXPECT_EQ(r.mlp_transcoder_ids()[1], "synthetic-model/1-tc-96");
    EXPECT_EQ(r.mlp_transcoder_ids()[0].find('/'), 0u) << r.mlp_transcoder_ids()[0];  // the folder's path
    for (int64_t p = 0; p < r.n_prompts(); ++p) {
      const auto m = r.mlp(p);
      const int64_t Q = r.prompts().n_tokens[p] - 1;
      for (int l = 0; l < 2; ++l) {
        for (int64_t i = 0; i < Q * kK; ++i) {
          const int32_t* slot = m.slots.data() + (l * Q * kK + i) * 3;
          if (slot[0] >= 1 && slot[1] == 0) referenced[l].insert(slot[2]);
        }
      }
    }
  }
  ASSERT_GE(referenced[0].size(), 2u);
  ASSERT_GE(referenced[1].size(), 2u);
  // Bulk files: layer 1's source explains every referenced feature but its lowest, plus one nobody needs;
  // layer 0's (reached only through --mlp-source) explains all of them.
  const std::string root = dir.file("bulk");
  std::map<std::pair<int, int>, std::string> want;
  std::string lines1 = bulk_line(kWidth + 5, "not referenced");
  for (const int64_t f : referenced[1]) {
    if (f == *referenced[1].begin()) continue;
    want[{1, static_cast<int>(f)}] = "layer 1 transcoder feature " + std::to_string(f);
    lines1 += bulk_line(f, want[{1, static_cast<int>(f)}]);
  }
  write_gzip_file(root + "/synthetic-model/1-tc-96/explanations/batch-0.jsonl.gz", lines1);
  std::string lines0;
  std::map<std::pair<int, int>, std::string> want0;
  for (const int64_t f : referenced[0]) {
    want0[{0, static_cast<int>(f)}] = "layer 0 transcoder feature " + std::to_string(f);
    lines0 += bulk_line(f, want0[{0, static_cast<int>(f)}]);
  }
  write_gzip_file(root + "/synthetic-model/0-tc-96/explanations/batch-0.jsonl.gz", lines0);

  const auto stored = [&] {
    std::map<std::pair<int, int>, std::string> got;
    for (const auto& e : output::SweepReader::open(o.out).mlp_explanations()) got[{e.layer, e.feature}] = e.text;
    return got;
  };
  pipeline::ExplainOptions x;
  x.store.bulk_root = root;
  // Without --mlp-source, layer 0's transcoder (no Neuronpedia id) is skipped, layer 1's explained.
  auto result = pipeline::explain_sweep(o.out, x);
  EXPECT_EQ(result.mlp_skipped_layers, std::vector<int>{0});
  EXPECT_EQ(stored(), want);
  EXPECT_EQ(result.mlp_written, static_cast<int64_t>(want.size()));
  EXPECT_EQ(result.mlp_counts.requested, referenced[1].size());
  EXPECT_EQ(result.mlp_counts.missing, 1u);
  // With it, both.
  x.mlp_sources[0] = "synthetic-model/0-tc-96";
  result = pipeline::explain_sweep(o.out, x);
  EXPECT_TRUE(result.mlp_skipped_layers.empty());
  want.insert(want0.begin(), want0.end());
  EXPECT_EQ(stored(), want);

  // The graphs built now carry the texts.
  pipeline::GraphBuildOptions g;
  g.top_t = {3};
  pipeline::build_graphs(o.out, g);
  const auto expected = [&](const nlohmann::json& v) {
    if (v.at("term") != "feature") return nlohmann::json(nullptr);
    const auto e = want.find({v.at("layer").get<int>(), v.at("transcoder_feature").get<int>()});
    return e == want.end() ? nlohmann::json(nullptr) : nlohmann::json(e->second);
  };
  int64_t texts = 0, vertices = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir.file("e_graphs/T3"))) {
    if (entry.path().extension() != ".json" || entry.path().string().find("attribution") != std::string::npos) continue;
    std::ifstream in(entry.path());
    const auto meta = nlohmann::json::parse(in).at("metadata");
    for (const char* key : {"mlp_vertices", "mlp_path"}) {
      if (!meta.contains(key)) continue;
      for (const auto& v : meta.at(key)) {
        ASSERT_TRUE(v.contains("transcoder_explanation")) << entry.path() << " " << key;
        EXPECT_EQ(v.at("transcoder_explanation"), expected(v)) << entry.path() << " " << key;
        texts += v.at("transcoder_explanation").is_string();
        ++vertices;
      }
    }
  }
  EXPECT_GT(vertices, 0);
  EXPECT_GT(texts, 0);

  // A corrupt bulk file of a transcoder's source is refused in one line naming the file and the transcoder.
  std::ofstream(root + "/synthetic-model/1-tc-96/explanations/batch-0.jsonl.gz") << bulk_line(1, "plain text");
  EXPECT_THAT([&] { pipeline::explain_sweep(o.out, x); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr("layer 1's transcoder (synthetic-model/1-tc-96)"),
                                               HasSubstr("batch-0.jsonl.gz: not a gzip file"))));
  // A source for a layer the sweep did not analyse is refused naming the flag, the layer and the file's layers.
  {
    pipeline::ExplainOptions y;
    y.store.bulk_root = root;
    y.sources[7] = "synthetic-model/7-res-96";
    EXPECT_THAT([&] { pipeline::explain_sweep(o.out, y); },
                ThrowsMessage<InputError>(AllOf(HasSubstr("--source 7=synthetic-model/7-res-96"),
                                                HasSubstr("layer 7 is not one of the layers"), HasSubstr("(0,1)"))));
    y.sources.clear();
    y.mlp_sources[5] = "synthetic-model/5-tc-96";
    EXPECT_THAT([&] { pipeline::explain_sweep(o.out, y); },
                ThrowsMessage<InputError>(AllOf(HasSubstr("--mlp-source 5="), HasSubstr("layer 5 is not one"))));
  }
  // A /mlp_explanations whose columns disagree in length is refused naming the file and the dataset.
  {
    const output::H5Handle f = output::h5_file(H5Fopen(o.out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    H5Ldelete(f, "mlp_explanations/feature", H5P_DEFAULT);
    output::write_vector(f, "mlp_explanations/feature", std::vector<int32_t>{1});
  }
  EXPECT_THAT([&] { output::SweepReader::open(o.out).mlp_explanations(); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr(o.out), HasSubstr("/mlp_explanations/feature"))));
}
