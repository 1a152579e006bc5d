"""saetraj's MLP transcoders (issue 15 part 3) against SAE-Lens 6.54.12's own transcoder classes and loaders.

- SAE-Lens's four transcoder architectures (Transcoder, SkipTranscoder, JumpReLUTranscoder,
  JumpReLUSkipTranscoder), built by SAE-Lens with random weights and written by its save_model; the reference is
  SAE.load_from_disk of that folder: its `encode` (feature activations) and its `forward` (decoder, b_dec and
  the skip term W_skip x).
- Gemma Scope 2 transcoder folders (transcoder/layer_L_width_W_l0_X[_affine]/params.safetensors, with and without
  affine_skip_connection) and a Gemma Scope 1 transcoder (layer_L/width_W/average_l0_N/params.npz), written here
  with safetensors/numpy in the published layouts and read by SAE-Lens's gemma_3_sae_huggingface_loader and
  gemma_2_transcoder_huggingface_loader from a local Hugging Face cache.

`saetraj encode --transcoder` reads the same files through the sweep's transcoder loader; its top-k lists must
equal SAE-Lens's up to the near-ties sae_lists.compare_lists allows, and its 'output' must equal SAE-Lens's
forward within float32 rounding.
"""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from sae_lens import SAE
from sae_lens.loading import pretrained_sae_loaders as loaders
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.transcoder import (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig, JumpReLUTranscoder,
                                      JumpReLUTranscoderConfig, SkipTranscoder, SkipTranscoderConfig, Transcoder,
                                      TranscoderConfig)

from conftest import hub_snapshot, run_saetraj
from sae_lists import active_topk, compare_lists

D_IN = 40
D_OUT = 40
D_SAE = 256
ROWS = 150
K = 24
TOL_REL = 1e-5

CLASSES = {
    "transcoder": (Transcoder, TranscoderConfig),
    "skip_transcoder": (SkipTranscoder, SkipTranscoderConfig),
    "jumprelu_transcoder": (JumpReLUTranscoder, JumpReLUTranscoderConfig),
    "jumprelu_skip_transcoder": (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig),
}


def _inputs(seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((ROWS, D_IN)) * rng.uniform(0.5, 2.0, (ROWS, 1)) + 0.1).astype(np.float32)


def _saetraj(tmp_path, path, x, layer):
    inp, out = tmp_path / "x.safetensors", tmp_path / "lists.safetensors"
    save_file({"x": x}, str(inp))
    run_saetraj("encode", "--transcoder", path, "--layer", layer, "--input", inp, "--k", K, "--out", out)
    return load_file(str(out))


def _check(name, ref, x, pre, boundary, ours):
    with torch.no_grad():
        acts = ref.encode(torch.from_numpy(x)).numpy()
        out = ref.forward(torch.from_numpy(x)).numpy()
    ref_i, ref_v = active_topk(acts, K)
    exact, ties = compare_lists(ours["indices"], ours["values"], ref_i, ref_v, pre, boundary,
                                TOL_REL * float(np.abs(acts).max()))
    active = (acts > 0).sum(axis=1)
    err = float(np.abs(ours["output"] - out).max())
    print(f"  {name}: {exact} rows exact, {ties} near-tie rows; active per row {active.min()}-{active.max()}; "
          f"output max |diff| {err:.2e} (|output| up to {np.abs(out).max():.2f})")
    assert active.max() > 0 and active.min() < D_SAE
    assert ours["output"].shape == out.shape
    assert err <= 1e-5 * max(1.0, float(np.abs(out).max()))


def _fill(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = {"W_enc": 0.3, "W_dec": 0.4, "W_skip": 0.1, "threshold": 0.3}.get(name, 0.4)
            shift = {"b_enc": -0.6, "threshold": 0.4}.get(name, 0.0)
            p.copy_(torch.randn(p.shape, generator=gen) * scale + shift)
            if name == "threshold":
                p.abs_()
    return module


@pytest.mark.parametrize("arch", list(CLASSES))
def test_sae_lens_transcoder(tmp_path, arch):
    cls, cfg_cls = CLASSES[arch]
    meta = SAEMetadata(model_name="tiny-test-model", hook_name="blocks.2.ln2.hook_normalized",
                       hook_name_out="blocks.2.hook_mlp_out")
    tc = _fill(cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, apply_b_dec_to_input=False, metadata=meta)), 1)
    tc.save_model(tmp_path / "tc")
    assert json.loads((tmp_path / "tc" / "cfg.json").read_text())["architecture"] == arch
    ref = SAE.load_from_disk(tmp_path / "tc")
    assert type(ref) is cls
    x = _inputs(2)
    with torch.no_grad():
        pre = (torch.from_numpy(x) @ ref.W_enc + ref.b_enc).numpy()
    boundary = ref.threshold.detach().numpy() if hasattr(ref, "threshold") else np.zeros(D_SAE)
    _check(arch, ref, x, pre, boundary, _saetraj(tmp_path, tmp_path / "tc", x, 2))


def _raw(seed, skip):
    rng = np.random.default_rng(seed)
    raw = {"w_enc": (rng.standard_normal((D_IN, D_SAE)) * 0.3).astype(np.float32),
           "w_dec": (rng.standard_normal((D_SAE, D_OUT)) * 0.3).astype(np.float32),
           "b_enc": (rng.standard_normal(D_SAE) * 0.4 - 0.5).astype(np.float32),
           "b_dec": (rng.standard_normal(D_OUT) * 0.5).astype(np.float32),
           "threshold": rng.uniform(0.0, 0.8, D_SAE).astype(np.float32)}
    if skip:
        raw["affine_skip_connection"] = (rng.standard_normal((D_IN, D_OUT)) * 0.1).astype(np.float32)
    return raw


@pytest.mark.parametrize("affine", [False, True])
def test_gemma_scope_2_transcoder_through_sae_lens_loader(tmp_path, hub, monkeypatch, affine):
    repo = "google/gemma-scope-2-1b-pt"
    folder = "transcoder/layer_4_width_16k_l0_small" + ("_affine" if affine else "")
    snapshot = hub_snapshot(hub, repo, folder)
    raw = _raw(3 + affine, affine)
    save_file(raw, str(snapshot / "params.safetensors"))
    monkeypatch.setattr(loaders, "get_safetensors_tensor_shapes",
                        lambda repo_id, filename: {k: list(v.shape) for k, v in raw.items()})
    cfg, state, _ = loaders.gemma_3_sae_huggingface_loader(repo, folder, "cpu")
    assert cfg["architecture"] == ("jumprelu_skip_transcoder" if affine else "jumprelu_transcoder")
    assert cfg["hook_name"] == "blocks.4.hook_mlp_in" and cfg["hook_name_out"] == "blocks.4.hook_mlp_out"
    ref = SAE.from_dict(cfg)
    ref.load_state_dict(state)
    x = _inputs(5)
    pre = x @ raw["w_enc"] + raw["b_enc"]
    _check("gemma scope 2" + (" affine" if affine else ""), ref, x, pre, raw["threshold"],
           _saetraj(tmp_path, snapshot, x, 4))


def test_gemma_scope_transcoder_through_sae_lens_loader(tmp_path, hub):
    repo, folder = "google/gemma-scope-2b-pt-transcoders", "layer_6/width_16k/average_l0_76"
    snapshot = hub_snapshot(hub, repo, folder)
    raw = _raw(7, False)
    np.savez(snapshot / "params.npz", W_enc=raw["w_enc"], W_dec=raw["w_dec"], b_enc=raw["b_enc"],
             b_dec=raw["b_dec"], threshold=raw["threshold"])
    # The release's shapes are Gemma 2 2B's (2304 x 16384); the loader takes them from the repo and folder
    # names, so this small file gives them as overrides. Everything else is the loader's own reading.
    cfg, state, _ = loaders.gemma_2_transcoder_huggingface_loader(
        repo, folder, "cpu", cfg_overrides={"d_in": D_IN, "d_out": D_OUT, "d_sae": D_SAE})
    assert cfg["hook_name"] == "blocks.6.ln2.hook_normalized" and cfg["hook_name_out"] == "blocks.6.hook_mlp_out"
    ref = SAE.from_dict(cfg)
    ref.load_state_dict(state)
    x = _inputs(8)
    pre = x @ raw["w_enc"] + raw["b_enc"]
    _check("gemma scope transcoder", ref, x, pre, raw["threshold"], _saetraj(tmp_path, snapshot, x, 6))
