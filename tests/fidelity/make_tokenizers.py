"""Tokenizers trained and saved by the real libraries, in the configurations of the models saetraj reads:
GPT-2, Llama-3 and Qwen2/Qwen3 byte-level BPE (tokenizer.json written by HF tokenizers) and Gemma-like SentencePiece
models (tokenizer.model written by sentencepiece: BPE with byte fallback as Gemma, and unigram)."""
import io
import json
from pathlib import Path

import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import make_corpus
# Qwen2/Qwen3's Split pattern exactly as transformers writes it into tokenizer.json.
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_PATTERN

# Llama-3's pre-tokenizer regex, as in Meta's tokenizer.json.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB = 1000


def _train(tok, vocab, specials):
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(make_corpus.training_text(), trainer=trainer)


def gpt2(folder):
    # GPT-2: ByteLevel pre-tokenizer with its built-in regex, no prefix space; <|endoftext|> in the vocab.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    _train(tok, VOCAB, ["<|endoftext|>"])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))


def llama3(folder):
    # Llama-3: Split on its regex, then ByteLevel without regex; ignore_merges; special tokens added after
    # the learned vocabulary; a template that puts <|begin_of_text|> first.
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    _train(tok, VOCAB, [])
    tok.add_special_tokens(LLAMA3_SPECIALS)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))


def qwen2(folder):
    # Qwen2/Qwen3: NFC normalizer, Split on Qwen2's regex (digits one at a time), ByteLevel without regex,
    # no BOS (the post-processor is ByteLevel), chat markers added after the learned vocabulary.
    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    _train(tok, VOCAB, [])
    tok.add_special_tokens(QWEN2_SPECIALS)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))


def qwen2_files(tokenizer_json, folder):
    # Qwen's other files: vocab.json + merges.txt (saved by tokenizers from the Qwen2 model above) and a
    # tokenizer_config.json naming Qwen2Tokenizer with the chat markers, as Qwen's checkpoints ship them.
    tok = Tokenizer.from_file(str(tokenizer_json))
    folder.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(folder))
    decoder = {str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                         "single_word": False, "special": True} for s in QWEN2_SPECIALS}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": decoder, "add_bos_token": False,
         "bos_token": None, "eos_token": "<|endoftext|>"}))


def sentencepiece(folder, model_type):
    # Gemma's trainer settings: byte fallback, digits split, no dummy prefix, whitespace kept as is,
    # pad/eos/bos/unk = 0/1/2/3, chat markers as user-defined symbols. CJK is left out of training (its
    # thousands of random characters would not fit 1000 pieces), so in the compared text it goes through
    # byte fallback.
    sentences = ["".join(c for c in t.replace("\n", " ") if ord(c) < 0x3000 or 0xF000 <= ord(c) < 0x20000)
                 for t in make_corpus.training_text()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=VOCAB, model_type=model_type,
        byte_fallback=True, split_digits=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True, character_coverage=0.9995,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        num_threads=1, minloglevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())


def make_all(out):
    out = Path(out)
    gpt2(out / "gpt2")
    llama3(out / "llama3")
    qwen2(out / "qwen2")
    qwen2_files(out / "qwen2" / "tokenizer.json", out / "qwen2_files")
    sentencepiece(out / "gemma_bpe", "bpe")
    sentencepiece(out / "unigram", "unigram")
    return {name: out / name for name in ("gpt2", "llama3", "qwen2", "qwen2_files", "gemma_bpe", "unigram")}
