// Built as libsaetraj_sentencepiece.so, the only code that calls the sentencepiece library
// (see the NOTE in sentencepiece_api.h).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <sstream>
#include <unordered_map>

#include "../sentencepiece_api.h"

namespace {

using sentencepiece::SentencePieceProcessor;

const SentencePieceProcessor& processor(const void* model) {
  return *static_cast<const SentencePieceProcessor*>(model);
}

void* load(const std::string& path, std::string* error) {
  auto p = std::make_unique<SentencePieceProcessor>();
  const auto status = p->Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return p.release();
}

void release(void* model) { delete static_cast<SentencePieceProcessor*>(model); }

bool encode(const void* model, const std::string& text, std::vector<int>* ids, std::string* error) {
  const auto status = processor(model).Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int piece_size(const void* model) { return processor(model).GetPieceSize(); }
std::string id_to_piece(const void* model, int id) { return processor(model).IdToPiece(id); }
bool is_byte(const void* model, int id) { return processor(model).IsByte(id); }
bool is_control(const void* model, int id) { return processor(model).IsControl(id); }
bool is_unknown(const void* model, int id) { return processor(model).IsUnknown(id); }
int bos_id(const void* model) { return processor(model).bos_id(); }

// Feeds the corpus line by line; the library's own input reading would need a temporary file.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::string& text) : in_(text) { Next(); }
  bool done() const override { return done_; }
  void Next() override { done_ = !std::getline(in_, line_); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::istringstream in_;
  std::string line_;
  bool done_ = false;
};

bool train(const std::vector<std::pair<std::string, std::string>>& options, const std::string& corpus,
           std::string* serialized_model, std::string* error) {
  const std::unordered_map<std::string, std::string> kwargs(options.begin(), options.end());
  LineIterator lines(corpus);
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &lines, serialized_model);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

const saetraj::tokenizer::SentencePieceApi kApi = {load,    release,    encode,     piece_size, id_to_piece,
                                                   is_byte, is_control, is_unknown, bos_id,     train};

}  // namespace

extern "C" __attribute__((visibility("default"))) const saetraj::tokenizer::SentencePieceApi*
saetraj_sentencepiece_api() {
  return &kApi;
}
