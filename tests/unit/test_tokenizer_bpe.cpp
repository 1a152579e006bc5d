// Byte-level BPE: pre-tokenizer splits and merges worked out by hand, training, files, bad files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/byte_level_bpe.h"
#include "test_support.h"

namespace saetraj::tokenizer {
namespace {

using saetraj::testing::TempDir;
using saetraj::testing::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using Words = std::vector<std::string>;
using nlohmann::json;

// ---- byte table --------------------------------------------------------------------------------------

TEST(ByteToUnicode, PrintableBytesMapToThemselvesOthersFromU0100) {
  const auto& t = byte_to_unicode();
  ASSERT_EQ(t.size(), 256u);
  EXPECT_EQ(t['A'], "A");
  EXPECT_EQ(t[0xE9], "\xC3\xA9");  // é stays é
  EXPECT_EQ(t[0x00], "\xC4\x80");  // U+0100: first of the remapped bytes
  EXPECT_EQ(t[' '], "\xC4\xA0");   // U+0120 'Ġ': 32 remapped bytes come before the space
  EXPECT_EQ(t['\n'], "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(t[0x7F], "\xC4\xA1");  // DEL is the 34th remapped byte: U+0121
  EXPECT_EQ(t[0xAD], "\xC5\x83");  // soft hyphen is the last (68th): U+0143
  EXPECT_EQ(bytes_to_byte_level("a b\n"),
            "a\xC4\xA0"
            "b\xC4\x8A");
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(byte_level_to_bytes(bytes_to_byte_level(all)), all);
}

// ---- pre-tokenization --------------------------------------------------------------------------------

Words gpt2(const std::string& text) { return pre_tokenize(text, PreTokenizer::GPT2); }
Words llama3(const std::string& text) { return pre_tokenize(text, PreTokenizer::LLAMA3); }
Words qwen2(const std::string& text) { return pre_tokenize(text, PreTokenizer::QWEN2); }

TEST(PreTokenizerGpt2, ContractionsPunctuationSpaces) {
  EXPECT_EQ(gpt2("I'm here, they're not."), (Words{"I", "'m", " here", ",", " they", "'re", " not", "."}));
  EXPECT_EQ(gpt2("DON'T"), (Words{"DON", "'", "T"}));  // contractions are lower-case only
  EXPECT_EQ(gpt2("Hello   world"), (Words{"Hello", "  ", " world"}));
  EXPECT_EQ(gpt2("  hello"), (Words{" ", " hello"}));
  EXPECT_EQ(gpt2("wait...!!? ok"), (Words{"wait", "...!!?", " ok"}));
  EXPECT_EQ(gpt2("$hello"), (Words{"$", "hello"}));
}

TEST(PreTokenizerGpt2, NumbersAndNewlines) {
  EXPECT_EQ(gpt2("abc 12345 x"), (Words{"abc", " 12345", " x"}));
  EXPECT_EQ(gpt2("line1\nline2\n\n"), (Words{"line", "1", "\n", "line", "2", "\n\n"}));
  EXPECT_EQ(gpt2("x.\n\ny"), (Words{"x", ".", "\n", "\n", "y"}));
}

TEST(PreTokenizerGpt2, NonAsciiLettersCjkEmoji) {
  EXPECT_EQ(gpt2("Ünïcödé façade"), (Words{"Ünïcödé", " façade"}));
  EXPECT_EQ(gpt2("日本語のテキスト"), (Words{"日本語のテキスト"}));
  EXPECT_EQ(gpt2("你好，世界"), (Words{"你好", "，", "世界"}));
  EXPECT_EQ(gpt2("hi 👋🏽!"), (Words{"hi", " 👋🏽!"}));
}

TEST(PreTokenizerLlama3, ContractionsPunctuationSpaces) {
  EXPECT_EQ(llama3("I'm here, they're not."), (Words{"I", "'m", " here", ",", " they", "'re", " not", "."}));
  EXPECT_EQ(llama3("DON'T"), (Words{"DON", "'T"}));  // case-insensitive contractions
  EXPECT_EQ(llama3("Hello   world"), (Words{"Hello", "  ", " world"}));
  EXPECT_EQ(llama3("wait...!!? ok"), (Words{"wait", "...!!?", " ok"}));
  EXPECT_EQ(llama3("$hello"), (Words{"$hello"}));  // one non-letter may lead a word
}

TEST(PreTokenizerLlama3, DigitGroupsOfThreeAndNewlines) {
  EXPECT_EQ(llama3("abc 12345 x"), (Words{"abc", " ", "123", "45", " x"}));
  EXPECT_EQ(llama3("2024 year"), (Words{"202", "4", " year"}));
  EXPECT_EQ(llama3("line1\nline2\n\n"), (Words{"line", "1", "\n", "line", "2", "\n\n"}));
  EXPECT_EQ(llama3("x.\n\ny"), (Words{"x", ".\n\n", "y"}));  // punctuation takes the newlines after it
}

TEST(PreTokenizerLlama3, NonAsciiLettersCjkEmoji) {
  EXPECT_EQ(llama3("Ünïcödé façade"), (Words{"Ünïcödé", " façade"}));
  EXPECT_EQ(llama3("日本語のテキスト"), (Words{"日本語のテキスト"}));
  EXPECT_EQ(llama3("你好，世界"), (Words{"你好", "，世界"}));
  EXPECT_EQ(llama3("hi 👋🏽!"), (Words{"hi", " 👋🏽!"}));
}

TEST(PreTokenizerQwen2, DigitsOneAtATimeOtherwiseLlama3) {
  EXPECT_EQ(qwen2("abc 12345 x"), (Words{"abc", " ", "1", "2", "3", "4", "5", " x"}));
  EXPECT_EQ(qwen2("2024 year"), (Words{"2", "0", "2", "4", " year"}));
  EXPECT_EQ(qwen2("x\u0662\u0663"), (Words{"x", "\u0662", "\u0663"}));  // Arabic-Indic digits are \p{N}
  EXPECT_EQ(qwen2("DON'T $hello"), (Words{"DON", "'T", " $", "hello"}));
  EXPECT_EQ(qwen2("line1\nline2\n\n"), (Words{"line", "1", "\n", "line", "2", "\n\n"}));
  EXPECT_EQ(qwen2("x.\n\ny"), (Words{"x", ".\n\n", "y"}));
}

TEST(Normalizer, NfcComposesCanonically) {
  EXPECT_EQ(to_nfc("plain ascii 123"), "plain ascii 123");
  EXPECT_EQ(to_nfc("e\xCC\x81"), "\xC3\xA9");                     // e + U+0301 -> U+00E9
  EXPECT_EQ(to_nfc("\xE2\x84\xAB"), "\xC3\x85");                 // U+212B ANGSTROM SIGN -> U+00C5
  EXPECT_EQ(to_nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> U+AC01
  EXPECT_EQ(to_nfc("\xEF\xAC\x81"), "\xEF\xAC\x81");             // U+FB01 ligature: NFKC only
  EXPECT_EQ(to_nfc("A\xCC\x87\xCC\xA3"), "\xE1\xBA\xA0\xCC\x87");  // reordered: A+dot below -> U+1EA0
}

TEST(PreTokenizer, InvalidUtf8NamesTheByteOffset) {
  EXPECT_THAT([] { gpt2("abc\xC3(def"); }, ThrowsMessage<InputError>(HasSubstr("not valid UTF-8")));
  EXPECT_THAT([] { gpt2("abc\xC3(def"); }, ThrowsMessage<InputError>(HasSubstr("at byte offset 3")));
  EXPECT_THAT([] { require_valid_utf8("ok\xED\xA0\x80", "prompt"); },  // a UTF-16 surrogate
              ThrowsMessage<InputError>(HasSubstr("prompt is not valid UTF-8")));
  EXPECT_NO_THROW(require_valid_utf8("fine: 日本", "prompt"));
}

TEST(PreTokenizer, AddedTokensAreCutOutLongestFirst) {
  const std::map<std::string, int32_t> added = {{"<|a|>", 1}, {"<|a|><|a|>", 2}, {"<x>", 3}};
  const auto segments = split_on_added_tokens("hi<|a|><|a|> <x><|a|>", added);
  std::vector<std::pair<std::string, bool>> got;
  for (const auto& s : segments) got.emplace_back(s.text, s.is_added_token);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, bool>>{
                     {"hi", false}, {"<|a|><|a|>", true}, {" ", false}, {"<x>", true}, {"<|a|>", true}}));
}

// ---- encoding with a hand-made model -----------------------------------------------------------------

// Byte b has id b; merges: (l,o)=256 "lo", (lo,w)=257 "low", (Ġ,l)=258 "Ġl", (e,r)=259 "er",
// (Ġ,low)=260 "Ġlow", (a,a)=261 "aa"; <|endoftext|>=262; "xyz"=263 is in the vocab but no merge builds it.
BpeModel hand_model() {
  BpeModel m;
  for (int b = 0; b < 256; ++b) m.vocab[byte_to_unicode()[b]] = b;
  const std::string G = "\xC4\xA0";  // Ġ
  m.merges = {{"l", "o"}, {"lo", "w"}, {G, "l"}, {"e", "r"}, {G, "low"}, {"a", "a"}};
  m.vocab["lo"] = 256;
  m.vocab["low"] = 257;
  m.vocab[G + "l"] = 258;
  m.vocab["er"] = 259;
  m.vocab[G + "low"] = 260;
  m.vocab["aa"] = 261;
  m.vocab["<|endoftext|>"] = 262;
  m.vocab["xyz"] = 263;
  m.special_tokens["<|endoftext|>"] = 262;
  return m;
}

TEST(ByteLevelBpe, MergesByRankNotPosition) {
  const ByteLevelBpe bpe(hand_model());
  // "lower" -> l o w e r -> lo w e r -> low e r -> low er.
  // " low"  -> Ġ l o w: (l,o) rank 0 beats (Ġ,l) rank 2 -> Ġ lo w -> Ġ low -> Ġlow.
  EXPECT_THAT(bpe.encode("lower low"), ElementsAre(257, 259, 260));
  EXPECT_THAT(bpe.encode("lolo"), ElementsAre(256, 256));
  // Left to right, non-overlapping: aaa -> aa a; aaaa -> aa aa.
  EXPECT_THAT(bpe.encode("aaa"), ElementsAre(261, 'a'));
  EXPECT_THAT(bpe.encode("aaaa"), ElementsAre(261, 261));
  EXPECT_EQ(bpe.vocab_size(), 264);
}

TEST(ByteLevelBpe, UnmergedBytesStayByteTokens) {
  const ByteLevelBpe bpe(hand_model());
  EXPECT_THAT(bpe.encode("lowz!"), ElementsAre(257, 'z', '!'));
  EXPECT_THAT(bpe.encode("\xC3\xA9"), ElementsAre(0xC3, 0xA9));  // é: two bytes, never merged
  EXPECT_EQ(bpe.decode({0xC3, 0xA9}), "\xC3\xA9");
  EXPECT_EQ(bpe.token_text(0xC3), "\xEF\xBF\xBD");  // half a character: U+FFFD
  EXPECT_EQ(bpe.token_text(260), " low");
  EXPECT_EQ(bpe.token_text('\n'), "\n");
}

TEST(ByteLevelBpe, SpecialTokensMatchedBeforePreTokenization) {
  const ByteLevelBpe bpe(hand_model());
  EXPECT_THAT(bpe.encode("low<|endoftext|>low"), ElementsAre(257, 262, 257));
  EXPECT_EQ(bpe.token_text(262), "<|endoftext|>");
  EXPECT_EQ(bpe.decode({257, 262, 260}), "low<|endoftext|> low");
}

TEST(ByteLevelBpe, IgnoreMergesTakesWholeWordsFromTheVocab) {
  BpeModel m = hand_model();
  EXPECT_THAT(ByteLevelBpe(m).encode("xyz"), ElementsAre('x', 'y', 'z'));
  m.ignore_merges = true;
  EXPECT_THAT(ByteLevelBpe(m).encode("xyz"), ElementsAre(263));
}

TEST(ByteLevelBpe, BadInputs) {
  const ByteLevelBpe bpe(hand_model());
  EXPECT_THAT([&] { bpe.encode("ok \xFF"); }, ThrowsMessage<InputError>(HasSubstr("byte offset 3")));
  EXPECT_THAT([&] { bpe.token_text(264); }, ThrowsMessage<InputError>(HasSubstr("token id 264")));
  EXPECT_THAT([&] { bpe.decode({-1}); }, ThrowsMessage<InputError>(HasSubstr("token id -1")));
  BpeModel no_q = hand_model();
  no_q.vocab.erase("q");
  const ByteLevelBpe without_q(no_q);
  EXPECT_THAT([&] { without_q.encode("q"); }, ThrowsMessage<InputError>(HasSubstr("has no token")));
}

std::string format_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a FormatError";
  return "";
}

TEST(ByteLevelBpe, InvalidModels) {
  const auto error_for = [](const std::function<void(BpeModel&)>& edit) {
    BpeModel m = hand_model();
    edit(m);
    return format_error_of([&] { ByteLevelBpe bpe(m); });
  };
  EXPECT_THAT(error_for([](BpeModel& m) { m.vocab["dup"] = 5; }), HasSubstr("duplicate id 5"));
  EXPECT_THAT(error_for([](BpeModel& m) {
                m.merges.push_back({"zz", "z"});
              }),
              HasSubstr("'zz' is not in the vocabulary"));
  EXPECT_THAT(error_for([](BpeModel& m) {
                m.merges.push_back({"z", "z"});
              }),
              HasSubstr("its result 'zz' is not in the vocabulary"));
  EXPECT_THAT(error_for([](BpeModel& m) { m.special_tokens["<|other|>"] = 7; }), HasSubstr("duplicate id 7"));
  EXPECT_THAT(error_for([](BpeModel& m) { m.bos_id = 999; }), HasSubstr("BOS id 999"));
  EXPECT_THAT(error_for([](BpeModel& m) { m.add_bos = true; }), HasSubstr("names no BOS"));
}

// ---- training ----------------------------------------------------------------------------------------

const std::string kCorpus =
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away!\n"
    "Max, Mark and Smith are in the empty dark room. Smith left. Mark gave flashlight to Max.\n"
    "In 2024 there were 12345 foxes and 678 dogs in the old town, or so they're saying.\n"
    "It's a truth universally acknowledged that a single fox in possession of a good den...\n"
    "Numbers: 1, 22, 333, 4444. Symbols: #$%&*()[]{} -- and more -- \"quoted\" 'text'.\n";

std::string corpus() {
  std::string text;
  for (int i = 0; i < 20; ++i) text += kCorpus;
  return text;
}

TEST(TrainBpe, SmallCorpusMergesWorkedOutByHand) {
  // Words: "aaab", " aab", " ab". Pair counts (a,a)=3, (a,b)=3, (Ġ,a)=2: tie, ("a","a") sorts first.
  // Then: aa a b | Ġ aa b | Ġ a b -> (a,b)=2 wins. Then aa ab | Ġ aa b | Ġ ab -> all 1: ("aa","ab") first.
  const BpeModel m = train_byte_level_bpe("aaab aab ab", 259, {}, PreTokenizer::GPT2);
  using Merge = std::pair<std::string, std::string>;
  EXPECT_EQ(m.merges, (std::vector<Merge>{{"a", "a"}, {"a", "b"}, {"aa", "ab"}}));
  EXPECT_EQ(m.vocab.at("aa"), 256);
  EXPECT_EQ(m.vocab.at("ab"), 257);
  EXPECT_EQ(m.vocab.at("aaab"), 258);
  EXPECT_EQ(m.vocab.at("!"), 0);           // GPT-2's byte order
  EXPECT_EQ(m.vocab.at("\xC4\xA0"), 220);  // Ġ, as in GPT-2
  EXPECT_THAT(ByteLevelBpe(m).encode("aaab ab"), ElementsAre(258, 220, 257));
}

TEST(TrainBpe, DeterministicWithSpecialTokensLast) {
  const BpeModel a = train_byte_level_bpe(corpus(), 400, {"<|endoftext|>"}, PreTokenizer::GPT2);
  const BpeModel b = train_byte_level_bpe(corpus(), 400, {"<|endoftext|>"}, PreTokenizer::GPT2);
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_EQ(a.vocab, b.vocab);
  EXPECT_EQ(a.vocab.size(), 400u);
  EXPECT_EQ(a.special_tokens.at("<|endoftext|>"), 399);
  EXPECT_THAT([] { train_byte_level_bpe("x", 256, {"<s>"}, PreTokenizer::GPT2); },
              ThrowsMessage<InputError>(HasSubstr("vocab_size 256")));
}

const std::vector<std::string> kRoundTripTexts = {
    "The final correct answer: Max, Mark and Smith are in the empty dark room. Smith left.",
    "Ünïcödé façade, naïve café; 日本語のテキスト and 你好，世界",
    "emoji 👋🏽🎉 and tabs\tand\n\nnewlines\r\n  indented   spaces  ",
    "numbers 3.14159 and 1234567890, they're DON'T won't",
    "<|endoftext|>after a special token<|endoftext|>",
    "",
};

TEST(TrainBpe, TrainedTokenizersRoundTrip) {
  for (PreTokenizer pre : {PreTokenizer::GPT2, PreTokenizer::LLAMA3}) {
    const ByteLevelBpe bpe(train_byte_level_bpe(corpus(), 500, {"<|endoftext|>"}, pre));
    for (const std::string& text : kRoundTripTexts) EXPECT_EQ(bpe.decode(bpe.encode(text)), text);
    // Learned merges shorten frequent words: " the" is one token.
    EXPECT_EQ(bpe.encode(" the").size(), 1u);
  }
}

// ---- files -------------------------------------------------------------------------------------------

BpeModel trained(PreTokenizer pre, bool add_bos) {
  BpeModel m = train_byte_level_bpe(corpus(), 420, {"<|endoftext|>", "<|begin_of_text|>"}, pre);
  m.bos_id = m.special_tokens.at("<|begin_of_text|>");
  m.add_bos = add_bos;
  return m;
}

TEST(BpeFiles, WrittenFilesLoadBack) {
  for (PreTokenizer pre : {PreTokenizer::GPT2, PreTokenizer::LLAMA3}) {
    for (bool add_bos : {false, true}) {
      TempDir dir;
      const BpeModel m = trained(pre, add_bos);
      write_bpe_files(dir.path(), m);
      for (const ByteLevelBpe& loaded :
           {ByteLevelBpe::from_tokenizer_json(dir.file("tokenizer.json"), std::nullopt),
            ByteLevelBpe::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"), std::nullopt)}) {
        EXPECT_EQ(loaded.model().vocab, m.vocab);
        EXPECT_EQ(loaded.model().merges, m.merges);
        EXPECT_EQ(loaded.model().special_tokens, m.special_tokens);
        EXPECT_EQ(loaded.model().bos_id, m.bos_id);
        EXPECT_EQ(loaded.model().add_bos, m.add_bos);
      }
      const ByteLevelBpe from_json =
          ByteLevelBpe::from_tokenizer_json(dir.file("tokenizer.json"), std::nullopt);
      EXPECT_EQ(from_json.model().pre_tokenizer, pre);
      const auto loaded = load_tokenizer(dir.path(), std::nullopt);
      EXPECT_EQ(loaded->kind(), "byte-level-bpe");
      EXPECT_EQ(loaded->adds_bos_by_default(), add_bos);
      const ByteLevelBpe original(m);
      for (const std::string& text : kRoundTripTexts) EXPECT_EQ(loaded->encode(text), original.encode(text));
    }
  }
}

// Qwen ships vocab.json + merges.txt beside tokenizer.json; tokenizer_config.json's Qwen2Tokenizer class
// gives those files Qwen2's pattern and NFC, so both routes tokenize alike.
TEST(BpeFiles, Qwen2VocabMergesTakePatternAndNfcFromTheTokenizerClass) {
  TempDir dir;
  BpeModel m = train_byte_level_bpe(corpus(), 420, {"<|endoftext|>"}, PreTokenizer::QWEN2);
  m.normalizer = Normalizer::NFC;
  write_bpe_files(dir.path(), m);
  const json config = json::parse(saetraj::testing::read_file(dir.file("tokenizer_config.json")));
  EXPECT_EQ(config["tokenizer_class"], "Qwen2Tokenizer");
  const ByteLevelBpe from_json = ByteLevelBpe::from_tokenizer_json(dir.file("tokenizer.json"), std::nullopt);
  const ByteLevelBpe from_files =
      ByteLevelBpe::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"), std::nullopt);
  for (const ByteLevelBpe* bpe : {&from_json, &from_files}) {
    EXPECT_EQ(bpe->model().pre_tokenizer, PreTokenizer::QWEN2);
    EXPECT_EQ(bpe->model().normalizer, Normalizer::NFC);
  }
  for (const std::string& text : kRoundTripTexts) EXPECT_EQ(from_files.encode(text), from_json.encode(text));
  // Composed and decomposed e-acute give the same ids; digits come one per token.
  EXPECT_EQ(from_files.encode("caf\xC3\xA9 2024"), from_files.encode("cafe\xCC\x81 2024"));
  EXPECT_EQ(from_files.encode(" 2024").size(), 5u);
}

TEST(BpeFiles, LayoutFollowsHuggingFace) {
  TempDir dir;
  write_bpe_files(dir.path(), trained(PreTokenizer::LLAMA3, true));
  const json j = json::parse(saetraj::testing::read_file(dir.file("tokenizer.json")));
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"],
            pre_tokenizer_pattern(PreTokenizer::LLAMA3));
  EXPECT_EQ(j["post_processor"]["single"][0]["SpecialToken"]["id"], "<|begin_of_text|>");
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(j["added_tokens"].size(), 2u);
  EXPECT_EQ(saetraj::testing::read_file(dir.file("merges.txt")).rfind("#version: 0.2\n", 0), 0u);
  const json config = json::parse(saetraj::testing::read_file(dir.file("tokenizer_config.json")));
  EXPECT_EQ(config["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(config["add_bos_token"], true);
}

// A GPT-2 style tokenizer.json written by hand: merges as [a, b] pairs, BOS only from the hint.
const char* kGpt2Json = R"({
  "added_tokens": [{"id": 5, "content": "<|endoftext|>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4, "<|endoftext|>": 5},
            "merges": [["a", "b"], ["\u0120", "ab"]]}
})";

TEST(BpeFiles, HandWrittenGpt2Json) {
  TempDir dir;
  write_file(dir.file("tokenizer.json"), kGpt2Json);
  const ByteLevelBpe bpe = ByteLevelBpe::from_tokenizer_json(dir.file("tokenizer.json"), 5);
  EXPECT_EQ(bpe.model().pre_tokenizer, PreTokenizer::GPT2);
  EXPECT_EQ(bpe.bos_id(), 5);
  EXPECT_FALSE(bpe.adds_bos_by_default());
  // "ab" -> a b -> ab; " ab" -> Ġ a b -> Ġ ab -> Ġab.
  EXPECT_THAT(bpe.encode("ab ab<|endoftext|>"), ElementsAre(2, 4, 5));
}

// Llama-3 style: Split + ByteLevel, BOS from a TemplateProcessing inside a Sequence, an added token
// outside the model vocab, "a b" merges, ignore_merges.
std::string llama3_json() {
  const json j = {
      {"added_tokens", {{{"id", 10}, {"content", "<|begin_of_text|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", pre_tokenizer_pattern(PreTokenizer::LLAMA3)}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         {{{"type", "ByteLevel"}},
          {{"type", "TemplateProcessing"},
           {"single",
            {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}}}}},
      {"model",
       {{"type", "BPE"},
        {"ignore_merges", true},
        {"vocab",
         {{"1", 0}, {"2", 1}, {"3", 2}, {"4", 3}, {"12", 4}, {"123", 5}, {"34", 6}, {"\xC4\xA0", 7}}},
        {"merges", {"1 2", "12 3"}}}}};
  return j.dump();
}

TEST(BpeFiles, HandWrittenLlama3Json) {
  TempDir dir;
  write_file(dir.file("tokenizer.json"), llama3_json());
  const ByteLevelBpe bpe = ByteLevelBpe::from_tokenizer_json(dir.file("tokenizer.json"), 99);
  EXPECT_EQ(bpe.model().pre_tokenizer, PreTokenizer::LLAMA3);
  EXPECT_EQ(bpe.bos_id(), 10);  // the file names it: the hint is not used
  EXPECT_TRUE(bpe.adds_bos_by_default());
  EXPECT_EQ(bpe.vocab_size(), 11);
  // Words "123", "4", " ", "34": "34" is whole in the vocab (ignore_merges) though no merge builds it.
  EXPECT_THAT(bpe.encode("<|begin_of_text|>1234 34"), ElementsAre(10, 5, 3, 7, 6));
}

// Qwen2/Qwen3 style: NFC normalizer, Qwen2's Split regex, no BOS.
std::string qwen2_json() {
  const json j = {
      {"added_tokens", {{{"id", 7}, {"content", "<|im_start|>"}, {"special", true}}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", pre_tokenizer_pattern(PreTokenizer::QWEN2)}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      // U+00E9 is bytes C3 A9, at byte level "\u00C3\u00A9".
      {"model",
       {{"type", "BPE"},
        {"vocab",
         {{"1", 0}, {"2", 1}, {"12", 2}, {"\xC3\x83", 3}, {"\xC2\xA9", 4}, {"\xC3\x83\xC2\xA9", 5}, {"\xC4\xA0", 6}}},
        {"merges", {"1 2", "\xC3\x83 \xC2\xA9"}}}}};
  return j.dump();
}

TEST(BpeFiles, HandWrittenQwen2Json) {
  TempDir dir;
  write_file(dir.file("tokenizer.json"), qwen2_json());
  const ByteLevelBpe bpe = ByteLevelBpe::from_tokenizer_json(dir.file("tokenizer.json"), std::nullopt);
  EXPECT_EQ(bpe.model().pre_tokenizer, PreTokenizer::QWEN2);
  EXPECT_EQ(bpe.model().normalizer, Normalizer::NFC);
  EXPECT_FALSE(bpe.adds_bos_by_default());
  // Digits one at a time, so the merge "1 2" never applies; e + U+0301 is composed to U+00E9 first.
  EXPECT_THAT(bpe.encode("12"), ElementsAre(0, 1));
  EXPECT_THAT(bpe.encode("<|im_start|>\xC3\xA9 e\xCC\x81"), ElementsAre(7, 5, 6, 5));

  // Written back out, the normalizer and the pattern survive.
  TempDir out;
  write_bpe_files(out.path(), bpe.model());
  const json j = json::parse(saetraj::testing::read_file(out.file("tokenizer.json")));
  EXPECT_EQ(j["normalizer"], (json{{"type", "NFC"}}));
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"],
            pre_tokenizer_pattern(PreTokenizer::QWEN2));
  const ByteLevelBpe again = ByteLevelBpe::from_tokenizer_json(out.file("tokenizer.json"), std::nullopt);
  EXPECT_EQ(again.model().normalizer, Normalizer::NFC);
  EXPECT_THAT(again.encode("e\xCC\x81 12"), ElementsAre(5, 6, 0, 1));
}

TEST(BpeFiles, BadTokenizerJson) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  const auto load = [&] { ByteLevelBpe::from_tokenizer_json(path, std::nullopt); };
  EXPECT_THAT(format_error_of(load), HasSubstr("'" + path + "' does not exist"));

  write_file(path, "{\"model\": ");
  EXPECT_THAT(format_error_of(load), HasSubstr("'" + path + "' is not valid JSON"));

  const json good = json::parse(kGpt2Json);
  const auto error_for = [&](const std::function<void(json&)>& edit) {
    json copy = good;
    edit(copy);
    write_file(path, copy.dump());
    return format_error_of(load);
  };
  const std::string wordpiece = error_for([](json& c) { c["model"]["type"] = "WordPiece"; });
  EXPECT_THAT(wordpiece, HasSubstr(path));
  EXPECT_THAT(wordpiece, HasSubstr("model.type is 'WordPiece'; expected 'BPE'"));
  EXPECT_THAT(error_for([](json& c) {
                c["model"]["merges"].push_back(json::array({"a", "q"}));
              }),
              HasSubstr("'q' is not in the vocabulary"));
  EXPECT_THAT(error_for([](json& c) { c["model"]["merges"].push_back("b a"); }),
              HasSubstr("its result 'ba' is not in the vocabulary"));
  EXPECT_THAT(error_for([](json& c) { c["model"]["merges"].push_back("b a c"); }),
              HasSubstr("model.merges[2]: expected two tokens separated by one space"));
  EXPECT_THAT(error_for([](json& c) { c["model"]["vocab"]["c"] = 1; }), HasSubstr("duplicate id 1"));
  EXPECT_THAT(error_for([](json& c) { c["model"]["vocab"]["c"] = "1"; }),
              HasSubstr("expected an integer id"));
  EXPECT_THAT(error_for([](json& c) { c["added_tokens"][0]["id"] = 2; }), HasSubstr("duplicate id 2"));
  EXPECT_THAT(error_for([](json& c) { c["model"]["byte_fallback"] = true; }),
              HasSubstr("model.byte_fallback is true"));
  EXPECT_THAT(error_for([](json& c) {
                c["pre_tokenizer"] = {{"type", "Whitespace"}};
              }),
              HasSubstr("pre_tokenizer type 'Whitespace' is not supported"));
  EXPECT_THAT(error_for([](json& c) {
                c["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\d"}}}};
              }),
              HasSubstr("none of GPT-2's, Llama-3's and Qwen2's"));
  EXPECT_THAT(error_for([](json& c) { c["normalizer"] = {{"type", "NFKC"}}; }),
              HasSubstr("normalizer type 'NFKC' is not supported for byte-level BPE (supported: none"));
  EXPECT_THAT(error_for([](json& c) {
                c["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
              }),
              HasSubstr("normalizer type 'Sequence' is not supported"));
  EXPECT_THAT(error_for([](json& c) { c["normalizer"] = "NFC"; }),
              HasSubstr("normalizer: expected an object or null, found \"NFC\""));
  EXPECT_THAT(error_for([](json& c) { c["normalizer"] = {{"kind", "NFC"}}; }),
              HasSubstr("normalizer.type: expected a string"));
  EXPECT_THAT(error_for([](json& c) { c["pre_tokenizer"] = nullptr; }), HasSubstr("no ByteLevel step"));
}

TEST(BpeFiles, BadVocabMerges) {
  TempDir dir;
  const std::string vocab = dir.file("vocab.json"), merges = dir.file("merges.txt");
  const auto load = [&] { ByteLevelBpe::from_vocab_merges(vocab, merges, std::nullopt); };
  EXPECT_THAT(format_error_of(load), HasSubstr("'" + vocab + "' does not exist"));
  write_file(vocab, R"({"a": 0, "b": 1, "ab": 2})");
  EXPECT_THAT(format_error_of(load), HasSubstr("'" + merges + "' does not exist"));
  write_file(merges, "#version: 0.2\na b\nab\n");
  EXPECT_THAT(format_error_of(load), HasSubstr("'" + merges + "' line 3: expected two tokens"));
  write_file(merges, "#version: 0.2\na b\nb a\n");
  const std::string result = format_error_of(load);
  EXPECT_THAT(result, HasSubstr(merges));
  EXPECT_THAT(result, HasSubstr("merge 1 ('b', 'a'): its result 'ba' is not in the vocabulary"));
  write_file(merges, "#version: 0.2\na b\n");
  write_file(vocab, R"({"a": 0, "b": 1, "ab": 1})");
  EXPECT_THAT(format_error_of(load), HasSubstr("duplicate id 1"));
  write_file(vocab, R"(["a"])");
  EXPECT_THAT(format_error_of(load), HasSubstr("expected an object of token -> id"));
  write_file(vocab, "{");
  EXPECT_THAT(format_error_of(load), HasSubstr("'" + vocab + "' is not valid JSON"));
}

TEST(BpeFiles, VocabMergesUsesTheBosHintAndEndOfTextConvention) {
  TempDir dir;
  write_file(dir.file("vocab.json"), R"({"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3})");
  write_file(dir.file("merges.txt"), "#version: 0.2\na b\n");
  const auto tok = load_tokenizer(dir.path(), 3);
  EXPECT_EQ(tok->bos_id(), 3);
  EXPECT_FALSE(tok->adds_bos_by_default());
  EXPECT_THAT(tok->encode("ab<|endoftext|>ba"), ElementsAre(2, 3, 1, 0));

  // tokenizer_config.json beside them names the BOS and the added tokens.
  write_file(dir.file("tokenizer_config.json"),
             R"({"add_bos_token": true, "bos_token": {"content": "<s>"},
                 "added_tokens_decoder": {"7": {"content": "<s>", "special": true}}})");
  const auto configured = load_tokenizer(dir.path(), 3);
  EXPECT_EQ(configured->bos_id(), 7);
  EXPECT_TRUE(configured->adds_bos_by_default());
  EXPECT_THAT(configured->encode("<s>ab"), ElementsAre(7, 2));

  write_file(dir.file("tokenizer_config.json"), R"({"bos_token": "<missing>"})");
  EXPECT_THAT(format_error_of([&] { load_tokenizer(dir.path(), 3); }),
              HasSubstr("bos_token '<missing>' is not a token of the vocabulary"));
  write_file(dir.file("tokenizer_config.json"), R"({"added_tokens_decoder": {"x": {"content": "<s>"}}})");
  EXPECT_THAT(format_error_of([&] { load_tokenizer(dir.path(), 3); }),
              HasSubstr("added_tokens_decoder key 'x' is not an integer id"));
  write_file(dir.file("tokenizer_config.json"), "{,");
  EXPECT_THAT(format_error_of([&] { load_tokenizer(dir.path(), 3); }),
              HasSubstr("tokenizer_config.json' is not valid JSON"));
}

TEST(LoadTokenizer, EmptyFolderListsWhatWasLookedFor) {
  TempDir dir;
  const std::string message = format_error_of([&] { load_tokenizer(dir.path(), std::nullopt); });
  EXPECT_THAT(message, HasSubstr(dir.path()));
  EXPECT_THAT(message, HasSubstr("tokenizer.json, vocab.json + merges.txt, tokenizer.model"));
}

}  // namespace
}  // namespace saetraj::tokenizer
