// Feature explanations from Neuronpedia (SPEC 2, last bullet): read offline from bulk export files,
// kept in a local cache, and fetched through the feature API for what neither holds. No tensors, no HDF5.
//
// Lookup order for a set of features: the cache, then the bulk export files, then (when fetching is
// enabled) the API, whose answers go into the cache, negative ones included, so nothing is fetched twice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace saetraj::graph {

// Where an SAE lives on Neuronpedia: model id ("gemma-2-2b") and source id ("12-gemmascope-res-65k").
// Both become path components and URL segments, so only [A-Za-z0-9._-] is accepted.
struct NeuronpediaSource {
  std::string model_id;
  std::string source_id;
};

// Throws InputError unless both ids are safe path components / URL segments.
void check_neuronpedia_source(const NeuronpediaSource& source);

// Bounds that keep a huge or malicious file or response from exhausting memory.
struct ExplanationLimits {
  size_t max_line_bytes = size_t{1} << 20;          // one line of a bulk export (decompressed)
  size_t max_description_bytes = size_t{64} << 10;  // one explanation text
  size_t max_response_bytes = size_t{32} << 20;     // one feature API response body (it holds activations)
};

// ---- bulk export files: <root>/<modelId>/<sourceId>/explanations/batch-N.jsonl.gz ----------------------

struct BulkReadResult {
  std::map<int64_t, std::string> descriptions;  // index -> first description in file order
  int files_read = 0;                           // batch files opened (reading stops once all are found)
};

// "<root>/<modelId>/<sourceId>/explanations"
std::string bulk_explanations_dir(const std::string& root, const NeuronpediaSource& source);

// Streams the batch files of `source` in numeric batch order and keeps, for each index in `wanted`, the
// first description met. A missing explanations folder yields nothing. Throws FormatError naming file
// and line for a corrupt gzip stream, a line that is not a JSON object, an "index" that is not a string
// holding a non-negative integer, a "description" that is not a string, and lines or descriptions over
// the limits.
BulkReadResult read_bulk_explanations(const std::string& root, const NeuronpediaSource& source,
                                      const std::set<int64_t>& wanted, const ExplanationLimits& limits = {});

// ---- the local cache: <dir>/<modelId>/<sourceId>/<index>.json -----------------------------------------

struct CachedExplanation {
  bool has_explanation = false;  // false: Neuronpedia was asked and has none (a negative entry)
  std::string description;
};

class ExplanationCache {
 public:
  explicit ExplanationCache(std::string dir, ExplanationLimits limits = {});
  std::string path(const NeuronpediaSource& source, int64_t index) const;
  // nullopt when nothing is cached; FormatError naming the file when the entry is unreadable.
  std::optional<CachedExplanation> load(const NeuronpediaSource& source, int64_t index) const;
  // Writes the entry atomically (temporary file + rename), creating folders as needed.
  void store(const NeuronpediaSource& source, int64_t index, const CachedExplanation& entry) const;

 private:
  std::string dir_;
  ExplanationLimits limits_;
};

// ---- the feature API: GET <base_url>/api/feature/<modelId>/<sourceId>/<index> -------------------------

// The client's time: a monotonic now() and waiting. The default is the steady clock and real sleeps; tests
// pass a clock of their own that records each wait instead of sleeping, so that no test waits for or
// measures the wall clock.
class ApiClock {
 public:
  virtual ~ApiClock() = default;
  virtual double now() = 0;                  // seconds, monotonic
  virtual void sleep_for(double seconds) = 0;
};
std::shared_ptr<ApiClock> steady_api_clock();

struct FeatureApiOptions {
  std::string base_url = "https://www.neuronpedia.org";
  std::string api_key_env = "NEURONPEDIA_API_KEY";  // sent as x-api-key only when this variable is set
  double min_interval_s = 0.2;                      // polite gap between the starts of two requests
  double connect_timeout_s = 10.0;                  // per attempt
  double timeout_s = 30.0;                          // whole transfer, per attempt
  int max_attempts = 5;                             // first try included
  double backoff_initial_s = 1.0;  // wait before the first retry, doubled at each further one
  double backoff_max_s = 30.0;
  double retry_after_max_s = 60.0;  // a server's Retry-After is honoured up to this
  std::shared_ptr<ApiClock> clock;  // null: steady_api_clock()
};

// One client keeps its connection and rate limit across requests. Retries timeouts, dropped
// connections, 429 and 5xx with exponential back-off; 404 means "no explanation"; other statuses throw
// IoError at once. The API key never appears in a message.
class FeatureApiClient {
 public:
  explicit FeatureApiClient(FeatureApiOptions options, ExplanationLimits limits = {});
  ~FeatureApiClient();
  FeatureApiClient(const FeatureApiClient&) = delete;
  FeatureApiClient& operator=(const FeatureApiClient&) = delete;

  // The first explanation of the feature, or nullopt when Neuronpedia has none.
  std::optional<std::string> fetch(const NeuronpediaSource& source, int64_t index);
  // Requests sent so far, retries included.
  int requests_sent() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- the store: cache, then files, then the API ------------------------------------------------------

struct ExplanationOptions {
  std::string bulk_root;  // folder holding <modelId>/<sourceId>/explanations/; empty: no files
  std::string cache_dir;  // empty: no cache
  bool fetch = false;     // ask the API for what cache and files lack
  FeatureApiOptions api;
  ExplanationLimits limits;
};

struct ExplanationCounts {
  size_t requested = 0;
  size_t from_cache = 0;
  size_t from_files = 0;
  size_t fetched = 0;  // explanations the API returned
  size_t missing = 0;  // no explanation anywhere
  // While fetching, requested minus the four counts above is what the API has still to answer.
  int bulk_files = 0;  // batch files read

  // Adds another lookup's counts (several layers' lookups summed into one line).
  ExplanationCounts& operator+=(const ExplanationCounts& other) {
    requested += other.requested;
    from_cache += other.from_cache;
    from_files += other.from_files;
    fetched += other.fetched;
    missing += other.missing;
    bulk_files += other.bulk_files;
    return *this;
  }
};

// "40 requested: 12 from cache, 20 from files (3 batch files), 5 fetched, 3 missing"
std::string describe(const ExplanationCounts& counts);

struct ExplanationLookup {
  std::map<int64_t, std::string> descriptions;
  ExplanationCounts counts;
};

class ExplanationStore {
 public:
  explicit ExplanationStore(ExplanationOptions options);
  ~ExplanationStore();

  // Called after each feature the API answers, with the counts so far, for progress lines.
  using Progress = std::function<void(const ExplanationCounts&)>;
  ExplanationLookup lookup(const NeuronpediaSource& source, const std::set<int64_t>& indices,
                           const Progress& progress = {});

 private:
  ExplanationOptions options_;
  std::unique_ptr<FeatureApiClient> client_;  // made on first need, so its rate limit spans lookups
};

}  // namespace saetraj::graph
