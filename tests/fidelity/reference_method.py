"""A Python reference of SPEC 1 built the way the original research code was: TransformerLens'
HookedTransformer holding the checkpoint, its hooks (hook_resid_pre, hook_pattern, hook_v, hook_attn_out,
hook_resid_mid) for the decomposition, SAE-Lens's `encode` for every partial sum, and the newcomer, trajectory
and graph rules of SPEC 1.3-1.5 written out again from the SPEC text (not from saetraj's code).

The SPEC's two deliberate changes from the original code are made here too: the value bias is counted once
(hook_v already holds b_V; the original GPT-2 path added it again), and top-k lists hold active features
only. TransformerLens is loaded as from_pretrained loads it (fold_ln, center_writing_weights, center_unembed),
except fold_value_biases=False: folding moves b_V into b_O, which would spread b_V evenly over the source
tokens instead of weighting it by attention as SPEC 1.2 defines a_j.

HookedTransformer.from_pretrained accepts only the official model names, so the steps it runs are run here on
the local checkpoint: TransformerLens' config conversion (get_pretrained_model_config, on the folder), its
weight conversion from the transformers model (get_pretrained_state_dict with hf_model) and
load_and_process_state_dict. TransformerLens knows Gemma-2 only by the official names (its Gemma-2 configs are
written out per model size), so the Gemma-2 config is written out the same way from the checkpoint's
config.json; the weights still go through TransformerLens' own Gemma conversion.
"""
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import loading_from_pretrained as tl_loading

from sae_lists import active_topk


def _gemma2_config(hf):
    """TransformerLens' Gemma-2 config fields (as in its google/gemma-2-* entries), from a Gemma2Config."""
    return HookedTransformerConfig(
        d_model=hf.hidden_size, d_head=hf.head_dim, n_heads=hf.num_attention_heads, d_mlp=hf.intermediate_size,
        n_layers=hf.num_hidden_layers, n_ctx=hf.max_position_embeddings, eps=hf.rms_norm_eps,
        d_vocab=hf.vocab_size, act_fn=hf.hidden_activation, initializer_range=hf.initializer_range,
        normalization_type="RMS", rotary_base=hf.rope_parameters["rope_theta"],
        positional_embedding_type="rotary", use_attn_scale=True, attn_scale=math.sqrt(hf.query_pre_attn_scalar),
        n_key_value_heads=hf.num_key_value_heads, window_size=hf.sliding_window, use_local_attn=True,
        attn_types=["local" if t == "sliding_attention" else "global" for t in hf.layer_types],
        attn_scores_soft_cap=hf.attn_logit_softcapping, output_logits_soft_cap=hf.final_logit_softcapping,
        gated_mlp=True, final_rms=True, use_normalization_before_and_after=True,
        original_architecture="Gemma2ForCausalLM", rotary_dim=hf.head_dim, init_weights=False,
        model_name="tiny-gemma2", device="cpu", dtype=torch.float32)


def hooked_transformer(folder):
    """The checkpoint in `folder` as a HookedTransformer (float32, CPU)."""
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager").eval()
    arch = hf_model.config.architectures[0]
    if arch == "Gemma2ForCausalLM":
        cfg = _gemma2_config(hf_model.config)
        fold_ln = True
    else:
        # TransformerLens picks the architecture by name when the path contains "llama" or "gemma", and reads
        # GPT-2's n_ctx, which transformers 5 no longer writes (the released gpt2 config.json still has it):
        # hand it a copy under a neutral name, with n_ctx = n_positions for GPT-2.
        local = Path(tempfile.mkdtemp(prefix="tl_")) / "checkpoint"
        shutil.copytree(folder, local)
        config = json.loads((local / "config.json").read_text())
        if arch == "GPT2LMHeadModel":
            config.setdefault("n_ctx", config["n_positions"])
        (local / "config.json").write_text(json.dumps(config))
        fold_ln = True
        cfg = tl_loading.get_pretrained_model_config(str(local), fold_ln=fold_ln, device="cpu")
        cfg.tokenizer_name = None  # token ids are given; the checkpoints hold no tokenizer
        shutil.rmtree(local.parent)
    state = tl_loading.get_pretrained_state_dict(str(folder), cfg, hf_model)
    model = HookedTransformer(cfg, tokenizer=None, move_to_device=False)
    model.load_and_process_state_dict(state, fold_ln=fold_ln, center_writing_weights=True, center_unembed=True,
                                      fold_value_biases=False)
    return model.eval()


def layer_partial_sums(model, cache, layer):
    """For each query q >= 1: [q+2, d] inputs of the SAE (SPEC 1.2): r, then r + PostAttnNorm(c_j)."""
    block = model.blocks[layer]
    r = cache[f"blocks.{layer}.hook_resid_pre"][0]
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0]  # [H, q, k]
    v = cache[f"blocks.{layer}.attn.hook_v"][0]  # [N, H_kv, d_head], b_V included
    W_O, b_O = block.attn.W_O, block.attn.b_O  # [H, d_head, d], [d]
    H = W_O.shape[0]
    v = v.repeat_interleave(H // v.shape[1], dim=1)  # each query head takes its key/value group's v
    per_head = torch.einsum("jhe,hed->hjd", v, W_O)  # v_h[j] @ W_O[h]
    post_norm = block.ln1_post if model.cfg.use_normalization_before_and_after else (lambda x: x)
    out = {}
    n = r.shape[0]
    for q in range(1, n):
        a = torch.einsum("hj,hjd->jd", pattern[:, q, :q + 1], per_head[:, :q + 1]) + b_O / (q + 1)
        c = torch.cumsum(a, dim=0)
        normed = post_norm(c)
        steps = torch.cat([r[q:q + 1], r[q] + normed], dim=0)
        # The contributions must add up to what the block adds to the stream (hook_attn_out, after Gemma-2's
        # post-attention norm), and the last partial sum must be hook_resid_mid.
        resid_mid = cache[f"blocks.{layer}.hook_resid_mid"][0, q]
        attn_out = cache[f"blocks.{layer}.hook_attn_out"][0, q]
        assert torch.allclose(normed[-1], attn_out, rtol=1e-4, atol=1e-5 * float(attn_out.abs().max())), \
            f"layer {layer} q {q}: contributions do not sum to hook_attn_out"
        assert torch.allclose(steps[-1], resid_mid, rtol=1e-4, atol=1e-4 * float(resid_mid.abs().max())), \
            f"layer {layer} q {q}: last partial sum is not hook_resid_mid"
        out[q] = steps
    return out


def evolution(model, saes, ids, k):
    """{layer: (indices [R, k], values [R, k], pre-activations [R, d_sae])} in SPEC 3's row order
    (q = 1..N-1, then s = 0..q+1), every row encoded by SAE-Lens."""
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([ids]))
        result = {}
        for layer, sae in saes.items():
            sums = layer_partial_sums(model, cache, layer)
            x = torch.cat([sums[q] for q in sorted(sums)], dim=0)
            acts = sae.encode(x).numpy()
            pre = (sae.process_sae_in(x) @ sae.W_enc + sae.b_enc).numpy()
            result[layer] = (*active_topk(acts, k), pre, acts)
    return result


def rows_of(q):
    """First row of query q within a prompt (q >= 1): sum over q' < q of (q' + 2)."""
    return sum(qq + 2 for qq in range(1, q))


def trajectories(indices, n, top_t):
    """SPEC 1.3 for prompt length n (q = n-1): [(source_token, feature, final_position)]."""
    q = n - 1
    table = indices[rows_of(q):rows_of(q) + q + 2]
    initial = set(int(f) for f in table[0] if f >= 0)
    last = [int(f) for f in table[q + 1]]
    first_seen = {}
    for s in range(1, q + 2):
        for f in table[s]:
            f = int(f)
            if f >= 0 and f not in initial and f not in first_seen:
                first_seen[f] = s
    out = []
    for f, s in first_seen.items():
        if f in last and last.index(f) <= top_t:
            out.append((s - 1, f, last.index(f)))
    return sorted(out)


def length_graph(indices_by_layer, layers, n, top_t):
    """SPEC 1.4: edges of the length-n graph as (from_token, from_layer, to_token, to_layer, num, best)
    with best = -1 on 0-trajectory edges (saetraj's HDF5 convention), and its trajectories."""
    q = n - 1
    edges, trajs = [], []
    for i, layer in enumerate(layers):
        t = trajectories(indices_by_layer[layer], n, top_t)
        trajs += [(layer, *x) for x in t]
        if i == 0:
            continue
        p = layers[i - 1]
        edges.append((0, p, 0, layer, 0, -1))
        sources = sorted(set(x[0] for x in t))
        for j in sources:
            positions = [x[2] for x in t if x[0] == j]
            edges.append((j, p, q, layer, len(positions), min(positions)))
        if q not in sources:
            edges.append((q, p, q, layer, 0, -1))
    return edges, trajs


def traced_graph(graphs, layers, n_full):
    """SPEC 1.5 over {n: edges}: the union reached backwards from the full-length graph, token 0 left out."""
    first = layers[0]
    chosen = [e for e in graphs[n_full] if e[0] != 0]
    result = set(chosen)
    frontier = [(e[0], e[1]) for e in chosen]
    seen = set()
    while frontier:
        t, layer = frontier.pop()
        if (t, layer) in seen or t == 0 or layer == first:
            continue
        seen.add((t, layer))
        for e in graphs[t + 1]:
            if e[2] == t and e[3] == layer and e[0] != 0 and e not in result:
                result.add(e)
                frontier.append((e[0], e[1]))
    return result
