#!/usr/bin/env bash
# Regenerates the seed corpus tests/fuzz/seeds/<target>/ from valid files: the synthetic GPT-2 and Llama
# checkpoints and SAEs of `saetraj synth` (safetensors, config.json, cfg.json, tokenizer files), arrays
# saved by numpy.savez (npz), and hand-written explanation entries. The seeds are committed; run this
# only to refresh them. Usage: tests/fuzz/make_seeds.sh [SAETRAJ_BINARY]   (default build/saetraj)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/saetraj}
SEEDS=tests/fuzz/seeds
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$SEEDS" && mkdir -p "$SEEDS"/{safetensors,npz,model_config,sae_cfg,tokenizer,explanations}
small=(--layers 1 --d-model 16 --d-mlp 32 --vocab 300 --context 16 --d-sae 24)
"$BIN" synth --out "$WORK/gpt2" "${small[@]}" > /dev/null
"$BIN" synth --arch llama --out "$WORK/llama" "${small[@]}" > /dev/null
cp "$WORK/gpt2/saes/layer_0/sae_weights.safetensors" "$SEEDS/safetensors/gpt2_sae.safetensors"
cp "$WORK/llama/saes/layer_0/sae_weights.safetensors" "$SEEDS/safetensors/llama_sae.safetensors"
cp "$WORK/gpt2/model/config.json" "$SEEDS/model_config/gpt2.json"
cp "$WORK/llama/model/config.json" "$SEEDS/model_config/llama.json"
cp "$WORK/gpt2/saes/layer_0/cfg.json" "$SEEDS/sae_cfg/gpt2.json"
cp "$WORK/llama/saes/layer_0/cfg.json" "$SEEDS/sae_cfg/llama.json"
for model in gpt2 llama; do
  m="$WORK/$model/model"
  if [ -f "$m/tokenizer.json" ]; then
    { printf '\x00'; cat "$m/tokenizer.json"; } > "$SEEDS/tokenizer/${model}_tokenizer_json"
  fi
  if [ -f "$m/vocab.json" ] && [ -f "$m/merges.txt" ]; then
    { printf '\x01'; cat "$m/vocab.json"; printf '\x00'; cat "$m/merges.txt"; } > "$SEEDS/tokenizer/${model}_vocab_merges"
  fi
done
/usr/bin/python3 - "$SEEDS" <<'PY'
import io, json, struct, sys, numpy as np
seeds = sys.argv[1]

def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data

def put(path, data):
    with open(f"{seeds}/{path}", "wb") as f:
        f.write(data)

put("safetensors/mixed_dtypes.safetensors", safetensors({
    "a": ("F16", [2, 2], np.arange(4, dtype=np.float16).tobytes()),
    "b": ("BF16", [3], b"\x80\x3f\x00\x40\x40\x40"),
    "c": ("I64", [2], np.array([7, -1], dtype=np.int64).tobytes()),
    "d": ("F64", [0, 3], b""),
    "e": ("BOOL", [2], b"\x00\x01"),
    "f": ("U16", [1], b"\x01\x00"),
}, {"format": "pt"}))
put("safetensors/empty.safetensors", safetensors({}))

for name, arrays in {
    "gemma_scope": {"W_enc": np.ones((4, 6), np.float32), "W_dec": np.ones((6, 4), np.float32),
                    "b_enc": np.zeros(6, np.float32), "b_dec": np.zeros(4, np.float32),
                    "threshold": np.full(6, 0.5, np.float32)},
    "dtypes": {"h": np.arange(3, dtype=np.float16), "d": np.arange(2, dtype=np.float64),
               "i": np.arange(5, dtype=np.int32), "l": np.arange(2, dtype=np.int64),
               "scalar": np.float32(3.0), "empty": np.zeros((0, 2), np.float32)},
}.items():
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    put(f"npz/{name}.npz", buffer.getvalue())

gemma2 = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 16,
          "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
          "intermediate_size": 32, "vocab_size": 300, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
          "hidden_activation": "gelu_pytorch_tanh", "attn_logit_softcapping": 50.0,
          "final_logit_softcapping": 30.0, "query_pre_attn_scalar": 8, "sliding_window": 32,
          "rope_theta": 10000.0, "bos_token_id": 2, "eos_token_id": 1, "tie_word_embeddings": True}
put("model_config/gemma2.json", json.dumps(gemma2, indent=2).encode())
llama3 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 32,
          "vocab_size": 300, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "hidden_act": "silu",
          "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
          "bos_token_id": 1, "eos_token_id": [2, 3], "tie_word_embeddings": False}
put("model_config/llama3_scaled.json", json.dumps(llama3, indent=2).encode())

put("sae_cfg/topk_flat.json", json.dumps({"d_in": 16, "d_sae": 24, "hook_point": "blocks.0.hook_resid_pre",
    "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}, "normalize_activations": "none",
    "model_name": "gpt2-small", "model_from_pretrained_kwargs": {"center_writing_weights": False}}).encode())
put("sae_cfg/jumprelu_v6.json", json.dumps({"d_in": 16, "d_sae": 24, "architecture": "jumprelu",
    "apply_b_dec_to_input": False, "normalize_activations": "expected_average_only_in",
    "metadata": {"hook_name": "blocks.3.hook_resid_post", "model_name": "gemma-2-2b",
                 "neuronpedia_id": "gemma-2-2b/3-gemmascope-res-16k", "prepend_bos": True}}).encode())

vocab = {"H": 0, "e": 1, "l": 2, "o": 3, "\u0120": 4, "w": 5, "r": 6, "d": 7, "He": 8, "ll": 9, "Hell": 10,
         "<|endoftext|>": 11}
merges = ["H e", "l l", "He ll"]
put("tokenizer/hand_vocab_merges", b"\x01" + json.dumps(vocab).encode() + b"\x00" +
    ("#version: 0.2\n" + "\n".join(merges) + "\n").encode())
tokenizer_json = {"version": "1.0", "added_tokens": [{"id": 11, "content": "<|endoftext|>", "special": True}],
                  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
                  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|endoftext|>"}},
                                     {"Sequence": {"id": "A"}}]},
                  "model": {"type": "BPE", "vocab": vocab, "merges": [m.split(" ") for m in merges]}}
put("tokenizer/hand_tokenizer_json", b"\x00" + json.dumps(tokenizer_json).encode())

put("explanations/cache_entry.json", b'{"index": 7, "description": " references to flashlights"}')
put("explanations/cache_negative.json", b'{"index": 7, "description": null}')
lines = [{"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-65k", "index": str(i),
          "description": f"feature {i} caf\u00e9", "explanationModelName": "gpt-4o-mini"} for i in (3, 7, 3)]
put("explanations/bulk_lines.jsonl", "\r\n".join(json.dumps(l) for l in lines).encode() + b"\n\n")
PY
ls -l "$SEEDS"/*
