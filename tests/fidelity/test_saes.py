"""saetraj's SAE encoding against SAE-Lens, on SAE folders SAE-Lens writes itself.

Every case is an SAE made by SAE-Lens (StandardSAE, JumpReLUSAE, TopKSAE with random weights) and saved with
its own `save_model` (its cfg.json and sae_weights.safetensors), for each input option saetraj reads:
apply_b_dec_to_input true/false and normalize_activations none, layer_norm, constant_norm_rescale and
expected_average_only_in; residual centring (model_from_pretrained_kwargs.center_writing_weights, and
gpt2's default); and a Gemma Scope params.npz loaded through SAE-Lens's Gemma Scope loader
(gemma_2_sae_huggingface_loader, served from a local Hugging Face cache). `saetraj encode` encodes the same
vectors with the sweep's own code; its top-k active lists must equal those of SAE-Lens's `encode` read back
from the same folder.

Ties: values agree within TOL_REL * max|activation| of the row (float32 products summed in another order);
indices must be identical, except where two features' SAE-Lens pre-activations lie within that tolerance of
each other, or a feature lies within it of its activity boundary (0 or its threshold): such rows are
counted and printed, and every other difference fails (sae_lists.compare_lists).
"""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from sae_lens import SAE, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.loading.pretrained_sae_loaders import gemma_2_sae_huggingface_loader
from sae_lens.saes.sae import SAEMetadata

from conftest import run_saetraj, saetraj_binary
from sae_lists import active_topk, compare_lists

D_IN = 48
D_SAE = 320
ROWS = 300
K = 24  # below the active count of most rows of ReLU SAEs, above it for sparse rows: both cut and padding
TOL_REL = 1e-5
NORMS = ["none", "layer_norm", "constant_norm_rescale", "expected_average_only_in"]


def _randomise(sae, seed, threshold=False):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(sae.W_enc.shape, generator=gen) * 0.3)
        sae.W_dec.copy_(torch.randn(sae.W_dec.shape, generator=gen) * 0.3)
        # b_enc mostly negative, so that a good share of features is inactive on every row.
        sae.b_enc.copy_(torch.randn(sae.b_enc.shape, generator=gen) * 0.5 - 2.0)
        sae.b_dec.copy_(torch.randn(sae.b_dec.shape, generator=gen) * 0.2)
        if threshold:
            sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=gen) * 1.5)
    return sae


def _metadata(model_name="tiny-test-model", kwargs=None):
    meta = SAEMetadata(model_name=model_name, hook_name="blocks.1.hook_resid_pre")
    if kwargs is not None:
        meta.model_from_pretrained_kwargs = kwargs
    return meta


def _make(arch, b_dec, norm, seed, topk_k=10, model_name="tiny-test-model", kwargs=None):
    common = dict(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=b_dec, normalize_activations=norm,
                  metadata=_metadata(model_name, kwargs))
    if arch == "standard":
        return _randomise(StandardSAE(StandardSAEConfig(**common)), seed)
    if arch == "jumprelu":
        return _randomise(JumpReLUSAE(JumpReLUSAEConfig(**common)), seed, threshold=True)
    return _randomise(TopKSAE(TopKSAEConfig(k=topk_k, **common)), seed)


# (name, builder, whether the reference centres each vector first)
CASES = []
for _arch in ["standard", "jumprelu", "topk"]:
    for _b_dec in [True, False]:
        for _norm in NORMS:
            CASES.append((f"{_arch}-bdec_{str(_b_dec).lower()}-{_norm}",
                          lambda a=_arch, b=_b_dec, n=_norm, s=len(CASES): _make(a, b, n, 100 + s), False))
CASES += [
    # TopK with its own k above the list length: the cut at K then falls inside the TopK survivors.
    ("topk_k40-bdec_true-none", lambda: _make("topk", True, "none", 200, topk_k=40), False),
    # TransformerLens' centred residual stream, as the cfg declares it, and gpt2's default when undeclared.
    ("standard-centred-declared", lambda: _make("standard", True, "none", 201,
                                                kwargs={"center_writing_weights": True}), True),
    ("standard-centred-gpt2-default", lambda: _make("standard", True, "none", 202, model_name="gpt2"), True),
    ("jumprelu-gpt2-declared-uncentred", lambda: _make("jumprelu", True, "none", 203, model_name="gpt2",
                                                       kwargs={"center_writing_weights": False}), False),
]


def _duplicated_features(seed):
    """Every odd feature a copy of the even one before it: exact ties, which both sides must break by the
    lower index (or, where float rounding splits a pair, accept only as a near-tie)."""
    sae = _make("standard", True, "none", seed)
    with torch.no_grad():
        sae.W_enc[:, 1::2] = sae.W_enc[:, 0::2]
        sae.b_enc[1::2] = sae.b_enc[0::2]
    return sae


CASES.append(("standard-duplicated-features", lambda: _duplicated_features(204), False))


def _inputs(seed):
    """Residual-like rows: varied norms, a few with a large common offset (so centring and layer norm matter)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, D_IN)).astype(np.float32) * rng.uniform(0.2, 3.0, (ROWS, 1)).astype(np.float32)
    x[::7] += rng.standard_normal((1, D_IN)).astype(np.float32) * 4.0 + 2.0
    return x


def _saetraj_lists(tmp_path, sae_dir, x, extra=()):
    inp = tmp_path / "x.safetensors"
    out = tmp_path / "lists.safetensors"
    save_file({"x": x}, str(inp))
    run_saetraj("encode", "--sae", sae_dir, "--input", inp, "--k", K, "--out", out, *extra)
    lists = load_file(str(out))
    return lists["indices"], lists["values"]


def _reference(sae, x, centre):
    """SAE-Lens's encode, and its pre-activations (for judging ties) through its own preprocessing."""
    xt = torch.from_numpy(x)
    if centre:
        xt = xt - xt.mean(dim=-1, keepdim=True)
    with torch.no_grad():
        acts = sae.encode(xt).numpy()
        pre = (sae.process_sae_in(xt) @ sae.W_enc + sae.b_enc).numpy()
    return acts, pre


def _check(sae, x, ours_i, ours_v, centre, name):
    acts, pre = _reference(sae, x, centre)
    ref_i, ref_v = active_topk(acts, K)
    boundary = sae.threshold.detach().numpy() if isinstance(sae, JumpReLUSAE) else np.zeros(acts.shape[1])
    tol = TOL_REL * float(np.abs(acts).max())
    exact, ties = compare_lists(ours_i, ours_v, ref_i, ref_v, pre, boundary, tol)
    active = (acts > 0).sum(axis=1)
    print(f"  {name}: {exact} rows exact, {ties} near-tie rows; active per row {active.min()}-{active.max()}")
    # The comparison must exercise both the cut at K and the padding, or it proves little.
    assert active.max() > 0
    return active


@pytest.mark.parametrize("name,build,centre", CASES, ids=[c[0] for c in CASES])
def test_sae_lens_folders(tmp_path, name, build, centre):
    folder = tmp_path / "sae"
    build().save_model(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    sae = SAE.load_from_disk(folder)  # SAE-Lens reading its own file: the reference
    x = _inputs(len(name))
    ours_i, ours_v = _saetraj_lists(tmp_path, folder, x)
    _check(sae, x, ours_i, ours_v, centre, f"{name} ({cfg['architecture']})")


def test_cut_and_padding_are_exercised(tmp_path):
    folder = tmp_path / "sae"
    _make("standard", True, "none", 7).save_model(folder)
    sae = SAE.load_from_disk(folder)
    acts, _ = _reference(sae, _inputs(3), False)
    active = (acts > 0).sum(axis=1)
    assert (active > K).any() and (active < K).any(), f"active counts {active.min()}-{active.max()} vs K={K}"


REPO = "google/gemma-scope-2b-pt-res"
FOLDER = "layer_3/width_16k/average_l0_57"


def _hub_cache(root, params):
    """A Hugging Face cache holding REPO/FOLDER/params.npz, as hf_hub_download leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / commit / FOLDER
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    np.savez(snapshot / "params.npz", **params)
    return snapshot


def test_gemma_scope_through_sae_lens_loader(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    params = {"W_enc": (rng.standard_normal((D_IN, D_SAE)) * 0.3).astype(np.float32),
              "W_dec": (rng.standard_normal((D_SAE, D_IN)) * 0.3).astype(np.float32),
              "b_enc": (rng.standard_normal(D_SAE) * 0.5 - 0.5).astype(np.float32),
              "b_dec": (rng.standard_normal(D_IN) * 0.7).astype(np.float32),
              "threshold": (rng.uniform(0.0, 1.5, D_SAE)).astype(np.float32)}
    snapshot = _hub_cache(tmp_path / "hub", params)
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def converter(path, device, cfg_overrides=None):
        # The release's d_in (2304) is replaced by the fixture's; everything else is the loader's own.
        cfg, state, _ = gemma_2_sae_huggingface_loader(REPO, FOLDER, device,
                                                       cfg_overrides={"d_in": D_IN, "d_sae": D_SAE})
        return cfg, state

    sae = SAE.load_from_disk(tmp_path, converter=converter)
    assert isinstance(sae, JumpReLUSAE) and sae.cfg.apply_b_dec_to_input is False
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    x = _inputs(11)
    ours_i, ours_v = _saetraj_lists(tmp_path, snapshot, x)
    _check(sae, x, ours_i, ours_v, False, "gemma scope params.npz")


# `saetraj encode`'s bad inputs: exit code, nothing on stdout, and one line on stderr naming the problem.
def _expect_error(code, message, *args):
    import subprocess
    result = subprocess.run([saetraj_binary(), "encode", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == f"saetraj: error: {message}\n"


def test_encode_bad_inputs(tmp_path):
    folder = tmp_path / "sae"
    _make("standard", True, "none", 1).save_model(folder)
    good = tmp_path / "x.safetensors"
    save_file({"x": _inputs(1)}, str(good))
    wide = tmp_path / "wide.safetensors"
    save_file({"x": np.zeros((3, D_IN + 1), np.float32)}, str(wide))
    flat = tmp_path / "flat.safetensors"
    save_file({"x": np.zeros(D_IN, np.float32)}, str(flat))
    empty = tmp_path / "empty.safetensors"
    save_file({"x": np.zeros((0, D_IN), np.float32)}, str(empty))
    out = tmp_path / "o.safetensors"
    _expect_error(2, "saetraj encode: give --sae DIR or --transcoder DIR (one of them)", "--input", good, "--out", out)
    _expect_error(2, "saetraj encode: give --input X.safetensors", "--sae", folder, "--out", out)
    _expect_error(2, "saetraj encode: give --out LISTS.safetensors", "--sae", folder, "--input", good)
    _expect_error(2, "saetraj encode: --k must be at least 1, got 0", "--sae", folder, "--input", good, "--out", out,
                  "--k", "0")
    _expect_error(2, "saetraj encode: --center must be auto, on or off, got 'yes'", "--sae", folder, "--input", good,
                  "--out", out, "--center", "yes")
    _expect_error(3, f"{good}: no tensor 'y' (give its name with --tensor)", "--sae", folder, "--input", good,
                  "--out", out, "--tensor", "y")
    _expect_error(3, f"tensor 'x' in {wide} has wrong shape; expected [rows, {D_IN}] (the SAE's d_in), got "
                     f"[3, {D_IN + 1}]", "--sae", folder, "--input", wide, "--out", out)
    _expect_error(3, f"tensor 'x' in {flat} has wrong shape; expected [rows, {D_IN}] (the SAE's d_in), got [{D_IN}]",
                  "--sae", folder, "--input", flat, "--out", out)
    _expect_error(3, f"tensor 'x' in {empty} has no rows", "--sae", folder, "--input", empty, "--out", out)
    assert not out.exists()


def test_compare_lists_accepts_only_near_ties():
    pre = np.array([[3.0, 2.0, 2.0 + 5e-7, 0.5, -1.0]], dtype=np.float32)
    boundary = np.zeros(5)
    ref_i, ref_v = active_topk(np.maximum(pre, 0), 3)
    assert ref_i.tolist() == [[0, 2, 1]]
    # Identical lists, and a swap of the two features 5e-7 apart: accepted (exact, then near-tie).
    assert compare_lists(ref_i, ref_v, ref_i, ref_v, pre, boundary, 1e-5) == (1, 0)
    swapped_i = np.array([[0, 1, 2]], dtype=np.int32)
    swapped_v = np.array([[3.0, 2.0, 2.0 + 5e-7]], dtype=np.float32)
    assert compare_lists(swapped_i, swapped_v, ref_i, ref_v, pre, boundary, 1e-5) == (0, 1)
    # A swap across a real gap, a wrong value, and a missing feature that is not near its boundary: refused.
    for ours_i, ours_v in [([[2, 0, 1]], [[2.0, 3.0, 2.0]]), ([[0, 2, 1]], [[3.0, 2.1, 2.0]]),
                           ([[0, 2, -1]], [[3.0, 2.0, 0.0]])]:
        with pytest.raises(AssertionError):
            compare_lists(np.array(ours_i, np.int32), np.array(ours_v, np.float32), ref_i, ref_v, pre, boundary,
                          1e-5)
    # A feature just above its boundary that one side keeps and the other drops: accepted as a near-tie.
    pre_b = np.array([[3.0, 1e-6, -1.0]], dtype=np.float32)
    ref_i, ref_v = active_topk(np.maximum(pre_b, 0), 3)
    ours_i = np.array([[0, -1, -1]], np.int32)
    ours_v = np.array([[3.0, 0.0, 0.0]], np.float32)
    assert compare_lists(ours_i, ours_v, ref_i, ref_v, pre_b, np.zeros(3), 1e-5) == (0, 1)
