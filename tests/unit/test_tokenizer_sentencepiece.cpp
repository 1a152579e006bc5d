// SentencePiece (Gemma-like): a small model trained in the test, round trips, "▁", byte fallback, files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "saetraj/core/error.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"
#include "test_support.h"

namespace saetraj::tokenizer {
namespace {

using saetraj::testing::TempDir;
using saetraj::testing::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

const char* kLines[] = {
    "The quick brown fox jumps over the lazy dog.",
    "The dog sleeps in the sun and the fox runs away into the forest.",
    "Max, Mark and Smith are in the empty dark room.",
    "Smith left. Mark gave the flashlight to Max.",
    "In 2024 there were 12345 foxes and 678 dogs in the old town.",
    "It is a truth universally acknowledged that a single fox needs a good den.",
    "Numbers like 1, 22, 333 and 4444 are split into single digits.",
    "She said: \"the answer is in the room\", and then she left the room.",
    "Café owners in the old town serve coffee to the people of the town.",
    "A model reads the text, one token after another, from the first to the last.",
};

std::string corpus() {
  std::string text;
  for (int i = 0; i < 12; ++i)
    for (const char* line : kLines) text += std::string(line) + "\n";
  return text;  // about 7 KB
}

// AddressSanitizer builds cannot open the sentencepiece module (NOTE in src/tokenizer/sentencepiece_api.h).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kModuleLoadable = false;
#else
constexpr bool kModuleLoadable = true;
#endif

class SentencePieceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kModuleLoadable) GTEST_SKIP() << "sentencepiece module unavailable under AddressSanitizer";
  }
  static void SetUpTestSuite() {
    if (!kModuleLoadable) return;
    dir_ = new TempDir("saetraj-spm");
    train_sentencepiece(corpus(), 320, dir_->file("tokenizer.model"));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string model_path() { return dir_->file("tokenizer.model"); }
  static TempDir* dir_;
};
TempDir* SentencePieceTest::dir_ = nullptr;

TEST_F(SentencePieceTest, GemmaSpecialIdsAndBos) {
  const SentencePieceTokenizer sp(model_path(), std::nullopt);
  EXPECT_EQ(sp.kind(), "sentencepiece");
  EXPECT_EQ(sp.vocab_size(), 320);
  EXPECT_EQ(sp.piece(0), "<pad>");
  EXPECT_EQ(sp.piece(1), "<eos>");
  EXPECT_EQ(sp.piece(2), "<bos>");
  EXPECT_EQ(sp.piece(3), "<unk>");
  EXPECT_EQ(sp.bos_id(), 2);
  EXPECT_TRUE(sp.adds_bos_by_default());
  EXPECT_EQ(sp.token_text(2), "<bos>");
}

TEST_F(SentencePieceTest, RoundTrip) {
  const SentencePieceTokenizer sp(model_path(), std::nullopt);
  for (const std::string text : {"The final correct answer: Max, Mark and Smith are in the empty dark room.",
                                 "  leading and  double spaces, trailing too ", "lines\nand\ttabs\n",
                                 "Ünïcödé 日本語 👋🏽 ж", ""}) {
    const std::vector<int32_t> ids = sp.encode(text);
    EXPECT_EQ(sp.decode(ids), text);
    std::string joined;
    for (int32_t id : ids) joined += sp.token_text(id);
    if (text.find_first_of("\xC3\xE6\xF0\xD0") == std::string::npos) EXPECT_EQ(joined, text);
  }
  // split_digits: every digit is its own piece.
  EXPECT_EQ(sp.encode("2024").size(), 4u);
}

TEST_F(SentencePieceTest, SpaceMarkBecomesASpace) {
  const SentencePieceTokenizer sp(model_path(), std::nullopt);
  int32_t the = -1;
  for (int32_t id = 0; id < sp.vocab_size(); ++id)
    if (sp.piece(id) == "\xE2\x96\x81the") the = id;
  ASSERT_GE(the, 0) << "' the' is frequent enough to be one piece";
  EXPECT_EQ(sp.token_text(the), " the");
  EXPECT_THAT(sp.encode(" the"), ElementsAre(the));
}

TEST_F(SentencePieceTest, ByteFallbackForUnseenCharacters) {
  const SentencePieceTokenizer sp(model_path(), std::nullopt);
  // "ж" (U+0436, bytes D0 B6) never occurs in the corpus. Byte pieces follow the 4 special pieces:
  // <0xNN> has id 4 + NN.
  const std::vector<int32_t> ids = sp.encode("\xD0\xB6");
  EXPECT_THAT(ids, ElementsAre(4 + 0xD0, 4 + 0xB6));
  EXPECT_EQ(sp.piece(ids[0]), "<0xD0>");
  EXPECT_EQ(sp.piece(ids[1]), "<0xB6>");
  EXPECT_EQ(sp.token_text(ids[0]), "\xEF\xBF\xBD");  // half a character: U+FFFD
  EXPECT_EQ(sp.decode(ids), "\xD0\xB6");
  EXPECT_EQ(sp.token_text(4 + '\n'), "\n");
}

TEST_F(SentencePieceTest, TrainingIsDeterministic) {
  TempDir other;
  train_sentencepiece(corpus(), 320, other.file("again.model"));
  EXPECT_EQ(saetraj::testing::read_file(other.file("again.model")),
            saetraj::testing::read_file(model_path()));
}

TEST_F(SentencePieceTest, BadInputs) {
  const SentencePieceTokenizer sp(model_path(), std::nullopt);
  EXPECT_THAT([&] { sp.encode("ab\xC0\x80"); }, ThrowsMessage<InputError>(HasSubstr("byte offset 2")));
  EXPECT_THAT([&] { sp.token_text(320); }, ThrowsMessage<InputError>(HasSubstr("token id 320")));
  EXPECT_THAT(
      [] { train_sentencepiece(corpus(), 100, "/nonexistent/never.model"); },
      ThrowsMessage<InputError>(HasSubstr("SentencePiece training for '/nonexistent/never.model' failed")));
}

TEST_F(SentencePieceTest, LoadTokenizerPicksTheSentencePieceModel) {
  TempDir folder;
  write_file(folder.file("tokenizer.model"), saetraj::testing::read_file(model_path()));
  EXPECT_EQ(load_tokenizer(folder.path(), std::nullopt)->kind(), "sentencepiece");
  // Gemma ships a converted tokenizer.json (SentencePiece-style BPE with byte fallback) beside it.
  write_file(folder.file("tokenizer.json"),
             R"({"normalizer": {"type": "Replace"}, "pre_tokenizer": null,
                 "model": {"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []}})");
  const auto tok = load_tokenizer(folder.path(), std::nullopt);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_TRUE(tok->adds_bos_by_default());
  write_file(folder.file("tokenizer_config.json"), R"({"add_bos_token": false})");
  EXPECT_FALSE(load_tokenizer(folder.path(), std::nullopt)->adds_bos_by_default());
}

TEST(SentencePieceFiles, MissingAndBrokenModels) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.model");
  EXPECT_THAT([&] { SentencePieceTokenizer(path, std::nullopt); },
              ThrowsMessage<FormatError>(HasSubstr("'" + path + "' does not exist")));
  if (!kModuleLoadable) GTEST_SKIP() << "sentencepiece module unavailable under AddressSanitizer";
  write_file(path, "this is not a protobuf");
  EXPECT_THAT([&] { SentencePieceTokenizer(path, std::nullopt); },
              ThrowsMessage<FormatError>(HasSubstr("'" + path + "' is not a SentencePiece model")));
}

}  // namespace
}  // namespace saetraj::tokenizer
