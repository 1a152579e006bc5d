"""Tiny random-weight checkpoints written by transformers itself (save_pretrained: its own config.json and
safetensors), for holding saetraj's models against transformers. Deterministic: a fixed seed per model.

Run alone:  .venv/bin/python tests/fidelity/make_checkpoints.py OUT_DIR
"""
import sys
from pathlib import Path

import torch
import transformers

VOCAB = 512
# Gemma-2's sliding window is shorter than the longer test prompts, so the even layers really slide.
GEMMA_WINDOW = 5


def _randomise(model, seed):
    # transformers initialises norms to exactly 1 (or 0 for Gemma's 1 + w) and weights with std 0.02, which
    # would leave norm scales and soft-caps untested; draw every parameter instead, large enough that the
    # soft-caps bend the values.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.3 if p.dim() == 1 else 0.25
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def gpt2():
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
                                  activation_function="gelu_new")
    return transformers.GPT2LMHeadModel(cfg)


def gemma2():
    cfg = transformers.Gemma2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=GEMMA_WINDOW, attn_logit_softcapping=3.0,
        final_logit_softcapping=2.5, query_pre_attn_scalar=24, max_position_embeddings=64,
        bos_token_id=2, eos_token_id=1, pad_token_id=0, attn_implementation="eager")
    return transformers.Gemma2ForCausalLM(cfg)


def llama(tied):
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tied,
        # original_max_position_embeddings is small so that, with head_dim 8, the llama3 scaling has
        # frequencies in all three bands (kept, interpolated, divided by factor).
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        bos_token_id=1, eos_token_id=2)
    return transformers.LlamaForCausalLM(cfg)


def gemma3_text_config():
    # Layer kinds in an irregular pattern (not Gemma-2's alternation), linear RoPE scaling on the full layers
    # only (as gemma-3-4b and larger have), different RoPE bases per kind, no soft-caps.
    return transformers.Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=GEMMA_WINDOW, query_pre_attn_scalar=24,
        max_position_embeddings=64,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
        bos_token_id=2, eos_token_id=1, pad_token_id=0, attn_implementation="eager")


def gemma3():
    return transformers.Gemma3ForCausalLM(gemma3_text_config())


def gemma3_multimodal():
    # The text model inside a vision checkpoint; the (tiny) vision tower is saved too and must be ignored.
    vision = transformers.SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=28, patch_size=14)
    cfg = transformers.Gemma3Config(text_config=gemma3_text_config().to_dict(), vision_config=vision.to_dict(),
                                    mm_tokens_per_image=4, attn_implementation="eager")
    return transformers.Gemma3ForConditionalGeneration(cfg)


def qwen3(tied):
    cfg = transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, tie_word_embeddings=tied,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, bos_token_id=1, eos_token_id=2,
        attn_implementation="eager")
    return transformers.Qwen3ForCausalLM(cfg)


def qwen2():
    cfg = transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, bos_token_id=1, eos_token_id=2,
        attn_implementation="eager")
    return transformers.Qwen2ForCausalLM(cfg)


MODELS = {
    "gpt2": (gpt2, 11),
    "gemma2": (gemma2, 12),
    "llama": (lambda: llama(tied=False), 13),
    "llama_tied": (lambda: llama(tied=True), 14),
    "gemma3": (gemma3, 15),
    "gemma3_multimodal": (gemma3_multimodal, 16),
    "qwen3": (lambda: qwen3(tied=False), 17),
    "qwen3_tied": (lambda: qwen3(tied=True), 18),
    "qwen2": (qwen2, 19),
}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def make_all(out):
    """Writes OUT/<model>_<dtype>/ for every model and dtype; returns {name: folder}."""
    out = Path(out)
    folders = {}
    for name, (build, seed) in MODELS.items():
        torch.manual_seed(seed)
        model = _randomise(build(), seed).eval()
        for dname, dtype in DTYPES.items():
            folder = out / f"{name}_{dname}"
            model.to(dtype).save_pretrained(folder, safe_serialization=True)
            model.to(torch.float32)
            folders[f"{name}_{dname}"] = folder
    return folders


if __name__ == "__main__":
    for k, v in make_all(sys.argv[1]).items():
        print(k, v)
