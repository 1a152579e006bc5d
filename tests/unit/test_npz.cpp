// .npz reading and writing. The archives the reader is tested on are assembled byte by byte here (zip
// headers, CRC-32, .npy headers), so that the reader is checked against the formats, not against the
// writer.
#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"
#include "test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

namespace saetraj::io {
namespace {

using saetraj::testing::read_file;
using saetraj::testing::TempDir;
using saetraj::testing::write_file;
using ::testing::HasSubstr;

template <typename E, typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one saying: " << parts.front();
  } catch (const E& e) {
    for (const std::string& part : parts) EXPECT_THAT(e.what(), HasSubstr(part));
  }
}

void put(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

// CRC-32 as zip uses it (reflected polynomial 0xEDB88320), bit by bit.
uint32_t crc32(const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// A stored (uncompressed) zip of the given members. With zip64, sizes live in ZIP64 extra fields and the
// archive ends with a ZIP64 end-of-central-directory record and locator, as large Gemma Scope files do.
std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& members, bool zip64 = false) {
  std::string out, central;
  for (const auto& [name, data] : members) {
    const uint64_t offset = out.size();
    std::string extra;
    if (zip64) {
      put(extra, 0x0001, 2);
      put(extra, 16, 2);
      put(extra, data.size(), 8);  // uncompressed
      put(extra, data.size(), 8);  // compressed
    }
    const uint64_t size32 = zip64 ? 0xFFFFFFFFu : data.size();
    const int version = zip64 ? 45 : 20;
    put(out, 0x04034b50, 4);
    put(out, version, 2);
    put(out, 0, 2);     // flags
    put(out, 0, 2);     // method: stored
    put(out, 0, 2);     // time
    put(out, 0x21, 2);  // date 1980-01-01
    put(out, crc32(data), 4);
    put(out, size32, 4);
    put(out, size32, 4);
    put(out, name.size(), 2);
    put(out, extra.size(), 2);
    out += name + extra + data;

    put(central, 0x02014b50, 4);
    put(central, version, 2);  // made by
    put(central, version, 2);  // needed
    put(central, 0, 2);
    put(central, 0, 2);
    put(central, 0, 2);
    put(central, 0x21, 2);
    put(central, crc32(data), 4);
    put(central, size32, 4);
    put(central, size32, 4);
    put(central, name.size(), 2);
    put(central, extra.size(), 2);
    put(central, 0, 2);  // comment
    put(central, 0, 2);  // disk
    put(central, 0, 2);  // internal attributes
    put(central, 0, 4);  // external attributes
    put(central, offset, 4);
    central += name + extra;
  }
  const uint64_t cd_offset = out.size();
  out += central;
  if (zip64) {
    const uint64_t record = out.size();
    put(out, 0x06064b50, 4);
    put(out, 44, 8);  // size of the rest of the record
    put(out, 45, 2);
    put(out, 45, 2);
    put(out, 0, 4);
    put(out, 0, 4);
    put(out, members.size(), 8);
    put(out, members.size(), 8);
    put(out, central.size(), 8);
    put(out, cd_offset, 8);
    put(out, 0x07064b50, 4);  // locator
    put(out, 0, 4);
    put(out, record, 8);
    put(out, 1, 4);
  }
  put(out, 0x06054b50, 4);
  put(out, 0, 2);
  put(out, 0, 2);
  put(out, zip64 ? 0xFFFF : members.size(), 2);
  put(out, zip64 ? 0xFFFF : members.size(), 2);
  put(out, zip64 ? 0xFFFFFFFFu : central.size(), 4);
  put(out, zip64 ? 0xFFFFFFFFu : cd_offset, 4);
  put(out, 0, 2);
  return out;
}

// An .npy member: version major.0 preamble, the dict padded to end in '\n', then the data.
std::string npy(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict + "      \n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  put(out, header.size(), major == 1 ? 2 : 4);
  return out + header + data;
}

template <typename T>
std::string raw(std::initializer_list<T> values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), values.begin(), out.size());
  return out;
}

std::string f4_dict(const std::string& shape) {
  return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
}

TEST(Npz, ReadsHandMadeArchive) {
  TempDir dir;
  const std::string path = dir.file("params.npz");
  write_file(
      path,
      stored_zip({
          {"W_enc.npy", npy(f4_dict("(2, 3)"), raw<float>({1, -2, 0.5f, 3, 4, 1e-3f}))},
          {"b_enc.npy", npy(f4_dict("(3,)"), raw<float>({0.25f, 0, -1}))},
          {"scale.npy", npy("{'descr': '<f8', 'fortran_order': False, 'shape': ()}", raw<double>({0.1}))},
          {"ids.npy", npy("{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (2L,)}",
                          raw<int64_t>({int64_t{1} << 40, -3}), 2)},
          {"half.npy", npy("{'shape': (2,), 'fortran_order': False, 'descr': '<f2'}",
                           raw<uint16_t>({0x3C00, 0xC000}), 3)},
          {"i32.npy", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1)}", raw<int32_t>({-7}))},
          {"notes.txt", "ignored"},
      }));
  const NpzFile npz = NpzFile::open(path);
  EXPECT_EQ(npz.path(), path);
  EXPECT_EQ(npz.names(), (std::vector<std::string>{"W_enc", "b_enc", "half", "i32", "ids", "scale"}));
  EXPECT_TRUE(npz.contains("W_enc"));
  EXPECT_FALSE(npz.contains("notes"));
  EXPECT_EQ(npz.shape("W_enc"), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(npz.shape("scale"), (std::vector<int64_t>{}));

  const torch::Tensor w = npz.load("W_enc", {2, 3});
  EXPECT_EQ(w.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(w, torch::tensor({1.0f, -2.0f, 0.5f, 3.0f, 4.0f, 1e-3f}).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(npz.load("b_enc"), torch::tensor({0.25f, 0.0f, -1.0f})));
  const torch::Tensor scale = npz.load("scale", torch::kFloat64);
  EXPECT_EQ(scale.dim(), 0);
  EXPECT_EQ(scale.item<double>(), 0.1);
  EXPECT_EQ(npz.load("scale").item<float>(), 0.1f);  // converted to float32 by default
  EXPECT_TRUE(torch::equal(npz.load("ids", torch::kInt64), torch::tensor({int64_t{1} << 40, int64_t{-3}})));
  EXPECT_TRUE(torch::equal(npz.load("half"), torch::tensor({1.0f, -2.0f})));
  EXPECT_EQ(npz.load("i32", torch::kInt32).item<int32_t>(), -7);
  expect_error<FormatError>([&] { npz.load("ids"); }, {"member 'ids.npy' of " + path, "as Float"});
}

TEST(Npz, ReadsHandMadeZip64Archive) {
  TempDir dir;
  const std::string path = dir.file("zip64.npz");
  write_file(path, stored_zip({{"threshold.npy", npy(f4_dict("(4,)"), raw<float>({0.5f, 1, 2, 4}))},
                               {"b_dec.npy", npy(f4_dict("(1,)"), raw<float>({-8}))}},
                              /*zip64=*/true));
  const NpzFile npz = NpzFile::open(path);
  EXPECT_EQ(npz.names(), (std::vector<std::string>{"b_dec", "threshold"}));
  EXPECT_TRUE(torch::equal(npz.load("threshold"), torch::tensor({0.5f, 1.0f, 2.0f, 4.0f})));
  EXPECT_EQ(npz.load("b_dec").item<float>(), -8.0f);
}

TEST(Npz, WriterRoundTripIsStoredLikeNumpy) {
  TempDir dir;
  const std::string path = dir.file("out.npz");
  const torch::Tensor w = torch::arange(6, torch::kFloat32).reshape({2, 3}) / 3;
  const torch::Tensor b = torch::tensor({1.5, -2.5}, torch::kFloat64);  // written as float32
  write_npz(path, {{"W_dec", w}, {"b", b}, {"s", torch::tensor(7.0f)}});

  const NpzFile npz = NpzFile::open(path);
  EXPECT_EQ(npz.names(), (std::vector<std::string>{"W_dec", "b", "s"}));
  EXPECT_TRUE(torch::equal(npz.load("W_dec", {2, 3}), w));
  EXPECT_TRUE(torch::equal(npz.load("b"), torch::tensor({1.5f, -2.5f})));
  EXPECT_EQ(npz.shape("s"), (std::vector<int64_t>{}));
  EXPECT_EQ(npz.load("s").item<float>(), 7.0f);

  // Stored, not compressed: numpy's exact header and the raw floats appear verbatim in the archive.
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  dict += std::string(128 - 10 - 1 - dict.size(), ' ') + "\n";  // numpy pads the header to 64-byte units
  std::string expected_member = "\x93NUMPY\x01";
  expected_member += '\0';
  put(expected_member, dict.size(), 2);
  expected_member += dict;
  expected_member.append(static_cast<const char*>(w.data_ptr()), 24);
  EXPECT_NE(read_file(path).find(expected_member), std::string::npos);
  EXPECT_NE(read_file(path).find("(2,), }"), std::string::npos);  // a one-element tuple keeps its comma
}

TEST(Npz, RefusesBrokenArchives) {
  TempDir dir;
  const std::string path = dir.file("bad.npz");
  const std::string good = stored_zip({{"W.npy", npy(f4_dict("(2,)"), raw<float>({1, 2}))}});

  write_file(path, "this is not a zip file at all, just text");
  expect_error<FormatError>([&] { NpzFile::open(path); }, {path, "is not a zip archive"});
  write_file(path, good.substr(0, good.size() - 10));
  expect_error<FormatError>([&] { NpzFile::open(path); }, {path, "or it is truncated"});
  write_file(path, "");
  expect_error<FormatError>([&] { NpzFile::open(path); }, {path, "is not a zip archive"});
  expect_error<IoError>([&] { NpzFile::open(dir.file("absent.npz")); },
                        {"cannot open " + dir.file("absent.npz"), "No such file"});

  // One flipped bit in the data: the CRC no longer matches when the array is read.
  std::string flipped = good;
  const size_t data_at = flipped.find(raw<float>({1, 2}));
  ASSERT_NE(data_at, std::string::npos);
  flipped[data_at] ^= 0x01;
  write_file(path, flipped);
  const NpzFile npz = NpzFile::open(path);
  expect_error<FormatError>([&] { npz.load("W"); }, {"member 'W.npy' of " + path, "CRC error"});
  expect_error<FormatError>([&] { npz.load("V"); }, {"tensor 'V' not found in " + path, "similar: W"});

  // The central directory's offset of the member points into the middle of the data.
  std::string moved = good;
  const size_t central = moved.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(central, std::string::npos);
  moved[central + 42] = 5;
  write_file(path, moved);
  expect_error<FormatError>([&] { NpzFile::open(path); }, {path, "truncated or corrupt"});

  // The central directory claims 2 GiB uncompressed for a member of a few stored bytes (a zip bomb's
  // claim): refused from the sizes alone, before any allocation.
  std::string bomb = good;
  const size_t dir_at = bomb.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(dir_at, std::string::npos);
  for (int b = 0; b < 4; ++b) {  // uncompressed size, in the local header and in the central directory
    bomb[22 + b] = b == 3 ? '\x7f' : '\xf0';
    bomb[dir_at + 24 + b] = b == 3 ? '\x7f' : '\xf0';
  }
  write_file(path, bomb);
  expect_error<FormatError>([&] { NpzFile::open(path); }, {"member 'W.npy' of " + path, "bytes uncompressed from"});
}

TEST(Npz, RefusesBrokenNpyMembers) {
  TempDir dir;
  const std::string path = dir.file("bad.npz");
  const std::string w = "member 'W.npy' of " + path;
  const auto refuse = [&](const std::string& member, const std::string& part) {
    write_file(path, stored_zip({{"W.npy", member}}));
    expect_error<FormatError>([&] { NpzFile::open(path); }, {w, part});
  };
  refuse("\x93NUMPZ\x01", "does not start with the magic \\x93NUMPY");
  refuse("\x93NUMP", "ends inside its .npy header (5 bytes)");
  refuse(std::string("\x93NUMPY\x01\x00\x50\x00{'descr'", 18), "ends inside its .npy header");
  refuse("", "does not start with the magic");
  refuse(npy(f4_dict("(2,)"), raw<float>({1, 2}), 4),
         "has .npy format version 4.0; expected 1.0, 2.0 or 3.0");
  refuse(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", raw<float>({1, 2})),
         "is stored in Fortran (column-major) order");
  refuse(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", raw<float>({1, 2})),
         "has unsupported dtype '>f4'; expected one of <f2, <f4, <f8, <i4, <i8");
  refuse(npy("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", raw<uint16_t>({1, 2})),
         "has unsupported dtype '<u2'");
  refuse(npy("{'descr': '<f4', 'fortran_order': False}", raw<float>({1, 2})),
         "malformed .npy header (expected the keys 'descr', 'fortran_order' and 'shape'");
  refuse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", raw<float>({1, 2})),
         "malformed .npy header (unexpected or repeated key 'extra'");
  refuse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", raw<float>({1, 2})),
         "malformed .npy header (expected a non-negative integer dimension");
  refuse(npy("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", raw<float>({1, 2})),
         "fortran_order must be True or False");
  refuse(npy("['descr', '<f4']", raw<float>({1, 2})), "malformed .npy header (expected '{'");
  refuse(npy(f4_dict("(3,)"), raw<float>({1, 2})), "has short data: 8 bytes, but shape [3] of <f4 needs 12");
  refuse(npy(f4_dict("(1,)"), raw<float>({1, 2})), "has 8 bytes of data, but shape [1] of <f4 needs 4");
  refuse(npy(f4_dict("(4294967296, 4294967296)"), ""), "whose byte size overflows 64 bits");

  write_file(path, stored_zip({{"W.npy", npy(f4_dict("(2,)"), raw<float>({1, 2}))}}));
  expect_error<FormatError>(
      [&] {
        NpzFile::open(path).load("W", {1, 2});
      },
      {"tensor 'W' in " + path + " has wrong shape; expected [1, 2], got [2]"});
}

TEST(Npz, WriterRefusesBadRequests) {
  TempDir dir;
  expect_error<InputError>([&] { write_npz(dir.file("e.npz"), {}); }, {"no arrays to write to"});
  expect_error<InputError>(
      [&] {
        write_npz(dir.file("d.npz"), {{"a", torch::ones({1})}, {"a", torch::ones({1})}});
      },
      {"array name 'a' is empty or given twice"});
  expect_error<IoError>(
      [&] {
        write_npz(dir.file("no/such/dir/x.npz"), {{"a", torch::ones({1})}});
      },
      {"cannot write " + dir.file("no/such/dir/x.npz"), "No such file or directory"});
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 0);
}

}  // namespace
}  // namespace saetraj::io
