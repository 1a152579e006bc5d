// What a user reads when a file is wrong (issue 17), at the library level: opening sweep files that are
// missing, not HDF5, truncated or not sweeps gives one line and nothing from HDF5 on stderr; malformed
// JSONL corpus lines are skipped with their line and reason, or stop the run with --strict-input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "saetraj/core/error.h"
#include "saetraj/dist/communicator.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_file_h5.h"
#include "saetraj/pipeline/collective.h"
#include "saetraj/pipeline/prompts.h"
#include "test_support.h"

namespace saetraj {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kAdvice = "give a sweep file written by saetraj sweep";

// The message and kind of the error open_sweep_file throws, and what reached stderr meanwhile.
struct OpenFailure {
  std::string message;
  std::string kind;
  std::string stderr_text;
};

OpenFailure open_failure(const std::string& path) {
  OpenFailure f;
  ::testing::internal::CaptureStderr();
  try {
    output::open_sweep_file(path, false, kAdvice);
    f.kind = "none";
  } catch (const FormatError& e) {
    f.kind = "FormatError", f.message = e.what();
  } catch (const IoError& e) {
    f.kind = "IoError", f.message = e.what();
  } catch (const Error& e) {
    f.kind = "Error", f.message = e.what();
  }
  f.stderr_text = ::testing::internal::GetCapturedStderr();
  return f;
}

// A small valid HDF5 file with one dataset of `n` floats, and its size.
int64_t write_hdf5(const std::string& path, int n) {
  output::h5_quiet_errors();
  {
    const auto file = output::h5_file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path);
    output::write_vector(file, "x", std::vector<float>(n, 1.0f));
  }
  return static_cast<int64_t>(fs::file_size(path));
}

TEST(OpenSweepFile, EachWrongFileIsOneLineAndHdf5PrintsNothing) {
  testing::TempDir dir;
  const auto missing = open_failure(dir.file("no/such.h5"));
  EXPECT_EQ(missing.kind, "IoError");
  EXPECT_EQ(missing.message, dir.file("no/such.h5") + ": no such file; " + kAdvice);
  EXPECT_EQ(missing.stderr_text, "");

  const auto folder = open_failure(dir.path());
  EXPECT_EQ(folder.kind, "IoError");
  EXPECT_EQ(folder.message, dir.path() + " is a folder, not a file; " + kAdvice);

  testing::write_file(dir.file("notes.h5"), "not an HDF5 file\n");
  const auto notes = open_failure(dir.file("notes.h5"));
  EXPECT_EQ(notes.kind, "FormatError");
  EXPECT_EQ(notes.message, dir.file("notes.h5") + " is not an HDF5 file (no HDF5 signature); " + kAdvice);
  EXPECT_EQ(notes.stderr_text, "");

  testing::write_file(dir.file("empty.h5"), "");
  EXPECT_EQ(open_failure(dir.file("empty.h5")).message,
            dir.file("empty.h5") + " is not an HDF5 file (it is empty); " + kAdvice);

  const int64_t size = write_hdf5(dir.file("cut.h5"), 4096);
  fs::resize_file(dir.file("cut.h5"), size / 2);
  const auto cut = open_failure(dir.file("cut.h5"));
  EXPECT_EQ(cut.kind, "FormatError");
  EXPECT_EQ(cut.message, dir.file("cut.h5") + " is truncated: " + std::to_string(size / 2) + " of " +
                             std::to_string(size) + " bytes (an unfinished copy or a full disk cut it short); " +
                             kAdvice);
  EXPECT_EQ(cut.stderr_text, "");

  write_hdf5(dir.file("plain.h5"), 3);
  const auto plain = open_failure(dir.file("plain.h5"));
  EXPECT_EQ(plain.kind, "FormatError");
  EXPECT_EQ(plain.message, dir.file("plain.h5") +
                               " is an HDF5 file but not a saetraj sweep file (no root attribute format = "
                               "\"saetraj-sweep\"); " + kAdvice);
  EXPECT_EQ(plain.stderr_text, "");
}

TEST(H5Check, AFailedCallSaysWhyInOneLine) {
  testing::TempDir dir;
  write_hdf5(dir.file("plain.h5"), 3);
  const auto file = output::h5_open_file(dir.file("plain.h5"), H5F_ACC_RDONLY, H5P_DEFAULT, kAdvice);
  ::testing::internal::CaptureStderr();
  try {
    output::h5_dataset(H5Dopen2(file, "missing", H5P_DEFAULT), "opening dataset missing");
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_THAT(m, HasSubstr("opening dataset missing: HDF5 call failed ("));
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// A corpus of 100,000 lines with a malformed line of each kind among them.
std::string big_corpus(const std::vector<std::pair<int, std::string>>& bad) {
  std::string text;
  size_t next_bad = 0;
  for (int line = 1; line <= 100000; ++line) {
    if (next_bad < bad.size() && bad[next_bad].first == line) {
      text += bad[next_bad++].second + "\n";
    } else {
      text += "{\"id\": \"p" + std::to_string(line) + "\", \"text\": \"prompt " + std::to_string(line) + "\"}\n";
    }
  }
  return text;
}

TEST(PromptFile, MalformedJsonlLinesAreSkippedWithLineAndReason) {
  testing::TempDir dir;
  const std::string path = dir.file("corpus.jsonl");
  testing::write_file(path, big_corpus({{7, "{\"id\": \"x\", \"text\": \"no end\""},
                                        {500, "{\"text\": \"bad \xff byte\"}"},
                                        {99999, "{\"id\": \"y\", \"txt\": \"no text\"}"}}));
  const auto raw = pipeline::read_prompt_file(path);
  ASSERT_EQ(raw.size(), 100000u);
  std::vector<std::pair<size_t, std::string>> unusable;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (!raw[i].unusable.empty()) unusable.emplace_back(i, raw[i].unusable);
  }
  ASSERT_EQ(unusable.size(), 3u);
  EXPECT_EQ(unusable[0].first, 6u);
  EXPECT_THAT(unusable[0].second, HasSubstr("line 7: not valid JSON (parse error at column"));
  EXPECT_EQ(raw[6].id, "7");
  EXPECT_EQ(unusable[1],
            (std::pair<size_t, std::string>{499, "line 500: not valid UTF-8 (byte offset 14 of the line)"}));
  EXPECT_EQ(raw[499].text, "{\"text\": \"bad \xef\xbf\xbd byte\"}");  // stored as valid UTF-8
  EXPECT_EQ(unusable[2],
            (std::pair<size_t, std::string>{99998, "line 99999: expected an object with a string \"text\""}));
  EXPECT_EQ(raw[99998].id, "99999");
  EXPECT_EQ(raw[99999].text, "prompt 100000");
}

TEST(PromptFile, StrictInputStopsAtTheFirstMalformedLine) {
  testing::TempDir dir;
  const std::string path = dir.file("corpus.jsonl");
  testing::write_file(path, "{\"text\": \"fine\"}\n{\"id\": \"y\", \"txt\": \"no text\"}\n{\"text\": \"x\"\n");
  try {
    pipeline::read_prompt_file(path, true);
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":2: expected an object with a string \"text\"; fix the line, or run "
                                            "without --strict-input to skip such lines");
  }
}

TEST(FilesystemErrors, AreRewordedAsOneLineIoErrors) {
  const fs::filesystem_error e("cannot create directories", fs::path("afile/fixtures/model"),
                               std::make_error_code(std::errc::not_a_directory));
  EXPECT_EQ(pipeline::describe_filesystem_error(e),
            "cannot create directories afile/fixtures/model: Not a directory; check the path");
  const auto comm = dist::make_serial_communicator();
  try {
    pipeline::run_on_root(*comm, [&] { throw e; });
    ADD_FAILURE() << "no error";
  } catch (const IoError& io) {
    EXPECT_EQ(std::string(io.what()),
              "cannot create directories afile/fixtures/model: Not a directory; check the path");
  }
}

}  // namespace
}  // namespace saetraj
