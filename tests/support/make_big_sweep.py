#!/usr/bin/env python3
"""A corpus-size synthetic sweep file with graph tables, to time `saetraj index` (README "Measured figures").

Writes what SweepReader validates and `saetraj index` reads: the root attributes, /prompts, /tokens and
/graphs (trajectories, an empty edge table, traced edges, top_t). /evolution and /readout have their full
shapes but are chunked and never written, so they take no space (index never reads them).

Trajectory counts as the demo sweep has them (530 trajectories for 24 query positions x 4 layers at
top_t 10: about 5.5 per (length, layer)): a Poisson number per (prompt, length, layer), in the order
pipeline/graph_builder writes them (prompt, layer, query). Features are drawn Zipf-like from d_sae (a few
frequent ones, a long tail), source tokens with a third at BOS and the rest uniform, final positions below
top_t. A traced edge for about one (prompt, layer) in ten of the last query's trajectories.

  make_big_sweep.py OUT.h5 [--prompts 10000] [--tokens 64] [--layers 12] [--d-sae 24576] [--seed 0]
"""
import argparse

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--prompts", type=int, default=10000)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--top-t", type=int, default=10)
    ap.add_argument("--per-length-layer", type=float, default=5.5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    P, n, L, k = a.prompts, a.tokens, a.layers, a.k
    rows_per_prompt = (n - 1) * (n + 4) // 2
    R = P * rows_per_prompt
    strings = h5py.string_dtype("utf-8")
    with h5py.File(a.out, "w") as f:
        at = f.attrs
        at["format"] = "saetraj-sweep"
        at["format_version"] = np.int64(2)
        at["model"] = "synthetic-big"
        at["architecture"] = "GPT2LMHeadModel"
        at["d_model"] = np.int64(768)
        at["n_model_layers"] = np.int64(L)
        at["layers"] = np.arange(L, dtype=np.int32)
        at["k"] = np.int64(k)
        at.create("sae_ids", [f"big/{i}-res" for i in range(L)], dtype=strings)
        at["complete"] = np.int64(1)
        at["created_utc"] = "2026-12-01T00:00:00Z"
        at["command_line"] = "tests/support/make_big_sweep.py"
        f.create_dataset("prompts/text", data=[f"prompt {p}" for p in range(P)], dtype=strings)
        f.create_dataset("prompts/id", data=[f"p{p}" for p in range(P)], dtype=strings)
        f.create_dataset("prompts/n_tokens", data=np.full(P, n, np.int32))
        f.create_dataset("prompts/token_offset", data=np.arange(P, dtype=np.int64) * n)
        f.create_dataset("prompts/row_offset", data=np.arange(P, dtype=np.int64) * rows_per_prompt)
        f.create_dataset("prompts/done", data=np.ones(P, np.uint8))
        ids = np.minimum(rng.zipf(1.3, size=P * n), 50256).astype(np.int32)
        ids[::n] = 50256  # BOS
        f.create_dataset("tokens/ids", data=ids)
        f.create_dataset("tokens/text", data=[f"t{i}" for i in ids], dtype=strings)
        for name, dtype in (("evolution/row_query", np.int32), ("evolution/row_step", np.int32)):
            f.create_dataset(name, shape=(R,), dtype=dtype, chunks=(1 << 16,))
        f.create_dataset("evolution/indices", shape=(L, R, k), dtype=np.int32, chunks=(1, 1024, k))
        f.create_dataset("evolution/values", shape=(L, R, k), dtype=np.float32, chunks=(1, 1024, k))
        f.create_dataset("readout/token_ids", shape=(P, L, 5), dtype=np.int32, chunks=(min(P, 256), L, 5))
        f.create_dataset("readout/probs", shape=(P, L, 5), dtype=np.float32, chunks=(min(P, 256), L, 5))
        f.create_dataset("readout/token_text", shape=(P, L, 5), dtype=strings, chunks=(min(P, 256), L, 5))
        for name, dtype in (("skipped/line", np.int64),):
            f.create_dataset(name, shape=(0,), dtype=dtype)
        for name in ("skipped/id", "skipped/text", "skipped/reason"):
            f.create_dataset(name, shape=(0,), dtype=strings)

        # Trajectories, prompt by prompt in graph_builder's order (prompt, layer, query).
        table = np.dtype([(c, "<i4") for c in ("prompt", "length", "layer", "source_token", "feature", "final_position")])
        traced_dtype = np.dtype([(c, "<i4") for c in ("prompt", "from_token", "from_layer", "to_token", "to_layer",
                                                      "num_trajectories", "best_final_position")])
        counts = rng.poisson(a.per_length_layer, size=(P, L, n - 1))
        N = int(counts.sum())
        g = f.create_group("graphs")
        g.attrs["top_t"] = np.int64(a.top_t)
        traj = g.create_dataset("trajectories", shape=(N,), dtype=table)
        g.create_dataset("edges", shape=(0,), dtype=np.dtype([(c, "<i4") for c in (
            "prompt", "length", "from_token", "from_layer", "to_token", "to_layer", "num_trajectories",
            "best_final_position")]))
        traced = []
        done = 0
        block = 500
        for p0 in range(0, P, block):
            c = counts[p0:p0 + block]
            m = int(c.sum())
            prompt = np.repeat(np.repeat(np.arange(p0, p0 + c.shape[0], dtype=np.int32), L * (n - 1)), c.ravel())
            layer = np.repeat(np.tile(np.repeat(np.arange(L, dtype=np.int32), n - 1), c.shape[0]), c.ravel())
            length = np.repeat(np.tile(np.arange(2, n + 1, dtype=np.int32), c.shape[0] * L), c.ravel())
            rows = np.empty(m, table)
            rows["prompt"], rows["layer"], rows["length"] = prompt, layer, length
            bos = rng.random(m) < 1 / 3
            rows["source_token"] = np.where(bos, 0, (rng.random(m) * length).astype(np.int32))
            rows["feature"] = np.minimum(rng.zipf(1.2, size=m) - 1 + rng.integers(0, 64, size=m), a.d_sae - 1)
            rows["final_position"] = rng.integers(0, a.top_t, size=m)
            traj[done:done + m] = rows
            last = np.flatnonzero((length == n) & (rng.random(m) < 0.1))
            e = np.zeros(len(last), traced_dtype)
            e["prompt"], e["from_token"], e["to_token"] = prompt[last], rows["source_token"][last], n - 1
            e["to_layer"], e["num_trajectories"] = layer[last], 1
            traced.append(e)
            done += m
        g.create_dataset("traced_edges", data=np.concatenate(traced))
    print(f"{a.out}: {P} prompts x {n} tokens, {L} layers, {N} trajectories")


if __name__ == "__main__":
    main()
