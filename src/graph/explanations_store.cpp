// The explanation store: answers a set of features from the cache, then the bulk export files, then
// the feature API, and records what the API said (a negative answer too) in the cache.
#include <utility>
#include <vector>

#include "saetraj/core/error.h"
#include "saetraj/graph/explanations.h"

namespace saetraj::graph {

std::string describe(const ExplanationCounts& c) {
  return str(c.requested, " requested: ", c.from_cache, " from cache, ", c.from_files, " from files (",
             c.bulk_files, " batch file", c.bulk_files == 1 ? "" : "s", "), ", c.fetched, " fetched, ",
             c.missing, " missing");
}

ExplanationStore::ExplanationStore(ExplanationOptions options) : options_(std::move(options)) {}

ExplanationStore::~ExplanationStore() = default;

ExplanationLookup ExplanationStore::lookup(const NeuronpediaSource& source, const std::set<int64_t>& indices,
                                           const Progress& progress) {
  check_neuronpedia_source(source);
  for (int64_t index : indices) {
    SAETRAJ_CHECK(index >= 0, InputError, "feature index must be non-negative, got ", index);
  }
  ExplanationLookup result;
  ExplanationCounts& counts = result.counts;
  counts.requested = indices.size();

  // A negative cache entry only spares the API another request: the bulk files may still know the feature.
  std::set<int64_t> not_cached, known_absent;
  std::optional<ExplanationCache> cache;
  if (!options_.cache_dir.empty()) cache.emplace(options_.cache_dir, options_.limits);
  for (int64_t index : indices) {
    const std::optional<CachedExplanation> entry = cache ? cache->load(source, index) : std::nullopt;
    if (!entry) {
      not_cached.insert(index);
    } else if (entry->has_explanation) {
      result.descriptions.emplace(index, entry->description);
      ++counts.from_cache;
    } else {
      known_absent.insert(index);
    }
  }

  std::set<int64_t> to_read = not_cached;
  to_read.insert(known_absent.begin(), known_absent.end());
  if (!options_.bulk_root.empty() && !to_read.empty()) {
    BulkReadResult bulk = read_bulk_explanations(options_.bulk_root, source, to_read, options_.limits);
    counts.bulk_files = bulk.files_read;
    counts.from_files = bulk.descriptions.size();
    for (auto& [index, description] : bulk.descriptions) {
      not_cached.erase(index);
      result.descriptions.emplace(index, std::move(description));
    }
  }

  if (!options_.fetch) not_cached.clear();
  // Until the API has answered, the features still to fetch count as neither found nor missing.
  counts.missing = counts.requested - result.descriptions.size() - not_cached.size();
  if (not_cached.empty()) return result;
  if (!client_) client_ = std::make_unique<FeatureApiClient>(options_.api, options_.limits);
  for (int64_t index : not_cached) {
    std::optional<std::string> description =
        with_context(str("while fetching the explanation of feature ", index, " of ", source.model_id, "/",
                         source.source_id),
                     [&] { return client_->fetch(source, index); });
    if (cache)
      cache->store(source, index, CachedExplanation{description.has_value(), description.value_or("")});
    if (description) {
      result.descriptions.emplace(index, std::move(*description));
      ++counts.fetched;
    } else {
      ++counts.missing;
    }
    if (progress) progress(counts);
  }
  return result;
}

}  // namespace saetraj::graph
