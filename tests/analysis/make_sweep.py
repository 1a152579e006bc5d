"""Builds small synthetic sweep files in the layout of SPEC section 3 for the analysis tests.

The evolution tables are random but structured (features enter and leave the top-k list step by step);
the graph tables are derived from them by the small reference implementation of SPEC 1.3-1.5 below, written
independently of the analysis package so that the tests compare two readings of the method.
"""

from dataclasses import dataclass, field

import h5py
import numpy as np

TRAJECTORY_DTYPE = np.dtype([(n, np.int32) for n in
                             ("prompt", "length", "layer", "source_token", "feature", "final_position")])
EDGE_DTYPE = np.dtype([(n, np.int32) for n in
                       ("prompt", "length", "from_token", "from_layer", "to_token", "to_layer",
                        "num_trajectories", "best_final_position")])
TRACED_DTYPE = np.dtype([(n, np.int32) for n in
                         ("prompt", "from_token", "from_layer", "to_token", "to_layer",
                          "num_trajectories", "best_final_position")])

DEFAULT_PROMPTS = [
    ["<bos>", "The", " final", " answer", ":", " Max", " gave", " flashlight", " to"],
    ["<bos>", "Pay", " $5", " for", " </b>", " tea"],
    ["<bos>", "Smith", " left", ".", " Mark"],
]


# ----- reference implementation of SPEC 1.3-1.5 ------------------------------------------------------

def trajectories(block, top_t):
    """(source_token, feature, final_position) of the newcomers of one (layer, length) evolution table
    [q+2, k] whose final position is <= top_t, ordered by source token then final position."""
    initial = {int(f) for f in block[0] if f >= 0}
    first_step = {}
    for s in range(1, len(block)):
        for f in block[s]:
            f = int(f)
            if f >= 0 and f not in initial and f not in first_step:
                first_step[f] = s
    final = {int(f): r for r, f in enumerate(block[-1]) if f >= 0}
    found = [(s - 1, f, final[f]) for f, s in first_step.items() if f in final and final[f] <= top_t]
    return sorted(found, key=lambda t: (t[0], t[2]))


def length_graph(blocks, layers, length, top_t):
    """Edges (from_token, from_layer, to_token, to_layer, num_trajectories, best_final_position) of the
    graph of one length; blocks[(layer, q)] is the evolution table."""
    q = length - 1
    edges = []
    for i in range(1, len(layers)):
        prev, layer = layers[i - 1], layers[i]
        edges.append((0, prev, 0, layer, 0, -1))
        by_source = {}
        for source, _, position in trajectories(blocks[(layer, q)], top_t):
            by_source.setdefault(source, []).append(position)
        for source in sorted(by_source):
            edges.append((source, prev, q, layer, len(by_source[source]), min(by_source[source])))
        if q not in by_source:
            edges.append((q, prev, q, layer, 0, -1))
    return edges


def traced_graph(blocks, layers, n_tokens, top_t):
    """Backward tracing of SPEC 1.5 over the per-length graphs; edges in order of discovery."""
    graphs = {n: length_graph(blocks, layers, n, top_t) for n in range(2, n_tokens + 1)}
    traced, seen = [], set()
    pending = []

    def take(edge):
        if edge[:4] not in seen:
            seen.add(edge[:4])
            traced.append(edge)
            pending.append((edge[0], edge[1]))

    for edge in graphs[n_tokens]:
        if edge[0] != 0:
            take(edge)
    visited = set()
    while pending:
        vertex = pending.pop(0)
        token, layer = vertex
        if vertex in visited or token == 0 or layer == layers[0]:
            continue
        visited.add(vertex)
        for edge in graphs[token + 1]:
            if (edge[2], edge[3]) == vertex and edge[0] != 0:
                take(edge)
    return traced


# ----- synthetic evolution ------------------------------------------------------------------------------

def random_block(rng, q, k, n_features):
    """A plausible [q+2, k] table: each step drops and inserts a few features and reorders slightly."""
    size = int(rng.integers(k - 2, k + 1))
    current = list(rng.choice(n_features, size=size, replace=False))
    rows = [current]
    for _ in range(q + 1):
        current = list(current)
        for _ in range(int(rng.integers(0, 3))):
            if current:
                current.pop(int(rng.integers(0, len(current))))
        for _ in range(int(rng.integers(0, 3))):
            fresh = int(rng.integers(0, n_features))
            if fresh not in current:
                current.insert(int(rng.integers(0, len(current) + 1)), fresh)
        if len(current) > 1 and rng.random() < 0.5:
            a = int(rng.integers(0, len(current) - 1))
            current[a], current[a + 1] = current[a + 1], current[a]
        current = current[:k]
        rows.append(current)
    block = np.full((q + 2, k), -1, dtype=np.int32)
    for s, row in enumerate(rows):
        block[s, :len(row)] = row
    return block


@dataclass
class SweepTruth:
    """What was written, for the tests' expectations."""
    layers: list
    k: int
    top_t: int
    prompts: list
    blocks: dict = field(default_factory=dict)      # (prompt, layer, q) -> int32 [q+2, k]
    readout: dict = field(default_factory=dict)     # (prompt, layer) -> [(text, prob)]
    explanations: dict = field(default_factory=dict)  # (layer, feature) -> text
    trajectories: np.ndarray = None
    edges: np.ndarray = None
    traced_edges: np.ndarray = None
    # sweep with mlp=True: (prompt, layer, q) -> (steps, [(feature, final_position, value, step, term,
    # transcoder_feature, transcoder_activation)] of every newcomer, whatever its final position)
    mlp: dict = None
    # sweep with mlp=True and explanations: (layer, transcoder feature) -> text (/mlp_explanations)
    mlp_explanations: dict = field(default_factory=dict)


def _graph_tables(truth, top_t):
    traj_rows, edge_rows, traced_rows = [], [], []
    for p, tokens in enumerate(truth.prompts):
        blocks = {(layer, q): truth.blocks[(p, layer, q)] for layer in truth.layers
                  for q in range(1, len(tokens))}
        for n in range(2, len(tokens) + 1):
            for layer in truth.layers:
                for source, feature, position in trajectories(blocks[(layer, n - 1)], top_t):
                    traj_rows.append((p, n, layer, source, feature, position))
            edge_rows += [(p, n) + e for e in length_graph(blocks, truth.layers, n, top_t)]
        traced_rows += [(p,) + e for e in traced_graph(blocks, truth.layers, len(tokens), top_t)]
    return (np.array(traj_rows, dtype=TRAJECTORY_DTYPE), np.array(edge_rows, dtype=EDGE_DTYPE),
            np.array(traced_rows, dtype=TRACED_DTYPE))


def _write_graphs(h5, name, top_t, tables):
    group = h5.create_group(name)
    group.attrs["top_t"] = np.int32(top_t)
    for table_name, table in zip(("trajectories", "edges", "traced_edges"), tables):
        group.create_dataset(table_name, data=table)


MLP_TERMS = ("feature", "bias", "skip", "error")


def mlp_records(rng, k, n_features):
    """One (layer, query)'s MLP path: its step count and the newcomers of resid_post's top-k list, as the
    explicit records the tests expect; some final slots stay empty, most newcomers come from features."""
    steps = int(rng.integers(3, 12))
    filled = int(rng.integers(k - 2, k + 1))
    features = rng.choice(n_features, size=filled, replace=False)
    values = np.sort(rng.random(filled).astype(np.float32) + 0.1)[::-1]
    newcomers = []
    for slot in range(filled):
        if rng.random() < 0.5:
            continue
        term = int(rng.choice(4, p=[0.7, 0.1, 0.1, 0.1]))
        unit = int(rng.integers(0, 200)) if term == 0 else None
        act = float(np.float32(rng.random() * 3 + 0.01)) if term == 0 else None
        newcomers.append((int(features[slot]), slot, float(values[slot]), int(rng.integers(1, steps)),
                          MLP_TERMS[term], unit, act))
    return steps, features, values, newcomers


def write_sweep(path, prompts=None, layers=(3, 4, 5, 6), k=8, top_t=3, seed=0, n_features=24,
                explanations=True, extra_top_t=(), done=None, mlp=False):
    """Writes a sweep file to `path` and returns its SweepTruth. mlp=True writes a format version 3 file
    with /mlp (random records, kept in truth.mlp)."""
    prompts = prompts or DEFAULT_PROMPTS
    layers = list(layers)
    rng = np.random.default_rng(seed)
    truth = SweepTruth(layers, k, top_t, prompts)
    strings = h5py.string_dtype("utf-8")

    row_query, row_step, row_offset, token_offset = [], [], [], []
    per_layer_rows = {layer: [] for layer in layers}
    for p, tokens in enumerate(prompts):
        row_offset.append(len(row_query))
        token_offset.append(sum(len(t) for t in prompts[:p]))
        for q in range(1, len(tokens)):
            row_query += [q] * (q + 2)
            row_step += list(range(q + 2))
            for layer in layers:
                block = random_block(rng, q, k, n_features)
                truth.blocks[(p, layer, q)] = block
                per_layer_rows[layer].append(block)
    indices = np.stack([np.concatenate(per_layer_rows[layer]) for layer in layers])
    values = np.where(indices >= 0, 1.0 / (1.0 + np.arange(k, dtype=np.float32)), 0.0).astype(np.float32)

    readout_text = np.empty((len(prompts), len(layers), 5), dtype=object)
    readout_probs = np.zeros((len(prompts), len(layers), 5), dtype=np.float32)
    for p in range(len(prompts)):
        for i, layer in enumerate(layers):
            probs = np.sort(rng.random(5).astype(np.float32))[::-1] / 3.0
            readout_probs[p, i] = probs
            readout_text[p, i] = [f" rd{p}L{layer}n{j}" for j in range(5)]
            truth.readout[(p, layer)] = [(readout_text[p, i, j], float(probs[j])) for j in range(5)]

    tables = _graph_tables(truth, top_t)
    truth.trajectories, truth.edges, truth.traced_edges = tables

    if mlp:
        # Encoded in the layout of /mlp from the explicit records; readers decode it back.
        queries = sum(len(t) - 1 for t in prompts)
        mlp_data = {"steps": np.zeros((len(layers), queries), np.int32),
                    "final_indices": np.full((len(layers), queries, k), -1, np.int32),
                    "final_values": np.zeros((len(layers), queries, k), np.float32),
                    "slots": np.full((len(layers), queries, k, 3), -1, np.int32),
                    "activation": np.full((len(layers), queries, k), np.nan, np.float32)}
        truth.mlp = {}
        at = 0
        for p, tokens in enumerate(prompts):
            for q in range(1, len(tokens)):
                for i, layer in enumerate(layers):
                    steps, features, final_values, newcomers = mlp_records(rng, k, n_features)
                    truth.mlp[(p, layer, q)] = (steps, newcomers)
                    mlp_data["steps"][i, at] = steps
                    mlp_data["final_indices"][i, at, :len(features)] = features
                    mlp_data["final_values"][i, at, :len(final_values)] = final_values
                    for feature, slot, _, step, term, unit, act in newcomers:
                        kind = MLP_TERMS.index(term)
                        mlp_data["slots"][i, at, slot] = (step, kind, -1 if unit is None else unit)
                        if act is not None:
                            mlp_data["activation"][i, at, slot] = act
                at += 1

    with h5py.File(path, "w") as h5:
        h5.attrs["format"] = "saetraj-sweep"
        h5.attrs["format_version"] = np.int32(3 if mlp else 1)
        h5.attrs["model"] = "synthetic"
        h5.attrs["architecture"] = "GPT2LMHeadModel"
        h5.attrs["d_model"] = np.int32(16)
        h5.attrs["n_model_layers"] = np.int32(max(layers) + 1)
        h5.attrs["layers"] = np.array(layers, dtype=np.int32)
        h5.attrs["k"] = np.int32(k)
        h5.attrs.create("sae_ids", data=[f"sae-{layer}" for layer in layers], dtype=strings)
        h5.attrs["complete"] = np.int32(1)
        h5.attrs["created_utc"] = "2024-01-01T00:00:00Z"
        h5.attrs["command_line"] = "make_sweep.py"
        h5.create_dataset("prompts/text", data=["".join(t[1:]) for t in prompts], dtype=strings)
        h5.create_dataset("prompts/n_tokens", data=np.array([len(t) for t in prompts], dtype=np.int32))
        h5.create_dataset("prompts/token_offset", data=np.array(token_offset, dtype=np.int64))
        h5.create_dataset("prompts/row_offset", data=np.array(row_offset, dtype=np.int64))
        h5.create_dataset("prompts/done", data=np.array(done or [1] * len(prompts), dtype=np.uint8))
        all_tokens = [t for tokens in prompts for t in tokens]
        h5.create_dataset("tokens/ids", data=np.arange(len(all_tokens), dtype=np.int32) + 100)
        h5.create_dataset("tokens/text", data=all_tokens, dtype=strings)
        h5.create_dataset("evolution/row_query", data=np.array(row_query, dtype=np.int32))
        h5.create_dataset("evolution/row_step", data=np.array(row_step, dtype=np.int32))
        h5.create_dataset("evolution/indices", data=indices.astype(np.int32))
        h5.create_dataset("evolution/values", data=values)
        h5.create_dataset("readout/token_ids", data=np.arange(readout_probs.size, dtype=np.int32)
                          .reshape(readout_probs.shape))
        h5.create_dataset("readout/probs", data=readout_probs)
        h5.create_dataset("readout/token_text", data=readout_text, dtype=strings)
        _write_graphs(h5, "graphs", top_t, tables)
        if mlp:
            group = h5.create_group("mlp")
            for attr, stem in (("transcoder_ids", "tc"), ("transcoder_hooks", "mlp_in"),
                               ("transcoder_hooks_out", "mlp_out")):
                group.attrs.create(attr, data=[f"{stem}-{layer}" for layer in layers], dtype=strings)
            group.attrs.create("kinds", data=list(MLP_TERMS), dtype=strings)
            for name, data in mlp_data.items():
                group.create_dataset(name, data=data)
        for other in extra_top_t:
            _write_graphs(h5, f"graphs_T{other}", other, _graph_tables(truth, other))
        if explanations:
            # Features divisible by 3 have none, so hover texts show both kinds.
            keys = [(layer, f) for layer in layers for f in range(n_features) if f % 3 != 0]
            truth.explanations = {key: f"concept L{key[0]} f{key[1]} &co" for key in keys}
            h5.create_dataset("explanations/layer", data=np.array([l for l, _ in keys], dtype=np.int32))
            h5.create_dataset("explanations/feature", data=np.array([f for _, f in keys], dtype=np.int32))
            h5.create_dataset("explanations/text", data=list(truth.explanations.values()), dtype=strings)
            if mlp:
                # Even transcoder features referenced by /mlp have an explanation, odd ones none.
                units = sorted({(layer, r[5]) for (_, layer, _), (_, rs) in truth.mlp.items() for r in rs
                                if r[4] == "feature" and r[5] % 2 == 0})
                truth.mlp_explanations = {key: f"transcoder L{key[0]} t{key[1]} <&>" for key in units}
                h5.create_dataset("mlp_explanations/layer", data=np.array([l for l, _ in units], dtype=np.int32))
                h5.create_dataset("mlp_explanations/feature", data=np.array([f for _, f in units], dtype=np.int32))
                h5.create_dataset("mlp_explanations/text", data=list(truth.mlp_explanations.values()),
                                  dtype=strings)
    return truth
