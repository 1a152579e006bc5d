// Reading Neuronpedia's bulk export of explanations: gzip-compressed JSON lines, streamed one line at a
// time so that a whole-model export costs only the memory of one line.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "explanations_common.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/graph/explanations.h"

namespace saetraj::graph {
namespace {

namespace fs = std::filesystem;

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};

// Splits a gzip stream into lines, refusing any line longer than `max_line_bytes`.
class GzipLineReader {
 public:
  GzipLineReader(std::string path, size_t max_line_bytes)
      : path_(std::move(path)), max_line_(max_line_bytes) {
    errno = 0;
    file_.reset(gzopen(path_.c_str(), "rb"));
    SAETRAJ_CHECK(file_, IoError, "cannot open ", path_, ": ",
                  errno ? std::strerror(errno) : "out of memory");
    gzbuffer(file_.get(), kChunk);
  }

  // The next line without its "\n" (or "\r\n"); false at the end of the stream.
  bool next(std::string& line) {
    line.clear();
    for (;;) {
      if (pos_ == buffer_.size() && !fill()) {
        if (line.empty()) return false;
        break;  // a last line without a newline
      }
      const char* start = buffer_.data() + pos_;
      const size_t available = buffer_.size() - pos_;
      const char* newline = static_cast<const char*>(std::memchr(start, '\n', available));
      const size_t take = newline ? static_cast<size_t>(newline - start) : available;
      SAETRAJ_CHECK(line.size() + take <= max_line_, FormatError, path_, " line ", line_number_ + 1,
                    ": longer than the limit of ", human_bytes(static_cast<double>(max_line_)),
                    " (a bulk export line holds one feature's explanation)");
      line.append(start, take);
      pos_ += take + (newline ? 1 : 0);
      if (newline) break;
    }
    ++line_number_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

  size_t line_number() const { return line_number_; }

 private:
  static constexpr unsigned kChunk = 1u << 17;

  bool fill() {
    buffer_.resize(kChunk);
    const int n = gzread(file_.get(), buffer_.data(), kChunk);
    int errnum = Z_OK;
    const char* message = gzerror(file_.get(), &errnum);
    // zlib reads a file without the gzip magic as plain bytes; an export must be gzip.
    SAETRAJ_CHECK(!(n > 0 && first_read_ && gzdirect(file_.get())), FormatError, path_,
                  ": not a gzip file (expected the gzip magic bytes 1f 8b at the start)");
    first_read_ = false;
    SAETRAJ_CHECK(n >= 0 && errnum == Z_OK, FormatError, path_, ": corrupt gzip stream after line ",
                  line_number_, ": ", message);
    buffer_.resize(static_cast<size_t>(n));
    pos_ = 0;
    return n > 0;
  }

  std::string path_;
  size_t max_line_;
  std::unique_ptr<gzFile_s, GzCloser> file_;
  std::string buffer_;
  size_t pos_ = 0;
  size_t line_number_ = 0;
  bool first_read_ = true;
};

// "batch-12.jsonl.gz" -> 12; -1 for any other name.
int64_t batch_number(const std::string& name) {
  const std::string prefix = "batch-", suffix = ".jsonl.gz";
  if (name.size() <= prefix.size() + suffix.size()) return -1;
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return -1;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 15 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

// Batch files in numeric order: batch-2 before batch-10. Batches are not index ranges, so every file
// may hold any feature.
std::vector<std::string> batch_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  SAETRAJ_CHECK(fs::is_directory(dir, ec), InputError, dir,
                ": expected a folder of batch-N.jsonl.gz files, found a file");
  std::vector<std::pair<int64_t, std::string>> found;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const int64_t number = batch_number(name);
    if (number >= 0) found.emplace_back(number, it->path().string());
  }
  SAETRAJ_CHECK(!ec, IoError, "cannot list ", dir, ": ", ec.message());
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& entry : found) paths.push_back(std::move(entry.second));
  return paths;
}

struct ExportLine {
  int64_t index = -1;
  std::string description;
};

ExportLine parse_export_line(const std::string& line, const std::string& where,
                             const ExplanationLimits& limits) {
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError(str(where, ": not JSON (", clip(e.what(), 200), ")"));
  }
  SAETRAJ_CHECK(object.is_object(), FormatError, where, ": expected a JSON object, found ",
                object.type_name());
  const auto index = object.find("index");
  SAETRAJ_CHECK(index != object.end(), FormatError, where, ": no \"index\" key");
  const std::optional<int64_t> value =
      index->is_string() ? parse_index(index->get_ref<const std::string&>()) : std::nullopt;
  SAETRAJ_CHECK(value, FormatError, where,
                ": expected \"index\" to be a string holding a non-negative integer, found ",
                clip(index->dump(), 60));
  const std::string description = checked_description(object, where, limits);
  return {*value, description};
}

}  // namespace

std::string bulk_explanations_dir(const std::string& root, const NeuronpediaSource& source) {
  check_neuronpedia_source(source);
  return (fs::path(root) / source.model_id / source.source_id / "explanations").string();
}

BulkReadResult read_bulk_explanations(const std::string& root, const NeuronpediaSource& source,
                                      const std::set<int64_t>& wanted, const ExplanationLimits& limits) {
  BulkReadResult result;
  if (wanted.empty()) return result;
  for (const std::string& path : batch_files(bulk_explanations_dir(root, source))) {
    GzipLineReader reader(path, limits.max_line_bytes);
    ++result.files_read;
    std::string line;
    while (reader.next(line)) {
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      ExportLine parsed = parse_export_line(line, str(path, " line ", reader.line_number()), limits);
      // The first explanation in file order wins; later ones for the same feature are ignored.
      if (wanted.count(parsed.index) && !result.descriptions.count(parsed.index)) {
        result.descriptions.emplace(parsed.index, std::move(parsed.description));
        if (result.descriptions.size() == wanted.size()) return result;
      }
    }
  }
  return result;
}

}  // namespace saetraj::graph
