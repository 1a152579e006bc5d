// Replays, in the normal build, every input the fuzzers keep (tests/fuzz/seeds/<target>/, valid files
// and their near misses, and tests/fuzz/regressions/<target>/, the inputs that once crashed, hung or
// tripped a sanitizer) through the fuzz targets' entry points: each must be read or refused with a
// saetraj::Error, never crash or throw anything else.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "fuzz_entries.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;

std::vector<std::string> inputs(const std::string& kind, const std::string& target) {
  std::vector<std::string> files;
  const fs::path dir = fs::path(SAETRAJ_FUZZ_DIR) / kind / target;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  return files;
}

class FuzzInputs : public ::testing::TestWithParam<saetraj::fuzz::Target> {};

TEST_P(FuzzInputs, AreReadOrRefusedCleanly) {
  const saetraj::fuzz::Target target = GetParam();
  const auto seeds = inputs("seeds", target.name);
  EXPECT_GE(seeds.size(), 2u) << "the seed corpus of " << target.name << " is missing";
  auto all = seeds;
  for (const auto& file : inputs("regressions", target.name)) all.push_back(file);
  for (const auto& file : all) {
    SCOPED_TRACE(file);
    const std::string bytes = saetraj::testing::read_file(file);
    EXPECT_NO_THROW(target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
}

INSTANTIATE_TEST_SUITE_P(Readers, FuzzInputs, ::testing::ValuesIn(saetraj::fuzz::targets()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
