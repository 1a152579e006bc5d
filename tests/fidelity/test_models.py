"""saetraj's forward pass against transformers on checkpoints that transformers wrote itself.

Tolerance, per compared tensor (logits, and per layer resid_pre, resid_mid, resid_post over all positions):
    max|saetraj - transformers| <= 1e-4 * max|transformers|
i.e. the largest error is at most 1e-4 of the tensor's largest magnitude. Both sides compute in float32;
F16 and BF16 files are compared with transformers loading the same file and computing in float32.
"""
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from conftest import run_saetraj, saetraj_binary
import make_checkpoints

RTOL = 1e-4
# Three prompts: a short one, one just past Gemma-2's sliding window, and one far past it.
PROMPTS = [
    [3, 17, 200],
    [1, 5, 9, 77, 300, 41, 8, 8, 8, 250, 499, 2],
    [int(i) for i in np.random.default_rng(7).integers(0, make_checkpoints.VOCAB, size=40)],
]
assert len(PROMPTS[2]) > 4 * make_checkpoints.GEMMA_WINDOW


def max_rel(ours, ref):
    scale = float(np.abs(ref).max())
    assert scale > 0, "reference tensor is all zeros: the comparison would be empty"
    return float(np.abs(ours - ref).max()) / scale


def load_reference(folder):
    return transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager").eval()


def decoder(model):
    """The blocks and the final norm, named per architecture."""
    if isinstance(model, transformers.GPT2LMHeadModel):
        return model.transformer.h, model.transformer.ln_f
    if isinstance(model, transformers.Gemma3ForConditionalGeneration):
        return model.model.language_model.layers, model.model.language_model.norm
    return model.model.layers, model.model.norm


def attention_contribution_module(model, block):
    """The module whose output is what the attention sub-block adds to the residual stream."""
    if isinstance(model, transformers.GPT2LMHeadModel):
        return block.attn  # c_proj with its bias b_O included
    if hasattr(block, "pre_feedforward_layernorm"):
        return block.post_attention_layernorm  # Gemma-2/3 normalise the attention output before adding it
    return block.self_attn  # Llama, Qwen: o_proj output (their post_attention_layernorm is the pre-MLP norm)


def reference_forward(model, ids):
    """Logits, hidden_states, and per block resid_pre / resid_mid / resid_post captured by hooks."""
    blocks, _ = decoder(model)
    captured = [dict() for _ in blocks]
    hooks = []
    for l, block in enumerate(blocks):
        def pre(module, args, kwargs, l=l):
            captured[l]["resid_pre"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

        def post(module, args, output, l=l):
            captured[l]["resid_post"] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        def attn(module, args, output, l=l):
            captured[l]["attn"] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        hooks.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        hooks.append(block.register_forward_hook(post))
        hooks.append(attention_contribution_module(model, block).register_forward_hook(attn))
    try:
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    layers = []
    for c in captured:
        layers.append({"resid_pre": c["resid_pre"][0].numpy(), "resid_mid": (c["resid_pre"] + c["attn"])[0].numpy(),
                       "resid_post": c["resid_post"][0].numpy()})
    return out.logits[0].numpy(), [h[0].numpy() for h in out.hidden_states], layers


def reference_readout(model, resid_post_last, top=5):
    """SPEC 1.6 with transformers' own modules: final norm, lm_head, Gemma-2's final soft-cap."""
    _, final_norm = decoder(model)
    with torch.no_grad():
        logits = model.lm_head(final_norm(torch.from_numpy(resid_post_last)[None, None]))[0, 0]
        cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
    probs = torch.softmax(logits.double(), 0)
    order = torch.sort(probs, descending=True, stable=True).indices[:top]
    return order.numpy().astype(np.int32), probs[order].numpy()


CASES = [f"{m}_{d}" for m in make_checkpoints.MODELS for d in make_checkpoints.DTYPES]


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_transformers(case, checkpoints, tmp_path):
    folder = checkpoints[case]
    model = load_reference(folder)
    n_layers = model.config.get_text_config().num_hidden_layers
    worst = {}
    for p, ids in enumerate(PROMPTS):
        out = tmp_path / f"prompt{p}.safetensors"
        run_saetraj("forward", "--model", folder, "--prompt-ids", ",".join(map(str, ids)), "--out", out, "--readout")
        ours = load_file(str(out))
        logits, hidden, layers = reference_forward(model, ids)

        checks = {"logits": (ours["logits"], logits)}
        for l in range(n_layers):
            for key in ("resid_pre", "resid_mid", "resid_post"):
                checks[f"{key}.{l}"] = (ours[f"{key}.{l}"], layers[l][key])
            # transformers' hidden_states: [0] the embedding output (Gemma: scaled by sqrt(d)), [l] the input
            # of block l, and the last one AFTER the final norm, not the last block's output.
            checks[f"hidden_states[{l}]"] = (ours[f"resid_pre.{l}"], hidden[l])
        _, final_norm = decoder(model)
        with torch.no_grad():
            normed = final_norm(torch.from_numpy(ours[f"resid_post.{n_layers - 1}"])).numpy()
        checks[f"hidden_states[{n_layers}]"] = (normed, hidden[n_layers])
        assert len(hidden) == n_layers + 1

        for name, (a, b) in checks.items():
            assert a.shape == b.shape, f"{case} prompt {p} {name}: shape {a.shape} vs transformers {b.shape}"
            err = max_rel(a, b)
            kind = name.split(".")[0].split("[")[0]  # "resid_pre.3" -> "resid_pre", "hidden_states[2]" -> ...
            worst[kind] = max(worst.get(kind, 0.0), err)
            assert err <= RTOL, f"{case} prompt {p} ({len(ids)} tokens) {name}: max rel diff {err:.3g} > {RTOL}"

        for l in range(n_layers):
            ref_ids, ref_probs = reference_readout(model, layers[l]["resid_post"][-1])
            np.testing.assert_array_equal(ours[f"readout.{l}.ids"], ref_ids, err_msg=f"{case} prompt {p} layer {l}")
            np.testing.assert_allclose(ours[f"readout.{l}.probs"], ref_probs, rtol=1e-4, atol=1e-6,
                                       err_msg=f"{case} prompt {p} layer {l} readout probabilities")
            worst["readout_probs"] = max(worst.get("readout_probs", 0.0),
                                         float(np.abs(ours[f"readout.{l}.probs"] - ref_probs).max()))
    print(f"\n{case}: worst " + ", ".join(f"{k} {v:.2e}" for k, v in sorted(worst.items())))


def test_sliding_window_is_exercised(checkpoints):
    """The Gemma-2 comparison above would pass with the window ignored if the window never cut anything:
    make sure it changes transformers' own logits on the longest prompt."""
    folder = checkpoints["gemma2_f32"]
    windowed = load_reference(folder)
    unwindowed = load_reference(folder)
    unwindowed.config.sliding_window = 10_000
    for layer in unwindowed.model.layers:
        layer.self_attn.sliding_window = None
    a, _, _ = reference_forward(windowed, PROMPTS[2])
    b, _, _ = reference_forward(unwindowed, PROMPTS[2])
    assert max_rel(a, b) > 1e-2


def _with_config(src, dst, edit):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _logits(folder, out, ids):
    run_saetraj("forward", "--model", folder, "--prompt-ids", ",".join(map(str, ids)), "--out", out)
    return load_file(str(out))["logits"]


def test_llama_rope_fields_of_both_transformers_generations(checkpoints, tmp_path):
    """transformers 5 writes RoPE as one rope_parameters object; checkpoints on the Hub (transformers 4) have a
    top-level rope_theta and rope_scaling. saetraj read only the latter, so a transformers-5 Llama-3 ran with
    theta 10000 and no llama3 scaling. Both spellings must give the same logits, and the fields must matter."""
    src = checkpoints["llama_f32"]

    def as_v4(cfg):
        rope = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rope.pop("rope_theta")
        cfg["rope_scaling"] = rope

    v4 = _with_config(src, tmp_path / "v4", as_v4)
    bare = _with_config(src, tmp_path / "bare", lambda cfg: cfg.pop("rope_parameters"))
    ids = PROMPTS[2]
    v5_logits = _logits(src, tmp_path / "v5.safetensors", ids)
    np.testing.assert_array_equal(_logits(v4, tmp_path / "v4.safetensors", ids), v5_logits)
    # Without the fields (what saetraj saw before the fix) the logits move far beyond the tolerance.
    assert max_rel(_logits(bare, tmp_path / "bare.safetensors", ids), v5_logits) > 100 * RTOL


def test_gemma2_layer_types_other_than_even_sliding_are_refused(checkpoints, tmp_path):
    def swap(cfg):
        cfg["layer_types"][0], cfg["layer_types"][1] = cfg["layer_types"][1], cfg["layer_types"][0]

    folder = _with_config(checkpoints["gemma2_f32"], tmp_path / "swapped", swap)
    r = subprocess.run([saetraj_binary(), "forward", "--model", str(folder), "--prompt-ids", "1,2",
                        "--out", str(tmp_path / "x.safetensors")], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert 'layer_types[0] is "full_attention"' in r.stderr, r.stderr


@pytest.mark.parametrize("ids, message", [("1,x,3", "'x' is not a non-negative token id"),
                                          ("1,,3", "'' is not a non-negative token id"),
                                          ("1,-2", "'-2' is not a non-negative token id"),
                                          ("1,512", "token id 512 is outside the model's vocabulary")])
def test_forward_refuses_bad_ids(checkpoints, tmp_path, ids, message):
    r = subprocess.run([saetraj_binary(), "forward", "--model", str(checkpoints["llama_f32"]), "--prompt-ids", ids,
                        "--out", str(tmp_path / "x.safetensors")], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr, (r.returncode, r.stderr)
    assert not (tmp_path / "x.safetensors").exists()


def test_gemma3_window_and_rope_kinds_are_exercised(checkpoints):
    """The Gemma-3 comparison would pass with a wrong layer pattern or one RoPE table for both kinds if
    neither changed anything: each must move transformers' own logits on the longest prompt."""
    folder = checkpoints["gemma3_f32"]
    ref, _, _ = reference_forward(load_reference(folder), PROMPTS[2])
    unwindowed = load_reference(folder)
    unwindowed.config.sliding_window = 10_000  # the sliding layers' mask is built from the config
    assert max_rel(reference_forward(unwindowed, PROMPTS[2])[0], ref) > 1e-2
    one_table = load_reference(folder)
    rotary = one_table.model.rotary_emb
    rotary.sliding_attention_inv_freq.copy_(rotary.full_attention_inv_freq)
    assert max_rel(reference_forward(one_table, PROMPTS[2])[0], ref) > 1e-2


def test_gemma3_config_fields_of_both_transformers_generations(checkpoints, tmp_path):
    """transformers 4 (the Hub's gemma-3 files) writes rope_theta, rope_local_base_freq, rope_scaling (full
    layers only) and sliding_window_pattern; transformers 5 writes rope_parameters per layer kind and
    layer_types. Both spellings must give the same logits; leaving the RoPE fields out must not."""
    src = checkpoints["gemma3_f32"]

    def as_v4(cfg):
        rope = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rope["full_attention"]["rope_theta"]
        cfg["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": rope["full_attention"]["factor"]}

    def with_pattern(cfg):
        # sliding_window_pattern 2: layers 1 and 3 full; the config's own layer_types say 1 only.
        cfg.pop("layer_types")
        cfg["sliding_window_pattern"] = 2

    ids = PROMPTS[2]
    v5_logits = _logits(src, tmp_path / "v5.safetensors", ids)
    v4 = _with_config(src, tmp_path / "v4", as_v4)
    np.testing.assert_array_equal(_logits(v4, tmp_path / "v4.safetensors", ids), v5_logits)
    bare = _with_config(src, tmp_path / "bare", lambda cfg: cfg.pop("rope_parameters"))
    assert max_rel(_logits(bare, tmp_path / "bare.safetensors", ids), v5_logits) > 100 * RTOL
    patterned = _with_config(src, tmp_path / "pattern", with_pattern)
    ref = load_reference(patterned)
    assert [l.self_attn.sliding_window for l in ref.model.layers] == [make_checkpoints.GEMMA_WINDOW, None] * 2
    logits, _, _ = reference_forward(ref, ids)
    assert max_rel(_logits(patterned, tmp_path / "pattern.safetensors", ids), logits) <= RTOL


# Exit codes: 2 for a setting saetraj does not run (InputError), 3 for a malformed file (FormatError).
@pytest.mark.parametrize("case, edit, code, message", [
    ("gemma3_f32", lambda c: c.update(use_bidirectional_attention=True), 2, "use_bidirectional_attention true"),
    ("gemma3_f32", lambda c: c["rope_parameters"]["full_attention"].update(rope_type="yarn"), 2,
     'rope_parameters.full_attention type "yarn" is not supported for Gemma-3'),
    ("gemma3_f32", lambda c: c["layer_types"].pop(), 3, 'field "layer_types" must list one kind per layer (4)'),
    ("gemma3_multimodal_f32", lambda c: c.pop("text_config"), 3, 'missing field "text_config"'),
    ("qwen3_f32", lambda c: c.update(use_sliding_window=True), 2,
     "use_sliding_window true is not supported for Qwen3"),
    ("qwen2_f32", lambda c: c.update(layer_types=["sliding_attention", "full_attention"]), 2,
     'layer_types[0] is "sliding_attention"; Qwen2 is supported with full attention on every layer only'),
])
def test_unsupported_settings_of_new_architectures_are_refused(checkpoints, tmp_path, case, edit, code, message):
    folder = _with_config(checkpoints[case], tmp_path / "edited", edit)
    r = subprocess.run([saetraj_binary(), "forward", "--model", str(folder), "--prompt-ids", "1,2",
                        "--out", str(tmp_path / "x.safetensors")], capture_output=True, text=True)
    assert r.returncode == code and message in r.stderr, (r.returncode, r.stderr)
