// A small, deterministic byte-level BPE trainer: enough to give the synthetic demo model a real
// tokenizer learned from its embedded text. It recounts pairs after every merge, which is quadratic but
// instant for corpora of a few hundred kilobytes.
#include <algorithm>
#include <map>
#include <unordered_map>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/byte_level_bpe.h"

namespace saetraj::tokenizer {

namespace {

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

BpeModel train_byte_level_bpe(const std::string& corpus, int vocab_size,
                              const std::vector<std::string>& special_tokens, PreTokenizer pre) {
  const int n_special = static_cast<int>(special_tokens.size());
  SAETRAJ_CHECK(vocab_size >= 256 + n_special, InputError, "vocab_size ", vocab_size,
                " is smaller than the 256 byte tokens plus ", n_special, " special tokens");
  require_valid_utf8(corpus, "training corpus");

  BpeModel model;
  model.pre_tokenizer = pre;
  // Byte tokens in GPT-2's order: by the code point standing for each byte (UTF-8 sorts bytewise in
  // code point order).
  std::vector<std::string> tokens(byte_to_unicode());
  std::sort(tokens.begin(), tokens.end());
  for (size_t id = 0; id < tokens.size(); ++id) model.vocab.emplace(tokens[id], static_cast<int32_t>(id));

  std::map<std::string, int32_t> specials_for_split;
  for (const std::string& s : special_tokens) specials_for_split.emplace(s, 0);
  std::map<std::string, int64_t> word_counts;  // ordered, so the word list does not depend on hashing
  for (const TextSegment& segment : split_on_added_tokens(corpus, specials_for_split))
    if (!segment.is_added_token)
      for (const std::string& word : pre_tokenize(segment.text, pre)) ++word_counts[word];
  std::vector<Word> words;
  words.reserve(word_counts.size());
  for (const auto& [text, count] : word_counts) {
    Word w;
    w.count = count;
    for (unsigned char c : text) w.symbols.push_back(model.vocab.at(byte_to_unicode()[c]));
    words.push_back(std::move(w));
  }

  const int target = vocab_size - n_special;
  while (static_cast<int>(tokens.size()) < target) {
    std::unordered_map<uint64_t, int64_t> pair_counts;
    for (const Word& w : words)
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i)
        pair_counts[pair_key(w.symbols[i], w.symbols[i + 1])] += w.count;
    if (pair_counts.empty()) break;
    // Most frequent pair; ties go to the lexicographically smallest (left, right) text.
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [key, count] : pair_counts) {
      const auto text = [&](uint64_t k) {
        return std::make_pair(std::cref(tokens[k >> 32]), std::cref(tokens[k & 0xFFFFFFFFu]));
      };
      if (count > best_count || (count == best_count && text(key) < text(best))) {
        best = key;
        best_count = count;
      }
    }
    const int32_t left = static_cast<int32_t>(best >> 32), right = static_cast<int32_t>(best & 0xFFFFFFFFu);
    const std::string merged_text = tokens[left] + tokens[right];
    model.merges.emplace_back(tokens[left], tokens[right]);
    // The same text can be reached by two merge paths; it keeps its first id.
    auto [it, inserted] = model.vocab.emplace(merged_text, static_cast<int32_t>(tokens.size()));
    if (inserted) tokens.push_back(merged_text);
    const int32_t merged = it->second;
    for (Word& w : words) {
      std::vector<int32_t> out;
      out.reserve(w.symbols.size());
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == left && w.symbols[i + 1] == right) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(w.symbols[i]);
        }
      }
      w.symbols.swap(out);
    }
  }

  int32_t next_id = static_cast<int32_t>(tokens.size());
  for (const std::string& s : special_tokens) {
    if (model.special_tokens.count(s)) continue;
    const auto in_vocab = model.vocab.find(s);
    // A special token whose text was also learned keeps a distinct id of its own, outside the vocab.
    const int32_t id = next_id++;
    if (in_vocab == model.vocab.end()) model.vocab.emplace(s, id);
    model.special_tokens.emplace(s, id);
  }
  return model;
}

}  // namespace saetraj::tokenizer
