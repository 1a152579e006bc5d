"""A plain numpy/h5py reference for `saetraj index`: sweep files in, INDEX.h5 out (format "saetraj-index",
format_version 1; the layout is written down in the README section "Feature index").

It is serial and simple on purpose: everything is read into memory and each aggregate is computed the
direct way, so that the C++ command, which streams and runs under MPI, can be held to it dataset by dataset
(tests/analysis/test_index.py). Use the C++ command for real corpora.
"""

import os
import sys
from datetime import datetime, timezone

import h5py
import numpy as np

from .errors import SweepInputError
from .io import Sweep, _text, _texts

FORMAT_NAME = "saetraj-index"
FORMAT_VERSION = 1
TOP_SOURCES = 5
HEAD_COLUMNS_BEFORE_HEADS = 3   # jump, bias, unassigned
ORDER_COLUMNS = 4               # loo_source, shapley_source, loo_agrees, shapley_agrees
ORDER_VALUE_COLUMNS = 6
STRINGS = h5py.string_dtype("utf-8")


def _group_name(sweep, path, top_t):
    """The graphs group an index reads: /graphs, or with top_t the group built with that T (/graphs first
    when it was, else /graphs_T<T>)."""
    with h5py.File(path, "r") as h5:
        if top_t is None:
            return "graphs"
        if int(h5["graphs"].attrs["top_t"]) == top_t:
            return "graphs"
        if f"graphs_T{top_t}" in h5:
            return f"graphs_T{top_t}"
    raise SweepInputError(f"{path}: no graphs built with T={top_t}; the file holds graphs for "
                          f"T={', '.join(str(t) for t in sweep.available_top_t())} (build them with "
                          f"`saetraj graph {path} --top-t {top_t}`)")


class _Source:
    """Everything the index needs from one sweep file, read into memory."""

    def __init__(self, path, top_t):
        self.path = path
        with Sweep(path) as sweep:
            if not sweep.complete:
                raise SweepInputError(f"{path}: the sweep is incomplete (complete = 0); finish it with its "
                                      f"sweep command and --resume")
            self.group = _group_name(sweep, path, top_t)
        with h5py.File(path, "r") as h5:
            root = h5.attrs
            self.settings = {
                "model": _text(root.get("model", "")),
                "architecture": _text(root.get("architecture", "")),
                "layers": [int(v) for v in np.asarray(root["layers"]).ravel()],
                "k": int(root["k"]),
                "sae_ids": [_text(v) for v in np.asarray(root.get("sae_ids", [])).ravel()],
                "top_t": int(h5[self.group].attrs["top_t"]),
            }
            self.prompt_text = _texts(h5["prompts/text"])
            n = len(self.prompt_text)
            self.prompt_id = _texts(h5["prompts/id"]) if "prompts/id" in h5 else [""] * n
            self.n_tokens = h5["prompts/n_tokens"][()].astype(np.int64)
            self.token_offset = h5["prompts/token_offset"][()].astype(np.int64)
            self.token_ids = h5["tokens/ids"][()].astype(np.int64)
            self.token_text = _texts(h5["tokens/text"])
            group = h5[self.group]
            self.trajectories = group["trajectories"][()]
            self.traced_edges = group["traced_edges"][()]
            self.heads = group["trajectory_heads"][()] if "trajectory_heads" in group else None
            self.head_columns = (_texts_attr(group["trajectory_heads"], "columns", self.heads.shape[1])
                                 if self.heads is not None else None)
            has_order = "trajectory_order" in group and "trajectory_order_values" in group
            self.order = group["trajectory_order"][()] if has_order else None
            self.order_values = group["trajectory_order_values"][()] if has_order else None
            if has_order:
                self.order_columns = _texts_attr(group["trajectory_order"], "columns", ORDER_COLUMNS)
                self.order_value_columns = _texts_attr(group["trajectory_order_values"], "columns",
                                                       ORDER_VALUE_COLUMNS)
            self.explanations = {}
            if "explanations" in h5:
                for l, f, t in zip(h5["explanations/layer"][()], h5["explanations/feature"][()],
                                   _texts(h5["explanations/text"])):
                    self.explanations.setdefault((int(l), int(f)), t)


def _texts_attr(dataset, name, width):
    if name not in dataset.attrs:
        raise SweepInputError(f"{dataset.file.filename}: {dataset.name} has no attribute '{name}'")
    names = [_text(v) for v in np.asarray(dataset.attrs[name]).ravel()]
    if len(names) != width:
        raise SweepInputError(f"{dataset.file.filename}: {dataset.name} has {width} columns but its attribute "
                              f"'{name}' names {len(names)}")
    return names


def _check_together(sources):
    first = sources[0]
    for i, src in enumerate(sources):
        for earlier in sources[:i]:
            if os.path.samefile(src.path, earlier.path):
                raise SweepInputError(f"{src.path}: given twice (it is the same file as {earlier.path})")
        for field, value in src.settings.items():
            if value != first.settings[field]:
                raise SweepInputError(f"{src.path}: {field} is {value} but {first.path} has "
                                      f"{first.settings[field]}; every sweep of one index must agree")
    if all(s.heads is not None for s in sources):
        for src in sources:
            if src.head_columns != first.head_columns:
                raise SweepInputError(f"{src.path}: its head columns ({', '.join(src.head_columns)}) differ "
                                      f"from {first.path}'s ({', '.join(first.head_columns)})")


def _traced_flags(src):
    """1 where the prompt's traced graph carries the trajectory: a traced edge of the same prompt into
    (length - 1, layer) from the trajectory's source token with trajectories on it."""
    carried = {(int(e["prompt"]), int(e["to_layer"]), int(e["to_token"]), int(e["from_token"]))
               for e in src.traced_edges if e["num_trajectories"] > 0}
    t = src.trajectories
    return np.array([(int(p), int(l), int(n) - 1, int(s)) in carried
                     for p, l, n, s in zip(t["prompt"], t["layer"], t["length"], t["source_token"])],
                    dtype=np.int8)


def _median(values):
    values = np.sort(values)
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (float(values[mid - 1]) + float(values[mid])) / 2


def _mean(values):
    """Left-to-right sum divided by the count."""
    return float(np.cumsum(np.asarray(values, dtype=np.float64))[-1]) / len(values) if len(values) else np.nan


def _top_sources(ids):
    counts = {}
    for i in ids:
        counts[int(i)] = counts.get(int(i), 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_SOURCES]
    top = np.full(TOP_SOURCES, -1, dtype=np.int32)
    top_counts = np.zeros(TOP_SOURCES, dtype=np.int64)
    for j, (token, count) in enumerate(ranked):
        top[j], top_counts[j] = token, count
    return top, top_counts


def _agree_share(column):
    seen = column[(column == 0) | (column == 1)]
    return float(np.count_nonzero(seen == 1)) / len(seen) if len(seen) else np.nan


def build_index(paths, out, top_t=None, command_line=None):
    """Indexes the sweep files `paths` (in that order) into `out`; returns the number of (layer, feature)
    rows. top_t chooses the graphs group (None: /graphs)."""
    if not paths:
        raise SweepInputError("give at least one sweep file")
    sources = [_Source(str(p), top_t) for p in paths]
    _check_together(sources)
    for src in sources:
        if os.path.exists(out) and os.path.samefile(src.path, out):
            raise SweepInputError(f"{out}: the output is one of the sweep files; choose another --out")
    settings = sources[0].settings
    with_heads = all(s.heads is not None for s in sources)
    with_order = all(s.order is not None for s in sources)

    # /prompts and /tokens: the sources one after the other.
    prompt_base, token_base = [], []
    prompts = {"source": [], "index": [], "id": [], "text": [], "n_tokens": []}
    token_ids, token_text = [], []
    for i, src in enumerate(sources):
        prompt_base.append(len(prompts["index"]))
        token_base.append(len(token_ids))
        for p in range(len(src.prompt_text)):
            prompts["source"].append(i)
            prompts["index"].append(p)
            prompts["id"].append(src.prompt_id[p])
            prompts["text"].append(src.prompt_text[p])
            prompts["n_tokens"].append(int(src.n_tokens[p]))
            start = int(src.token_offset[p])
            token_ids += [int(v) for v in src.token_ids[start:start + int(src.n_tokens[p])]]
            token_text += src.token_text[start:start + int(src.n_tokens[p])]
    token_offset = np.concatenate([[0], np.cumsum(prompts["n_tokens"], dtype=np.int64)])[:-1]

    # /occurrences before sorting: every source's trajectory table in order.
    columns = {name: [] for name in ("prompt", "length", "source_token", "distance_back", "final_position",
                                     "source_id", "traced", "layer", "feature")}
    heads, order, order_values = [], [], []
    for i, src in enumerate(sources):
        t = src.trajectories
        rows = prompt_base[i] + t["prompt"].astype(np.int64)
        columns["prompt"].append(rows)
        columns["length"].append(t["length"])
        columns["source_token"].append(t["source_token"])
        columns["distance_back"].append(t["length"] - 1 - t["source_token"])
        columns["final_position"].append(t["final_position"])
        columns["source_id"].append(np.array([token_ids[token_offset[r] + s]
                                              for r, s in zip(rows, t["source_token"])], dtype=np.int64))
        columns["traced"].append(_traced_flags(src))
        columns["layer"].append(t["layer"])
        columns["feature"].append(t["feature"])
        if with_heads:
            heads.append(src.heads)
        if with_order:
            order.append(src.order)
            order_values.append(src.order_values)
    columns = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}
    rank = np.lexsort((columns["feature"], columns["layer"]))   # stable: sources, then table rows
    columns = {name: values[rank] for name, values in columns.items()}
    if with_heads:
        heads = np.concatenate(heads)[rank]
    if with_order:
        order = np.concatenate(order)[rank]
        order_values = np.concatenate(order_values)[rank]

    # /features: one row per run of equal (layer, feature).
    keys = list(zip(columns["layer"].tolist(), columns["feature"].tolist()))
    starts = [r for r in range(len(keys)) if r == 0 or keys[r] != keys[r - 1]]
    counts = [stop - start for start, stop in zip(starts, starts[1:] + [len(keys)])]
    features = {name: [] for name in ("layer", "feature", "start", "count", "prompts", "traced",
                                      "distance_mean", "distance_median", "final_position_mean",
                                      "final_position_median", "top_sources", "top_source_counts",
                                      "head_share_mean", "loo_agree", "shapley_agree", "explanation")}
    for start, count in zip(starts, counts):
        rows = slice(start, start + count)
        layer, feature = keys[start]
        features["layer"].append(layer)
        features["feature"].append(feature)
        features["start"].append(start)
        features["count"].append(count)
        features["prompts"].append(len(set(columns["prompt"][rows].tolist())))
        features["traced"].append(int(np.count_nonzero(columns["traced"][rows])))
        features["distance_mean"].append(_mean(columns["distance_back"][rows]))
        features["distance_median"].append(_median(columns["distance_back"][rows]))
        features["final_position_mean"].append(_mean(columns["final_position"][rows]))
        features["final_position_median"].append(_median(columns["final_position"][rows]))
        top, top_counts = _top_sources(columns["source_id"][rows])
        features["top_sources"].append(top)
        features["top_source_counts"].append(top_counts)
        if with_heads:
            mine = heads[rows].astype(np.float64)
            jump = mine[:, 0]
            usable = mine[np.isfinite(jump) & (jump != 0)]
            shares = usable[:, HEAD_COLUMNS_BEFORE_HEADS:] / usable[:, :1]
            n_heads = mine.shape[1] - HEAD_COLUMNS_BEFORE_HEADS
            features["head_share_mean"].append([_mean(shares[:, h]) for h in range(n_heads)])
        if with_order:
            names = sources[0].order_columns
            features["loo_agree"].append(_agree_share(order[rows][:, names.index("loo_agrees")]))
            features["shapley_agree"].append(_agree_share(order[rows][:, names.index("shapley_agrees")]))
        features["explanation"].append(next((s.explanations[keys[start]] for s in sources
                                             if keys[start] in s.explanations), ""))

    # /vocab: every source token id, with the text of its first place in /tokens.
    first_text = {}
    for token, text in zip(token_ids, token_text):
        first_text.setdefault(token, text)
    vocab = sorted(set(columns["source_id"].tolist()))

    n_heads = heads.shape[1] - HEAD_COLUMNS_BEFORE_HEADS if with_heads else 0
    with h5py.File(out, "w") as h5:
        a = h5.attrs
        a["format"] = FORMAT_NAME
        a["format_version"] = np.int64(FORMAT_VERSION)
        a["model"] = settings["model"]
        a["architecture"] = settings["architecture"]
        a["layers"] = np.array(settings["layers"], dtype=np.int32)
        a["k"] = np.int64(settings["k"])
        a.create("sae_ids", data=settings["sae_ids"], dtype=STRINGS)
        a["top_t"] = np.int64(settings["top_t"])
        a["graphs_group"] = sources[0].group
        a.create("sources", data=[s.path for s in sources], dtype=STRINGS)
        a["created_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        a["command_line"] = command_line if command_line is not None else " ".join(sys.argv)

        def put(name, data, dtype):
            h5.create_dataset(name, data=np.asarray(data, dtype=dtype) if dtype is not STRINGS else data,
                              dtype=dtype)

        put("prompts/source", prompts["source"], np.int32)
        put("prompts/index", prompts["index"], np.int32)
        put("prompts/id", prompts["id"], STRINGS)
        put("prompts/text", prompts["text"], STRINGS)
        put("prompts/n_tokens", prompts["n_tokens"], np.int32)
        put("prompts/token_offset", token_offset, np.int64)
        put("tokens/ids", token_ids, np.int32)
        put("tokens/text", token_text, STRINGS)
        for name in ("prompt", "length", "source_token", "distance_back", "final_position", "source_id"):
            put(f"occurrences/{name}", columns[name], np.int32)
        put("occurrences/traced", columns["traced"], np.int8)
        if with_heads:
            put("occurrences/heads", heads.reshape(-1, n_heads + HEAD_COLUMNS_BEFORE_HEADS), np.float32)
            h5["occurrences/heads"].attrs.create("columns", data=sources[0].head_columns, dtype=STRINGS)
        if with_order:
            put("occurrences/order", order.reshape(-1, ORDER_COLUMNS), np.int32)
            h5["occurrences/order"].attrs.create("columns", data=sources[0].order_columns, dtype=STRINGS)
            put("occurrences/order_values", order_values.reshape(-1, ORDER_VALUE_COLUMNS), np.float32)
            h5["occurrences/order_values"].attrs.create("columns", data=sources[0].order_value_columns,
                                                        dtype=STRINGS)
        for name in ("layer", "feature", "prompts"):
            put(f"features/{name}", features[name], np.int32)
        for name in ("start", "count", "traced"):
            put(f"features/{name}", features[name], np.int64)
        for name in ("distance_mean", "distance_median", "final_position_mean", "final_position_median"):
            put(f"features/{name}", features[name], np.float64)
        put("features/top_sources", np.reshape(features["top_sources"], (-1, TOP_SOURCES)), np.int32)
        put("features/top_source_counts", np.reshape(features["top_source_counts"], (-1, TOP_SOURCES)),
            np.int64)
        if with_heads:
            put("features/head_share_mean", np.reshape(features["head_share_mean"], (-1, n_heads)), np.float64)
        if with_order:
            put("features/loo_agree", features["loo_agree"], np.float64)
            put("features/shapley_agree", features["shapley_agree"], np.float64)
        put("features/explanation", features["explanation"], STRINGS)
        put("vocab/id", vocab, np.int32)
        put("vocab/text", [first_text[v] for v in vocab], STRINGS)
    return len(starts)


def main(argv=None):
    """python3 -m saetraj_analysis.index_reference SWEEP.h5 [MORE.h5 ...] --out INDEX.h5 [--top-t T]"""
    import argparse
    from .errors import AnalysisError
    parser = argparse.ArgumentParser(description="Reference feature index (slow, in memory); the real one is "
                                                 "`saetraj index`.")
    parser.add_argument("sweeps", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--top-t", type=int)
    args = parser.parse_args(argv)
    try:
        n = build_index(args.sweeps, args.out, args.top_t)
    except AnalysisError as err:
        print(f"index_reference: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {n} features")
    return 0


if __name__ == "__main__":
    sys.exit(main())
