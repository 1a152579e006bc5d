"""The traced trajectory graph of one prompt (SPEC 1.5) with everything its pictures annotate.

Edges come from /graphs/traced_edges; edges touching the BOS column (token 0) are left out, as in the
study's pictures. An edge (j, p) -> (t, l) belongs to the graph of length t+1, so its trajectories are the
rows of /graphs/trajectories with length t+1, layer l and source token j. A vertex (t, l) is annotated with
layer l's readout (taken at the prompt's last token), the newcomers arriving there (trajectories of length
t+1 at layer l) and its top 5 features (layer l, length t+1, last step s = t+1 of the evolution). For a
sweep made with --mlp-transcoder, a vertex (t, l) also lists the MLP newcomers of layer l at query t: the
features the MLP's terms brought into resid_post's top-k list with final position <= T, each with the
transcoder feature (or bias, skip, error term) that brought it in.
"""

from dataclasses import dataclass, field

import numpy as np

from .errors import SweepFormatError

TOP_FEATURES = 5


@dataclass(frozen=True)
class Trajectory:
    source_token: int
    feature: int
    final_position: int
    explanation: str  # None when the file holds no explanation for the feature
    heads: "HeadSplit" = None  # which head brought it in (sweep --heads), else None
    order: "OrderViews" = None  # whether the order of adding matters (sweep --orders), else None


@dataclass(frozen=True)
class HeadSplit:
    """The feature's pre-activation jump at its entry step split per head (NOTE in sweep/head_split.h)."""
    jump: float
    bias: float
    unassigned: float
    values: tuple  # one signed part per head

    def shares(self):
        return tuple(v / self.jump if self.jump != 0 else float("nan") for v in self.values)

    def top_heads(self, n=3):
        """(head, value, share) of the n heads with the largest signed parts, largest first."""
        order = sorted(range(len(self.values)), key=lambda h: (-self.values[h], h))[:n]
        shares = self.shares()
        return [(h, self.values[h], shares[h]) for h in order]


def head_split(row):
    """A HeadSplit from one row of trajectory_heads, or None when the row is NaN or absent."""
    if row is None or np.isnan(row[0]):
        return None
    return HeadSplit(float(row[0]), float(row[1]), float(row[2]), tuple(float(v) for v in row[3:]))


@dataclass(frozen=True)
class OrderViews:
    """The order-free views of one trajectory (NOTE in sweep/order_free.h): leave-one-out and sampled
    Shapley values of the feature's activation per source token, reduced as /graphs/trajectory_order and
    /graphs/trajectory_order_values hold them."""
    source_token: int
    loo_largest: int        # the token whose removal lowers the activation most
    shapley_largest: int    # the token with the largest Shapley value
    activation: float       # with every token (nan when the file has no values)
    without_source: float   # with every token but the source token
    shapley_source: float
    shapley_source_se: float
    shapley_largest_value: float
    shapley_largest_se: float

    @property
    def loo_agrees(self):
        return self.loo_largest == self.source_token

    @property
    def shapley_agrees(self):
        return self.shapley_largest == self.source_token

    @property
    def vanishes_without_source(self):
        return self.without_source == 0


def order_views(source_token, row, values=None):
    """OrderViews from one row of trajectory_order (and of trajectory_order_values, when the file has it),
    or None when the row is -1 or absent."""
    if row is None or int(row[0]) < 0:
        return None
    v = [float("nan")] * 6 if values is None else [float(x) for x in values]
    return OrderViews(source_token, int(row[0]), int(row[1]), *v)


@dataclass(frozen=True)
class TopFeature:
    rank: int
    feature: int
    activation: float
    explanation: str


@dataclass(frozen=True)
class MlpArrival:
    """An MLP newcomer at a vertex (an io.MlpNewcomer) with the explanation of its residual feature and that
    of the transcoder feature that brought it in (/mlp_explanations; None for the other terms)."""
    newcomer: object
    explanation: str  # None when the file holds no explanation for the feature
    transcoder_explanation: str = None


@dataclass
class Node:
    token: int
    layer: int
    readout: list
    newcomers: list = field(default_factory=list)
    top_features: list = field(default_factory=list)
    mlp_newcomers: list = field(default_factory=list)  # [MlpArrival], by final position


@dataclass
class Edge:
    from_token: int
    from_layer: int
    to_token: int
    to_layer: int
    num_trajectories: int
    best_final_position: int
    trajectories: list


@dataclass
class TracedGraph:
    prompt: int
    prompt_text: str
    tokens: list
    layers: list
    top_t: int
    nodes: list
    edges: list
    has_mlp: bool = False  # the sweep ran with --mlp-transcoder: vertices list their MLP newcomers


def _trajectories(sweep, table, length, layer, source_token=None, heads=None, order=None, order_values=None):
    mask = (table["length"] == length) & (table["layer"] == layer)
    if source_token is not None:
        mask &= table["source_token"] == source_token
    picked = sorted(np.nonzero(mask)[0],
                    key=lambda i: (int(table[i]["final_position"]), int(table[i]["source_token"])))
    return [Trajectory(int(table[i]["source_token"]), int(table[i]["feature"]), int(table[i]["final_position"]),
                       sweep.explanation(layer, int(table[i]["feature"])),
                       head_split(None if heads is None else heads[i]),
                       order_views(int(table[i]["source_token"]), None if order is None else order[i],
                                   None if order_values is None else order_values[i])) for i in picked]


def _top_features(sweep, prompt, token, layer):
    ids = sweep.evolution_block(prompt, layer, token)[token + 1]
    values = sweep.evolution_values(prompt, layer, token)[token + 1]
    present = [(rank, int(f), float(v)) for rank, (f, v) in enumerate(zip(ids, values)) if f >= 0]
    return [TopFeature(rank, f, v, sweep.explanation(layer, f)) for rank, f, v in present[:TOP_FEATURES]]


def build_traced_graph(sweep, prompt, graphs):
    """The drawn traced graph of `prompt` from the graph tables `graphs` (a GraphTables)."""
    tables = graphs.for_prompt(prompt)
    trajectories = tables.trajectories
    edges = []
    for row in tables.traced_edges:
        if int(row["from_token"]) == 0 or int(row["to_token"]) == 0:
            continue
        to_token, to_layer = int(row["to_token"]), int(row["to_layer"])
        carried = []
        if int(row["num_trajectories"]) > 0:
            carried = _trajectories(sweep, trajectories, to_token + 1, to_layer, int(row["from_token"]),
                                    tables.trajectory_heads, tables.trajectory_order, tables.trajectory_order_values)
        if len(carried) != int(row["num_trajectories"]):
            raise SweepFormatError(
                f"{sweep.path}: {graphs.group}/traced_edges edge ({int(row['from_token'])}, "
                f"{int(row['from_layer'])}) -> ({to_token}, {to_layer}) of prompt {prompt} carries "
                f"{int(row['num_trajectories'])} trajectories but {graphs.group}/trajectories holds "
                f"{len(carried)} for length {to_token + 1}, layer {to_layer}, "
                f"source {int(row['from_token'])}")
        edges.append(Edge(int(row["from_token"]), int(row["from_layer"]), to_token, to_layer,
                          int(row["num_trajectories"]), int(row["best_final_position"]), carried))

    vertices = sorted({(e.from_token, e.from_layer) for e in edges}
                      | {(e.to_token, e.to_layer) for e in edges})
    nodes = [Node(token, layer, sweep.readout(prompt, layer),
                  _trajectories(sweep, trajectories, token + 1, layer, heads=tables.trajectory_heads,
                                order=tables.trajectory_order, order_values=tables.trajectory_order_values),
                  _top_features(sweep, prompt, token, layer),
                  [MlpArrival(m, sweep.explanation(layer, m.feature),
                              sweep.transcoder_explanation(layer, m.transcoder_feature) if m.term == "feature" else None)
                   for m in sweep.mlp_newcomers(prompt, layer, token, graphs.top_t)]) for token, layer in vertices]
    return TracedGraph(prompt, sweep.prompt_text(prompt), sweep.tokens(prompt),
                       [int(l) for l in sweep.layers], graphs.top_t, nodes, edges, sweep.has_mlp)
