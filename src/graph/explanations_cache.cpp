// The local explanation cache: one small JSON file per feature, so that a feature asked for again, by
// this run or a later one, never costs another request. Entries are written to a temporary file and
// renamed into place, so readers (other ranks, an interrupted run) never see half an entry.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "explanations_common.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/graph/explanations.h"

namespace saetraj::graph {
namespace {

namespace fs = std::filesystem;

const char* const kDeleteHint = " (delete the file to fetch the feature again)";

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now so that a failing close (delayed write error) is reported.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

void write_all(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    SAETRAJ_CHECK(n > 0, IoError, "cannot write ", path, ": ", std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

}  // namespace

ExplanationCache::ExplanationCache(std::string dir, ExplanationLimits limits)
    : dir_(std::move(dir)), limits_(limits) {
  SAETRAJ_CHECK(!dir_.empty(), InputError, "the explanation cache needs a folder");
}

std::string ExplanationCache::path(const NeuronpediaSource& source, int64_t index) const {
  check_neuronpedia_source(source);
  SAETRAJ_CHECK(index >= 0, InputError, "feature index must be non-negative, got ", index);
  return (fs::path(dir_) / source.model_id / source.source_id / (std::to_string(index) + ".json")).string();
}

std::optional<CachedExplanation> ExplanationCache::load(const NeuronpediaSource& source,
                                                        int64_t index) const {
  const std::string file = path(source, index);
  std::error_code ec;
  const auto status = fs::status(file, ec);
  if (status.type() == fs::file_type::not_found) return std::nullopt;
  SAETRAJ_CHECK(!ec, IoError, "cannot inspect ", file, ": ", ec.message());
  SAETRAJ_CHECK(fs::is_regular_file(status), FormatError, file,
                ": expected a cache file, found a folder or device");
  const auto size = fs::file_size(file, ec);
  SAETRAJ_CHECK(!ec, IoError, "cannot inspect ", file, ": ", ec.message());
  SAETRAJ_CHECK(size <= limits_.max_line_bytes, FormatError, file, ": ",
                human_bytes(static_cast<double>(size)), " is more than a cache entry can hold (limit ",
                human_bytes(static_cast<double>(limits_.max_line_bytes)), ")", kDeleteHint);

  std::ifstream in(file, std::ios::binary);
  SAETRAJ_CHECK(in, IoError, "cannot open ", file, ": ", std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  nlohmann::json entry;
  try {
    entry = nlohmann::json::parse(bytes.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError(str(file, ": not JSON (", clip(e.what(), 200), ")", kDeleteHint));
  }
  SAETRAJ_CHECK(entry.is_object(), FormatError, file, ": expected a JSON object, found ", entry.type_name(),
                kDeleteHint);
  const auto stored_index = entry.find("index");
  SAETRAJ_CHECK(stored_index != entry.end() && stored_index->is_number_integer() && *stored_index == index,
                FormatError, file, ": expected \"index\": ", index, ", found ",
                stored_index == entry.end() ? std::string("none") : clip(stored_index->dump(), 40),
                kDeleteHint);
  const auto description = entry.find("description");
  if (description != entry.end() && description->is_null()) return CachedExplanation{false, ""};
  return with_context(str("in the explanation cache", kDeleteHint), [&] {
    return CachedExplanation{true, checked_description(entry, file, limits_)};
  });
}

void ExplanationCache::store(const NeuronpediaSource& source, int64_t index,
                             const CachedExplanation& entry) const {
  const std::string file = path(source, index);
  const fs::path folder = fs::path(file).parent_path();
  std::error_code ec;
  fs::create_directories(folder, ec);
  SAETRAJ_CHECK(!ec, IoError, "cannot create the cache folder ", folder.string(), ": ", ec.message());

  nlohmann::json json = {{"model_id", source.model_id}, {"source_id", source.source_id}, {"index", index}};
  json["description"] = entry.has_explanation ? nlohmann::json(entry.description) : nlohmann::json(nullptr);
  const std::string bytes = json.dump(2) + "\n";

  std::string temp = file + ".tmp-XXXXXX";
  FileDescriptor fd(::mkstemp(temp.data()));
  SAETRAJ_CHECK(fd.get() >= 0, IoError, "cannot create a temporary file next to ", file, ": ",
                std::strerror(errno));
  try {
    write_all(fd.get(), bytes, temp);
    SAETRAJ_CHECK(::fsync(fd.get()) == 0, IoError, "cannot flush ", temp, ": ", std::strerror(errno));
    ::fchmod(fd.get(), 0644);  // mkstemp makes 0600; the cache may be shared by a group
    SAETRAJ_CHECK(fd.close() == 0, IoError, "cannot close ", temp, ": ", std::strerror(errno));
    SAETRAJ_CHECK(::rename(temp.c_str(), file.c_str()) == 0, IoError, "cannot rename ", temp, " to ", file,
                  ": ", std::strerror(errno));
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
}

}  // namespace saetraj::graph
