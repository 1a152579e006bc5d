"""A synthetic INDEX.h5 in the feature index layout at corpus size (26 layers x 65k features, 10,000 prompts of
64 tokens, 20 M occurrences; about 830 MB, 11 s), to time FeatureIndex queries by hand (README "Feature index"):
    /usr/bin/python3 tests/analysis/make_big_index.py /tmp/big_index.h5
Random values: only the shapes, sorting and row ranges are those of a real index."""
import sys
import h5py, numpy as np
S = h5py.string_dtype("utf-8")
rng = np.random.default_rng(0)
L, d_sae, P, N = 26, 65536, 10000, 64
n_occ = 20_000_000
layer = np.sort(rng.integers(0, L, n_occ)).astype(np.int32)
feat = rng.integers(0, d_sae, n_occ).astype(np.int32)
order = np.lexsort((feat, layer)); layer, feat = layer[order], feat[order]
key = layer.astype(np.int64) * d_sae + feat
starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
counts = np.diff(np.r_[starts, n_occ])
F = len(starts)
with h5py.File(sys.argv[1], "w") as h5:
    a = h5.attrs
    a["format"] = "saetraj-index"; a["format_version"] = np.int64(1); a["model"] = "big"; a["top_t"] = np.int64(15)
    a["layers"] = np.arange(L, dtype=np.int32); a.create("sources", data=["big.h5"], dtype=S)
    h5["prompts/source"] = np.zeros(P, np.int32); h5["prompts/index"] = np.arange(P, dtype=np.int32)
    h5.create_dataset("prompts/id", data=[str(i) for i in range(P)], dtype=S)
    h5.create_dataset("prompts/text", data=["some text"] * P, dtype=S)
    h5["prompts/n_tokens"] = np.full(P, N, np.int32); h5["prompts/token_offset"] = np.arange(P, dtype=np.int64) * N
    h5["tokens/ids"] = rng.integers(0, 1000, P * N).astype(np.int32)
    h5.create_dataset("tokens/text", data=[f"t{i % 1000}" for i in range(P * N)], dtype=S)
    length = rng.integers(2, N + 1, n_occ).astype(np.int32)
    src = (rng.random(n_occ) * length).astype(np.int32)
    for name, v in (("prompt", rng.integers(0, P, n_occ)), ("length", length), ("source_token", src),
                    ("distance_back", length - 1 - src), ("final_position", rng.integers(0, 16, n_occ)),
                    ("source_id", rng.integers(0, 1000, n_occ))):
        h5.create_dataset(f"occurrences/{name}", data=np.asarray(v, np.int32), chunks=(1 << 16,))
    h5.create_dataset("occurrences/traced", data=rng.integers(0, 2, n_occ).astype(np.int8), chunks=(1 << 16,))
    f = h5.create_group("features")
    f["layer"] = layer[starts]; f["feature"] = feat[starts]; f["start"] = starts.astype(np.int64); f["count"] = counts.astype(np.int64)
    f["prompts"] = counts.astype(np.int32); f["traced"] = counts // 2
    for n in ("distance_mean", "distance_median", "final_position_mean", "final_position_median"):
        f[n] = rng.random(F) * 10
    f["top_sources"] = rng.integers(0, 1000, (F, 5)).astype(np.int32); f["top_source_counts"] = np.ones((F, 5), np.int64)
    f.create_dataset("explanation", data=["an explanation"] * F, dtype=S)
    h5["vocab/id"] = np.arange(1000, dtype=np.int32); h5.create_dataset("vocab/text", data=[f"t{i}" for i in range(1000)], dtype=S)
print(F, "features", n_occ, "occurrences")
