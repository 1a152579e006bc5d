// Safetensors reading and writing: round trips, the exact bytes the writer produces, hand-made BF16/F16
// data, and one hand-made broken file per defect the reader must refuse.
#include "saetraj/core/error.h"
#include "saetraj/io/mmap.h"
#include "saetraj/io/safetensors.h"
#include "test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>

namespace saetraj::io {
namespace {

using saetraj::testing::read_file;
using saetraj::testing::TempDir;
using saetraj::testing::write_file;
using ::testing::HasSubstr;

// A safetensors file from its parts: u64 little-endian header length, header, data.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string u16_le(std::initializer_list<uint16_t> values) {
  std::string out;
  for (uint16_t v : values) {
    out += static_cast<char>(v & 0xff);
    out += static_cast<char>(v >> 8);
  }
  return out;
}

template <typename E, typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one saying: " << parts.front();
  } catch (const E& e) {
    for (const std::string& part : parts) EXPECT_THAT(e.what(), HasSubstr(part));
  }
}

// Writes a hand-made file and expects open() to refuse it with a message holding `part` and the path.
void expect_open_error(const TempDir& dir, const std::string& bytes, const std::string& part) {
  const std::string path = dir.file("broken.safetensors");
  write_file(path, bytes);
  expect_error<FormatError>([&] { SafetensorsFile::open(path); }, {part, path});
}

TEST(MappedFile, MapsWholeFileAndHandlesEmptyAndMissing) {
  TempDir dir;
  write_file(dir.file("x"), "hello");
  MappedFile map(dir.file("x"));
  EXPECT_EQ(map.path(), dir.file("x"));
  ASSERT_EQ(map.size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(map.data()), 5), "hello");

  write_file(dir.file("empty"), "");
  MappedFile empty(dir.file("empty"));
  EXPECT_EQ(empty.size(), 0u);

  expect_error<IoError>([&] { MappedFile m(dir.file("absent")); },
                        {dir.file("absent"), "No such file or directory"});
}

TEST(Safetensors, DTypeTable) {
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_STREQ(dtype_name(DType::F8_E5M2), "F8_E5M2");
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::F16), 2u);
  expect_error<FormatError>([] { dtype_from_name("F12"); }, {"unknown safetensors dtype 'F12'"});
}

TEST(Safetensors, WriterProducesReferenceLayout) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  // Given out of order: the writer sorts by name. The int tensor keeps I32.
  write_safetensors(path, {{"b", torch::tensor({1.5f})}, {"a", torch::tensor({7}, torch::kInt32)}},
                    {{"k", "v"}});
  const std::string bytes = read_file(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  const std::string expected =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  ASSERT_EQ(header_len, (expected.size() + 7) / 8 * 8);
  EXPECT_EQ(bytes.substr(8, header_len), expected + std::string(header_len - expected.size(), ' '));
  ASSERT_EQ(bytes.size(), 8 + header_len + 8);
  int32_t a;
  float b;
  std::memcpy(&a, bytes.data() + 8 + header_len, 4);
  std::memcpy(&b, bytes.data() + 8 + header_len + 4, 4);
  EXPECT_EQ(a, 7);
  EXPECT_EQ(b, 1.5f);
  // Nothing left under a temporary name.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(Safetensors, RoundTripF32WithMetadata) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  const torch::Tensor w = torch::arange(12, torch::kFloat32).reshape({3, 4}) * 0.1f - 0.3f;
  const torch::Tensor bias = torch::tensor({1e-30f, -3.4e38f, 0.0f});
  const torch::Tensor ids = torch::tensor({int64_t{1} << 40, int64_t{-5}});
  const torch::Tensor scalar = torch::tensor(2.25f);
  write_safetensors(path, {{"w", w}, {"bias", bias}, {"ids", ids}, {"scalar", scalar}},
                    {{"format", "pt"}, {"note", "round trip"}});

  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}}));
  ASSERT_EQ(file->tensors().size(), 4u);
  EXPECT_EQ(file->info("w").shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(file->info("w").dtype, DType::F32);
  EXPECT_EQ(file->info("w").numel(), 12);
  EXPECT_EQ(file->info("ids").dtype, DType::I64);
  EXPECT_TRUE(file->info("scalar").shape.empty());
  // Name order, back to back: bias [0,12), ids [12,28), scalar [28,32), w [32,80).
  EXPECT_EQ(file->info("bias").begin, 0u);
  EXPECT_EQ(file->info("ids").begin, 12u);
  EXPECT_EQ(file->info("scalar").begin, 28u);
  EXPECT_EQ(file->info("w").begin, 32u);
  EXPECT_EQ(file->info("w").end, 80u);

  EXPECT_TRUE(torch::equal(file->load("w"), w));
  EXPECT_TRUE(torch::equal(file->load("w", {3, 4}), w));
  EXPECT_TRUE(torch::equal(file->load("bias"), bias));
  EXPECT_TRUE(torch::equal(file->load("ids", torch::kInt64), ids));
  EXPECT_EQ(file->load("scalar").item<float>(), 2.25f);
  const torch::Tensor w64 = file->load("w", torch::kFloat64);
  EXPECT_EQ(w64.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::equal(w64, w.to(torch::kFloat64)));
  float first;
  std::memcpy(&first, file->data("w"), 4);
  EXPECT_EQ(first, w[0][0].item<float>());
}

TEST(Safetensors, RoundTripF16AndBF16ExactWhereRepresentable) {
  TempDir dir;
  // All representable in both formats: small integers, powers of two, 3.140625 = 1.1001001b x 2.
  const torch::Tensor x = torch::tensor({0.0f, 1.0f, -2.0f, 0.5f, 3.140625f, 1024.0f, -0.015625f});
  for (DType storage : {DType::F16, DType::BF16}) {
    const std::string path = dir.file(std::string(dtype_name(storage)) + ".safetensors");
    write_safetensors(path, {{"x", x}}, {}, storage);
    const auto file = SafetensorsFile::open(path);
    EXPECT_EQ(file->info("x").dtype, storage);
    EXPECT_EQ(file->info("x").end, 14u);
    EXPECT_TRUE(file->metadata().empty());
    EXPECT_TRUE(torch::equal(file->load("x"), x)) << dtype_name(storage);
    EXPECT_EQ(file->load("x", torch::kBFloat16).scalar_type(), torch::kBFloat16);
  }
  // 0.1 is not representable: BF16 keeps 8 significant bits, so the error is at most 2^-9 relative.
  const std::string path = dir.file("round.safetensors");
  write_safetensors(path, {{"x", torch::tensor({0.1f})}}, {}, DType::BF16);
  const float y = SafetensorsFile::open(path)->load("x").item<float>();
  EXPECT_NE(y, 0.1f);
  EXPECT_NEAR(y, 0.1f, 0.1f / 512);
}

TEST(Safetensors, HandMadeBF16AndF16DecodeExactly) {
  TempDir dir;
  const std::string path = dir.file("h.safetensors");
  // BF16 bit patterns are the top halves of F32 ones: 0x4049 -> 0x40490000 = 3.140625,
  // 0xC000 -> -2, 0x3F80 -> 1, 0x0001 -> 2^-133 (a subnormal F32), 0x7F80 -> +inf.
  // F16: 0x3C00 = 1, 0x3555 = 1365/4096 = 0.333251953125, 0x7BFF = 65504, 0x0001 = 2^-24.
  const std::string header = R"({"b":{"dtype":"BF16","shape":[5],"data_offsets":[0,10]},)"
                             R"("h":{"dtype":"F16","shape":[2,2],"data_offsets":[10,18]}})";
  write_file(path, safetensors_bytes(header, u16_le({0x4049, 0xC000, 0x3F80, 0x0001, 0x7F80}) +
                                                 u16_le({0x3C00, 0x3555, 0x7BFF, 0x0001})));
  const auto file = SafetensorsFile::open(path);
  const torch::Tensor b = file->load("b");
  ASSERT_EQ(b.scalar_type(), torch::kFloat32);
  EXPECT_EQ(b[0].item<float>(), 3.140625f);
  EXPECT_EQ(b[1].item<float>(), -2.0f);
  EXPECT_EQ(b[2].item<float>(), 1.0f);
  EXPECT_EQ(b[3].item<float>(), std::ldexp(1.0f, -133));
  EXPECT_TRUE(std::isinf(b[4].item<float>()));
  const torch::Tensor h = file->load("h", {2, 2});
  EXPECT_EQ(h[0][0].item<float>(), 1.0f);
  EXPECT_EQ(h[0][1].item<float>(), 0.333251953125f);
  EXPECT_EQ(h[1][0].item<float>(), 65504.0f);
  EXPECT_EQ(h[1][1].item<float>(), std::ldexp(1.0f, -24));
}

TEST(Safetensors, RefusesCrossKindLoads) {
  TempDir dir;
  const std::string path = dir.file("k.safetensors");
  write_safetensors(path, {{"i", torch::tensor({1, 2}, torch::kInt32)}, {"f", torch::tensor({1.0f})}});
  const auto file = SafetensorsFile::open(path);
  EXPECT_TRUE(torch::equal(file->load("i", torch::kInt64), torch::tensor({int64_t{1}, int64_t{2}})));
  expect_error<FormatError>([&] { file->load("i"); }, {"tensor 'i' in " + path, "stored as Int", "as Float"});
  expect_error<FormatError>([&] { file->load("f", torch::kInt32); }, {"tensor 'f' in " + path, "as Int"});
  expect_error<InputError>([&] { file->load("f", torch::kComplexFloat); }, {"only real floating-point"});
}

TEST(Safetensors, DTypeWithoutTorchTypeIsRefusedAtLoad) {
  TempDir dir;
  const std::string path = dir.file("u.safetensors");
  write_file(path, safetensors_bytes(R"({"u":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}})", "ab"));
  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->info("u").dtype, DType::U16);
  expect_error<FormatError>([&] { file->load("u", torch::kInt32); }, {"tensor 'u' in " + path, "U16"});
}

TEST(Safetensors, MalformedFilesAreRefusedWithClearMessages) {
  TempDir dir;
  const std::string f4 = "\"dtype\":\"F32\"";
  expect_open_error(dir, "", "too short to be a safetensors file: 0 bytes");
  expect_open_error(dir, "abcde", "too short to be a safetensors file: 5 bytes");
  expect_open_error(dir, safetensors_bytes("{}", "").substr(0, 8) + "{", "runs past the end of the file");
  std::string huge(8, '\0');
  huge[5] = 1;  // 2^40
  expect_open_error(dir, huge + "{}", "exceeds the limit");
  expect_open_error(dir, safetensors_bytes("{\"a\":", ""), "is not valid JSON");
  expect_open_error(dir, safetensors_bytes("[1,2]", ""), "is a JSON array, expected an object");
  expect_open_error(dir, safetensors_bytes(R"({"a":[1]})", ""), "tensor 'a' in");
  expect_open_error(dir, safetensors_bytes(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "abcd"),
                    "tensor 'a' in");
  expect_open_error(dir, safetensors_bytes(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "abcd"),
                    "has no 'dtype'");
  expect_open_error(dir, safetensors_bytes(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "abcd"),
                    "has no 'shape'");
  expect_open_error(dir, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1]}})", "abcd"),
                    "has no 'data_offsets'");
  expect_open_error(dir, safetensors_bytes(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "abcd"),
                    "'dtype' must be a string, got a JSON number");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", "abcd"),
                    "'shape' must be an array of integers");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", "abcd"),
                    "'shape' must hold integers");
  expect_open_error(dir, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", "abcd"),
                    "'data_offsets' must be two non-negative integers");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", "abcd"),
                    "'data_offsets' must be two non-negative integers");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})", "abcd"),
                    "tensor 'a' in " + dir.file("broken.safetensors") + " has unknown dtype 'F12'");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"),
                    "has a negative dimension in shape [-1]");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "abcd"),
                    "has data_offsets [4, 0]; expected begin <= end");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "abcd"),
                    "has data_offsets [4, 8] outside the data section (4 bytes)");
  expect_open_error(
      dir, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "abcdefgh"),
      "tensor 'a' in " + dir.file("broken.safetensors") +
          " has 8 bytes of data, but shape [3] of F32 needs 12");
  expect_open_error(
      dir,
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
                        "abcd"),
      "whose byte size overflows 64 bits");
  expect_open_error(
      dir,
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        std::string(12, 'x')),
      "tensors 'a' and 'b' in " + dir.file("broken.safetensors") + " overlap: bytes [0, 8) and [4, 12)");
  expect_open_error(dir,
                    safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                      R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                      "abcd"),
                    "lists 'a' twice");
  expect_open_error(dir, safetensors_bytes(R"({"__metadata__":{"n":1}})", ""),
                    "__metadata__ of " + dir.file("broken.safetensors") + ": value of 'n' must be a string");
  expect_open_error(dir, safetensors_bytes(R"({"__metadata__":[]})", ""), "must be an object of strings");
  expect_error<IoError>([&] { SafetensorsFile::open(dir.file("absent.safetensors")); },
                        {"cannot open " + dir.file("absent.safetensors"), "No such file or directory"});
}

TEST(Safetensors, EmptyTensorsMayShareAnOffset) {
  TempDir dir;
  const std::string path = dir.file("e.safetensors");
  write_file(path, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                     R"("b":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]}})",
                                     ""));
  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->load("b").sizes(), (std::vector<int64_t>{2, 0}));
}

TEST(Safetensors, MissingTensorAndWrongShapeMessages) {
  TempDir dir;
  const std::string path = dir.file("n.safetensors");
  write_safetensors(path, {{"model.embed", torch::zeros({4})},
                           {"model.layers.0.w", torch::zeros({2, 3})},
                           {"lm_head", torch::zeros({1})}});
  const auto file = SafetensorsFile::open(path);
  expect_error<FormatError>([&] { file->info("model.layers.1.w"); },
                            {"tensor 'model.layers.1.w' not found in " + path, "3 tensors",
                             "similar: model.layers.0.w, model.embed, lm_head"});
  expect_error<FormatError>(
      [&] { file->load("embed"); },
      {"tensor 'embed' not found", "the file has 'model.embed'", "names carry the prefix 'model.'"});
  expect_error<FormatError>([&] { file->load("transformer.lm_head"); },
                            {"the file has 'lm_head'", "names lack the prefix 'transformer.'"});
  expect_error<FormatError>(
      [&] {
        file->load("model.layers.0.w", {3, 2});
      },
      {"tensor 'model.layers.0.w' in " + path + " has wrong shape; expected [3, 2], got [2, 3]"});
}

TEST(SafetensorsSet, SingleFileFolder) {
  TempDir dir;
  write_safetensors(dir.file("model.safetensors"), {{"a", torch::ones({2})}, {"b", torch::zeros({1})}});
  const SafetensorsSet set = SafetensorsSet::open_folder(dir.path());
  EXPECT_EQ(set.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(set.contains("a"));
  EXPECT_FALSE(set.contains("c"));
  EXPECT_EQ(set.file_of("b"), dir.file("model.safetensors"));
  EXPECT_TRUE(torch::equal(set.load("a", {2}), torch::ones({2})));
  expect_error<FormatError>([&] { set.load("c"); },
                            {"tensor 'c' not found in " + dir.file("model.safetensors")});
}

TEST(SafetensorsSet, ShardedRoundTripWithIndex) {
  TempDir dir;
  const std::string folder = dir.file("ckpt");
  const torch::Tensor a = torch::arange(4, torch::kFloat32);
  const torch::Tensor b = torch::arange(4, torch::kFloat32) + 10;
  const torch::Tensor c = torch::arange(8, torch::kFloat32).reshape({2, 4});
  // 16 + 16 bytes fit in 40; c (32 bytes) starts a second shard.
  write_safetensors_sharded(folder, {{"c", c}, {"a", a}, {"b", b}}, 40);
  const std::string shard1 = folder + "/model-00001-of-00002.safetensors";
  const std::string shard2 = folder + "/model-00002-of-00002.safetensors";
  ASSERT_TRUE(std::filesystem::exists(shard1));
  ASSERT_TRUE(std::filesystem::exists(shard2));
  const auto index = nlohmann::json::parse(read_file(folder + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 64);
  EXPECT_EQ(index["weight_map"], (nlohmann::json{{"a", "model-00001-of-00002.safetensors"},
                                                 {"b", "model-00001-of-00002.safetensors"},
                                                 {"c", "model-00002-of-00002.safetensors"}}));
  EXPECT_EQ(SafetensorsFile::open(shard1)->metadata().at("format"), "pt");

  const SafetensorsSet set = SafetensorsSet::open_folder(folder);
  EXPECT_EQ(set.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(set.file_of("c"), shard2);
  EXPECT_EQ(set.info("c").shape, (std::vector<int64_t>{2, 4}));
  EXPECT_TRUE(torch::equal(set.load("a"), a));
  EXPECT_TRUE(torch::equal(set.load("b"), b));
  EXPECT_TRUE(torch::equal(set.load("c", {2, 4}), c));
  expect_error<FormatError>([&] { set.load("d"); },
                            {"tensor 'd' not found in " + folder + "/model.safetensors.index.json"});

  // A tensor larger than the limit gets a shard of its own.
  const std::string big = dir.file("big");
  write_safetensors_sharded(big, {{"x", torch::zeros({100})}}, 8);
  EXPECT_TRUE(std::filesystem::exists(big + "/model-00001-of-00001.safetensors"));
}

TEST(SafetensorsSet, BrokenFoldersAndIndexes) {
  TempDir dir;
  expect_error<InputError>([&] { SafetensorsSet::open_folder(dir.file("nope")); },
                           {dir.file("nope"), "does not exist"});
  expect_error<InputError>([&] { SafetensorsSet::open_folder(dir.path()); },
                           {dir.path(), "has neither model.safetensors nor model.safetensors.index.json"});

  const std::string index = dir.file("model.safetensors.index.json");
  write_file(index, "{\"weight_map\": ");
  expect_error<FormatError>([&] { SafetensorsSet::open_folder(dir.path()); }, {index, "is not valid JSON"});
  write_file(index, R"({"metadata": {}})");
  expect_error<FormatError>([&] { SafetensorsSet::open_folder(dir.path()); },
                            {index, "has no \"weight_map\""});
  write_file(index, R"({"weight_map": {"w": 3}})");
  expect_error<FormatError>([&] { SafetensorsSet::open_folder(dir.path()); },
                            {"shard of tensor 'w' must be a file name"});

  write_file(index, R"({"weight_map": {"a": "s1.safetensors", "w": "missing.safetensors"}})");
  write_safetensors(dir.file("s1.safetensors"), {{"a", torch::ones({1})}});
  expect_error<InputError>([&] { SafetensorsSet::open_folder(dir.path()); },
                           {"places tensor 'w' in shard missing.safetensors",
                            dir.file("missing.safetensors") + " does not exist"});

  write_file(index, R"({"weight_map": {"a": "s1.safetensors", "w": "s1.safetensors"}})");
  const SafetensorsSet set = SafetensorsSet::open_folder(dir.path());
  expect_error<FormatError>(
      [&] { set.load("a"); },
      {index, "places tensor 'w' in " + dir.file("s1.safetensors"), "that shard does not contain it"});
}

TEST(SafetensorsWrite, RefusesBadRequests) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  expect_error<InputError>(
      [&] {
        write_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}});
      },
      {"tensor 'a' is given twice"});
  expect_error<InputError>(
      [&] {
        write_safetensors(path, {{"__metadata__", torch::ones({1})}});
      },
      {"cannot write a tensor named '__metadata__'"});
  expect_error<InputError>(
      [&] {
        write_safetensors(path, {{"a", torch::ones({1})}}, {}, DType::I32);
      },
      {"cannot write floating-point tensors as I32"});
  expect_error<IoError>(
      [&] {
        write_safetensors(dir.file("no/such/dir/x.safetensors"), {{"a", torch::ones({1})}});
      },
      {"cannot create", "x.safetensors", "No such file or directory"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsWrite, ShortWriteIsAnIoErrorAndLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("big.safetensors");
  write_safetensors(path, {{"old", torch::ones({1})}});
  // A file size limit makes write() fail with EFBIG part way, as a full disk would.
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  try {
    write_safetensors(path, {{"w", torch::ones({100000})}});
    ADD_FAILURE() << "no IoError for a write past the file size limit";
  } catch (const IoError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot write " + path));
    EXPECT_THAT(e.what(), HasSubstr("File too large"));
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  // The previous file is untouched and no temporary file is left.
  EXPECT_TRUE(SafetensorsFile::open(path)->contains("old"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

}  // namespace
}  // namespace saetraj::io
