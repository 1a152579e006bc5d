#include "saetraj/tokenizer/byte_level_bpe.h"

#include <array>
#include <climits>
#include <mutex>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::tokenizer {

struct ByteLevelBpe::Impl {
  std::vector<std::string> id_to_token;  // byte-level text (added tokens: literal text); "" for gaps
  std::vector<bool> is_added;            // added tokens decode as their literal text
  std::vector<bool> present;
  std::array<int32_t, 256> byte_id{};  // id of each single-byte token, -1 if the vocab lacks it
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  std::unordered_map<uint64_t, Merge> merges;  // key: (left id << 32) | right id

  // Words repeat a lot in prompts and corpora; the cache makes encoding them again a lookup.
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
  static constexpr size_t kCacheLimit = 1 << 16;

  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::vector<int32_t> encode_word(const std::string& word, const BpeModel& model) const;
  // The bytes a token stands for (not yet checked to be UTF-8).
  std::string raw_bytes(int32_t id) const;
};

namespace {

void set_id(std::vector<std::string>& id_to_token, std::vector<bool>& present, int32_t id,
            const std::string& token) {
  SAETRAJ_CHECK(id >= 0, FormatError, "token '", token, "' has negative id ", id);
  if (static_cast<size_t>(id) >= id_to_token.size()) {
    id_to_token.resize(id + 1);
    present.resize(id + 1, false);
  }
  SAETRAJ_CHECK(!present[id] || id_to_token[id] == token, FormatError, "duplicate id ", id, ": both '",
                id_to_token[id], "' and '", token, "' have it");
  id_to_token[id] = token;
  present[id] = true;
}

}  // namespace

ByteLevelBpe::ByteLevelBpe(BpeModel model) : model_(std::move(model)) {
  auto impl = std::make_shared<Impl>();
  for (const auto& [token, id] : model_.vocab) set_id(impl->id_to_token, impl->present, id, token);
  impl->is_added.assign(impl->id_to_token.size(), false);
  for (const auto& [token, id] : model_.special_tokens) {
    // GPT-2 keeps <|endoftext|> in the vocabulary too; there its byte-level and literal texts agree.
    const auto in_vocab = model_.vocab.find(token);
    if (in_vocab != model_.vocab.end() && in_vocab->second == id) continue;
    SAETRAJ_CHECK(id < 0 || static_cast<size_t>(id) >= impl->id_to_token.size() || !impl->present[id] ||
                      impl->is_added[id],
                  FormatError, "duplicate id ", id, ": both vocabulary token '", impl->id_to_token[id],
                  "' and added token '", token, "' have it");
    set_id(impl->id_to_token, impl->present, id, token);
    impl->is_added.resize(impl->id_to_token.size(), false);
    impl->is_added[id] = true;
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = model_.vocab.find(byte_to_unicode()[b]);
    impl->byte_id[b] = it == model_.vocab.end() ? -1 : it->second;
  }
  for (size_t rank = 0; rank < model_.merges.size(); ++rank) {
    const auto& [left, right] = model_.merges[rank];
    const auto l = model_.vocab.find(left), r = model_.vocab.find(right);
    const auto m = model_.vocab.find(left + right);
    SAETRAJ_CHECK(l != model_.vocab.end() && r != model_.vocab.end(), FormatError, "merge ", rank, " ('",
                  left, "', '", right, "'): '", l == model_.vocab.end() ? left : right,
                  "' is not in the vocabulary");
    SAETRAJ_CHECK(m != model_.vocab.end(), FormatError, "merge ", rank, " ('", left, "', '", right,
                  "'): its result '", left + right, "' is not in the vocabulary");
    // A pair listed twice keeps its first (lowest) rank, as Hugging Face does.
    impl->merges.emplace(Impl::key(l->second, r->second), Impl::Merge{static_cast<int32_t>(rank), m->second});
  }
  if (model_.bos_id)
    SAETRAJ_CHECK(*model_.bos_id >= 0 && static_cast<size_t>(*model_.bos_id) < impl->present.size() &&
                      impl->present[*model_.bos_id],
                  FormatError, "BOS id ", *model_.bos_id, " is not a token of this vocabulary (",
                  impl->present.size(), " ids)");
  SAETRAJ_CHECK(!model_.add_bos || model_.bos_id, FormatError,
                "the tokenizer adds a BOS by default but names no BOS token");
  impl_ = std::move(impl);
}

std::vector<int32_t> ByteLevelBpe::Impl::encode_word(const std::string& word, const BpeModel& model) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    const auto it = cache.find(word);
    if (it != cache.end()) return it->second;
  }
  std::vector<int32_t> symbols;
  const auto whole = model.ignore_merges ? model.vocab.find(bytes_to_byte_level(word)) : model.vocab.end();
  if (whole != model.vocab.end()) {
    symbols.push_back(whole->second);
  } else {
    for (unsigned char c : word) {
      SAETRAJ_CHECK(byte_id[c] >= 0, InputError, "byte ", static_cast<int>(c), " ('", byte_to_unicode()[c],
                    "') has no token in this byte-level vocabulary");
      symbols.push_back(byte_id[c]);
    }
    // Standard BPE: merge the adjacent pair of lowest rank, every occurrence left to right, until no
    // adjacent pair has a merge.
    while (symbols.size() > 1) {
      int32_t best_rank = INT32_MAX;
      uint64_t best_key = 0;
      Merge best{};
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        const auto it = merges.find(key(symbols[i], symbols[i + 1]));
        if (it != merges.end() && it->second.rank < best_rank) {
          best_rank = it->second.rank;
          best_key = it->first;
          best = it->second;
        }
      }
      if (best_rank == INT32_MAX) break;
      std::vector<int32_t> merged;
      merged.reserve(symbols.size());
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && key(symbols[i], symbols[i + 1]) == best_key) {
          merged.push_back(best.result);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols.swap(merged);
    }
  }
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() >= kCacheLimit) cache.clear();
  cache.emplace(word, symbols);
  return symbols;
}

std::vector<int32_t> ByteLevelBpe::encode(const std::string& text) const {
  require_valid_utf8(text, "text to tokenize");
  std::vector<int32_t> ids;
  for (const TextSegment& segment : split_on_added_tokens(text, model_.special_tokens)) {
    if (segment.is_added_token) {
      ids.push_back(model_.special_tokens.at(segment.text));
      continue;
    }
    const std::string text = model_.normalizer == Normalizer::NFC ? to_nfc(segment.text) : segment.text;
    for (const std::string& word : pre_tokenize(text, model_.pre_tokenizer)) {
      const std::vector<int32_t> word_ids = impl_->encode_word(word, model_);
      ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    }
  }
  return ids;
}

std::string ByteLevelBpe::Impl::raw_bytes(int32_t id) const {
  SAETRAJ_CHECK(id >= 0 && static_cast<size_t>(id) < present.size() && present[id], InputError, "token id ",
                id, " is not in this vocabulary (", present.size(), " ids)");
  return is_added[id] ? id_to_token[id] : byte_level_to_bytes(id_to_token[id]);
}

std::string ByteLevelBpe::token_text(int32_t id) const { return sanitize_utf8(impl_->raw_bytes(id)); }

std::string ByteLevelBpe::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += impl_->raw_bytes(id);
  return sanitize_utf8(bytes);
}

int64_t ByteLevelBpe::vocab_size() const { return static_cast<int64_t>(impl_->present.size()); }

}  // namespace saetraj::tokenizer
