"""The whole method (SPEC 1.1-1.5) against a reference built the way the original research code was
(reference_method.py: TransformerLens hooks + SAE-Lens encode), on the GPT-2, Gemma-2 and Llama checkpoints
that transformers writes (make_checkpoints.py), with one SAE-Lens SAE per layer saved by SAE-Lens itself;
and on Gemma-2 once more in the original study's setting: a Gemma Scope release tree of params.npz files
(saetraj: --gemmascope-root, choosing each layer's average_l0 by the canonical L0; the reference: SAE-Lens's
Gemma Scope loader on the same files).

saetraj sweeps two prompts (12 tokens, past Gemma-2's sliding window of 5, and 7 tokens) with 1 rank (both
methods, direct and factored) and under mpirun with 2 ranks; every file is held to the reference:
- evolution tables: per row the same top-k active lists; values within TOL_REL of the largest activation of
  the layer; indices identical except near-ties (sae_lists.compare_lists: two features, or a feature and its
  activity boundary, within that tolerance in SAE-Lens's own pre-activations). Near-tie rows are counted and
  printed; the graph comparison below needs none, and fails naming the row if one occurs.
- trajectories, per-length edges and traced edges: identical tables, built by the reference from its own
  lists with SPEC 1.3-1.5.
"""
import json
import os
import shutil
import subprocess

import h5py
import huggingface_hub.constants
import numpy as np
import pytest
import torch
import transformers
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, SAE, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.loading.pretrained_sae_loaders import gemma_2_sae_huggingface_loader
from sae_lens.saes.sae import SAEMetadata
from tokenizers import Tokenizer, models, pre_tokenizers

import make_checkpoints
import reference_method as ref
from conftest import run_saetraj, saetraj_binary
from sae_lists import compare_lists

K = 40
TOP_T = 8
D_SAE = 256
TOL_REL = 1e-5
PROMPTS = [[3, 17, 200, 5, 9, 77, 300, 41, 8, 8, 250, 499], [1, 44, 2, 310, 7, 7, 128]]
MODELS = ["gpt2", "gemma2", "llama"]
# The original study's setting on the Gemma-2 fixture: Gemma Scope params.npz per layer in the release tree
# (--gemmascope-root), loaded by the reference through SAE-Lens's Gemma Scope loader.
GEMMA_SCOPE = "gemma2_gemmascope"
GEMMA_SCOPE_REPO = "google/gemma-scope-2b-pt-res"
# average_l0_X folders per layer: saetraj must pick the one nearest gemma-2-2b's canonical 65k L0 (73, 121,
# 77 for layers 0-2), which is the one the reference loads.
GEMMA_SCOPE_L0 = {0: (73, [73, 200]), 1: (121, [121]), 2: (77, [30, 77])}
# (label, ranks, method, analysed layers: None for all). The layer subset skips a layer, so its graphs join
# each analysed layer to the previous analysed one (SPEC 1.4), on the model with three layers.
RUNS = [("1 rank, direct", 1, "direct", None), ("1 rank, factored", 1, "factored", None),
        ("2 ranks, auto", 2, "auto", None), ("2 ranks, layers 0,2", 2, "auto", [0, 2])]


def _byte_level_tokenizer(folder, vocab_size):
    """A byte-level BPE tokenizer.json of exactly vocab_size ids (the 256 byte symbols, then merged pairs),
    which saetraj needs for the token texts; the prompts are given as ids."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = []
    for a in alphabet:
        for b in alphabet:
            if len(vocab) == vocab_size:
                break
            if a + b not in vocab:
                vocab[a + b] = len(vocab)
                merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.save(str(folder / "tokenizer.json"))


def _sae(model_name, layer, d_in, scale, seed):
    """One SAE per model kind: GPT-2 standard ReLU on TransformerLens' centred stream (declared in the cfg,
    as SAE-Lens's GPT-2 releases do), Gemma-2 JumpReLU without b_dec subtraction (as Gemma Scope),
    Llama TopK with constant-norm rescaling."""
    meta = SAEMetadata(model_name=f"tiny-{model_name}", hook_name=f"blocks.{layer}.hook_resid_pre",
                       model_from_pretrained_kwargs={"center_writing_weights": model_name == "gpt2"})
    gen = torch.Generator().manual_seed(seed)
    if model_name == "gpt2":
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=D_SAE, metadata=meta))
    elif model_name == "gemma2":
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=D_SAE, apply_b_dec_to_input=False, metadata=meta))
    else:
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=D_SAE, k=30, normalize_activations="constant_norm_rescale",
                                    metadata=meta))
        scale = 1.0 / np.sqrt(d_in)  # inputs are rescaled to norm sqrt(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(sae.W_enc.shape, generator=gen) * scale)
        sae.W_dec.copy_(torch.randn(sae.W_dec.shape, generator=gen) * 0.1)
        sae.b_enc.copy_(torch.randn(sae.b_enc.shape, generator=gen) * 0.5 - 0.5)
        sae.b_dec.copy_(torch.randn(sae.b_dec.shape, generator=gen) * 0.1 / max(scale, 1e-6) / np.sqrt(d_in))
        if isinstance(sae, JumpReLUSAE):
            sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=gen) * 0.6)
    return sae


def _check_reference_model(folder, model, cache):
    """The reference's residual stream is transformers' own (TransformerLens' is centred for GPT-2, where
    center_writing_weights applies), so that the reference holds saetraj to the model, not to a
    TransformerLens conversion that drifted from it."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                           attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = hf(torch.tensor([PROMPTS[0]]), output_hidden_states=True).hidden_states
    for layer in range(model.cfg.n_layers):
        want = hidden[layer][0]
        if model.cfg.normalization_type in ("LN", "LNPre"):  # LNPre: LayerNorm after fold_ln
            want = want - want.mean(dim=-1, keepdim=True)
        got = cache[f"blocks.{layer}.hook_resid_pre"][0]
        worst = float((got - want).abs().max() / want.abs().max())
        assert worst <= 1e-4, f"{folder}: TransformerLens' resid_pre of layer {layer} is off by {worst:.3g} relative"


def _gemma_scope_saes(work, model, cache):
    """Gemma Scope params.npz files in a local Hugging Face cache laid out as the release; returns the tree's
    root (the snapshot) and {layer: SAE-Lens's JumpReLUSAE loaded by its Gemma Scope loader}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = work / "hub" / ("models--" + GEMMA_SCOPE_REPO.replace("/", "--"))
    root = repo / "snapshots" / commit
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    d_in = model.cfg.d_model
    saes = {}
    for layer, (chosen, present) in GEMMA_SCOPE_L0.items():
        scale = 1.0 / float(cache[f"blocks.{layer}.hook_resid_pre"][0].norm(dim=-1).mean())
        for l0 in present:
            rng = np.random.default_rng(2000 + 10 * layer + l0)
            folder = root / f"layer_{layer}" / "width_16k" / f"average_l0_{l0}"
            folder.mkdir(parents=True)
            np.savez(folder / "params.npz",
                     W_enc=(rng.standard_normal((d_in, D_SAE)) * scale).astype(np.float32),
                     W_dec=(rng.standard_normal((D_SAE, d_in)) * 0.1).astype(np.float32),
                     b_enc=(rng.standard_normal(D_SAE) * 0.5 - 0.5).astype(np.float32),
                     b_dec=(rng.standard_normal(d_in) * 0.1).astype(np.float32),
                     threshold=rng.uniform(0.0, 0.6, D_SAE).astype(np.float32))

        def converter(path, device, cfg_overrides=None, layer=layer, chosen=chosen):
            cfg, state, _ = gemma_2_sae_huggingface_loader(
                GEMMA_SCOPE_REPO, f"layer_{layer}/width_16k/average_l0_{chosen}", device,
                cfg_overrides={"d_in": d_in, "d_sae": D_SAE})
            return cfg, state

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(work / "hub"))
            saes[layer] = SAE.load_from_disk(work, converter=converter)
        assert saes[layer].cfg.metadata.hook_name == f"blocks.{layer}.hook_resid_post"
    return root, saes


@pytest.fixture(scope="module")
def fixtures(checkpoints, tmp_path_factory):
    work = tmp_path_factory.mktemp("method")
    out = {}
    for name in MODELS:
        # A copy, given a tokenizer (saetraj's sweep writes token texts; the ids are given).
        folder = work / name / "model"
        shutil.copytree(checkpoints[f"{name}_f32"], folder)
        model = ref.hooked_transformer(folder)
        _byte_level_tokenizer(folder, model.cfg.d_vocab)
        with torch.no_grad():
            _, cache = model.run_with_cache(torch.tensor([PROMPTS[0]]))
        _check_reference_model(folder, model, cache)
        saes = {}
        for layer in range(model.cfg.n_layers):
            r = cache[f"blocks.{layer}.hook_resid_pre"][0]
            scale = 1.0 / float(r.norm(dim=-1).mean())  # pre-activations of order one on this model's stream
            sae = _sae(name, layer, model.cfg.d_model, scale, 1000 + 10 * MODELS.index(name) + layer)
            sae.save_model(work / name / f"sae_{layer}")
            saes[layer] = SAE.load_from_disk(work / name / f"sae_{layer}")  # as SAE-Lens reads its own file
        expected = [ref.evolution(model, saes, ids, K) for ids in PROMPTS]
        layers = list(range(model.cfg.n_layers))
        out[name] = dict(folder=folder, saes=saes, expected=expected, layers=layers,
                         sae_args=["--sae", str(work / name / "sae_{layer}")])
        if name == "gemma2":
            root, gs_saes = _gemma_scope_saes(work / GEMMA_SCOPE, model, cache)
            out[GEMMA_SCOPE] = dict(folder=folder, saes=gs_saes, layers=layers,
                                    expected=[ref.evolution(model, gs_saes, ids, K) for ids in PROMPTS],
                                    sae_args=["--gemmascope-root", str(root), "--gemmascope-width", "16k"])
    return out


def _sweep(fx, ranks, method, layers, out):
    args = ["sweep", "--model", fx["folder"], *fx["sae_args"], "--bos", "off",
            "--k", K, "--top-t", TOP_T, "--method", method, "--out", out, "--overwrite",
            "--layers", ",".join(map(str, layers))]
    for ids in PROMPTS:
        args += ["--prompt-ids", ",".join(map(str, ids))]
    if ranks == 1:
        run_saetraj(*args)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", saetraj_binary(), *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"


def _rows(table, fields):
    return sorted(tuple(int(row[f]) for f in fields) for row in table)


def _reference_graphs(fx, layers):
    """The reference's trajectory, edge and traced-edge rows, from its own lists, for the analysed layers."""
    want_traj, want_edges, want_traced = [], [], []
    for p, ids in enumerate(PROMPTS):
        indices = {layer: fx["expected"][p][layer][0] for layer in layers}
        graphs = {}
        for n in range(2, len(ids) + 1):
            edges, trajs = ref.length_graph(indices, layers, n, TOP_T)
            graphs[n] = edges
            want_edges += [(p, n, *e) for e in edges]
            want_traj += [(p, n, *t) for t in trajs]
        want_traced += [(p, *e) for e in ref.traced_graph(graphs, layers, len(ids))]
    assert len(want_traj) > 0 and any(e[-2] > 0 for e in want_edges), "the fixture makes no trajectories"
    return sorted(want_traj), sorted(want_edges), sorted(want_traced)


@pytest.mark.parametrize("name", MODELS + [GEMMA_SCOPE])
def test_method_against_transformer_lens_and_sae_lens(fixtures, tmp_path, name):
    fx = fixtures[name]
    for label, ranks, method, subset in RUNS:
        if subset is not None and max(subset) >= len(fx["layers"]):
            continue
        layers = subset or fx["layers"]
        want_traj, want_edges, want_traced = _reference_graphs(fx, layers)
        out = tmp_path / f"{ranks}_{method}_{len(layers)}.h5"
        _sweep(fx, ranks, method, layers, out)
        with h5py.File(out, "r") as f:
            assert list(f.attrs["layers"]) == layers
            offsets = f["prompts/row_offset"][()]
            got_i, got_v = f["evolution/indices"][()], f["evolution/values"][()]
            exact = ties = 0
            for p, ids in enumerate(PROMPTS):
                rows = (len(ids) - 1) * (len(ids) + 4) // 2
                for li, layer in enumerate(layers):
                    ref_i, ref_v, pre, acts = fx["expected"][p][layer]
                    sae = fx["saes"][layer]
                    boundary = sae.threshold.detach().numpy() if isinstance(sae, JumpReLUSAE) else np.zeros(D_SAE)
                    tol = TOL_REL * float(np.abs(acts).max())
                    sl = slice(offsets[p], offsets[p] + rows)
                    e, t = compare_lists(got_i[li, sl], got_v[li, sl], ref_i, ref_v, pre, boundary, tol)
                    exact, ties = exact + e, ties + t
            assert ties == 0, f"{ties} near-tie rows: the graphs of the two sides may differ legitimately"
            traj = _rows(f["graphs/trajectories"][()],
                         ["prompt", "length", "layer", "source_token", "feature", "final_position"])
            edges = _rows(f["graphs/edges"][()], ["prompt", "length", "from_token", "from_layer", "to_token",
                                                  "to_layer", "num_trajectories", "best_final_position"])
            traced = _rows(f["graphs/traced_edges"][()], ["prompt", "from_token", "from_layer", "to_token",
                                                          "to_layer", "num_trajectories", "best_final_position"])
        assert traj == want_traj, f"{name}, {label}: trajectories differ"
        assert edges == want_edges, f"{name}, {label}: per-length edges differ"
        assert traced == want_traced, f"{name}, {label}: traced edges differ"
        print(f"  {name}, {label}: {exact} rows identical, {len(traj)} trajectories, {len(edges)} edges, "
              f"{len(traced)} traced edges")
