"""Summary of a sweep over many prompts, from its trajectories table (SPEC 1.3).

Counts run over every (prompt, length) pair in the table: per layer, the features most often found as
trajectory newcomers; how far back their source tokens lie (last token of the length minus source token);
and how many trajectories each layer has. For a sweep made with --heads, also per layer how often each
attention head brought a feature in: the head with the largest signed part of the feature's pre-activation
jump at its entry step (NOTE in include/saetraj/sweep/head_split.h). For a sweep made with
--mlp-transcoder, also per layer the number of MLP newcomers (features the MLP's terms brought into
resid_post's top-k list with final position <= T) over every query of the same prompts, next to the
attention trajectories.
"""

import html
from collections import Counter
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from . import style  # noqa: E402
from .html_graph import NO_EXPLANATION, embed_json  # noqa: E402

DATA_ELEMENT_ID = "saetraj-corpus-data"


@dataclass(frozen=True)
class FrequentFeature:
    feature: int
    count: int
    explanation: str


@dataclass
class CorpusSummary:
    top_t: int
    n_prompts: int            # prompts that have rows in the trajectories table
    layers: list              # analysed layers, in file order
    top_features: dict        # layer -> [FrequentFeature], most frequent first (ties: lower id)
    distance_counts: list     # distance_counts[d] = trajectories whose source lies d tokens back
    layer_counts: dict        # layer -> number of trajectories
    head_counts: dict = None  # layer -> [trajectories brought in by head h, for each h] (sweep --heads)
    # layer -> {"trajectories", "shapley_agree", "loo_agree"}: how many trajectories have order-free views
    # and the share whose prompt-order source token is also the largest Shapley / leave-one-out contributor
    # (sweep --orders)
    order_agreement: dict = None
    # layer -> number of MLP newcomers with final position <= T over every query of the summarised prompts
    # (sweep --mlp-transcoder)
    mlp_counts: dict = None


def summarise(sweep, graphs, top_n=10):
    """Summary of the trajectories table of `graphs` (a GraphTables) of `sweep`."""
    table = graphs.trajectories
    layers = [int(l) for l in sweep.layers]
    top_features, layer_counts = {}, {}
    for layer in layers:
        features = table["feature"][table["layer"] == layer]
        layer_counts[layer] = int(len(features))
        ranked = sorted(Counter(int(f) for f in features).items(), key=lambda fc: (-fc[1], fc[0]))
        top_features[layer] = [FrequentFeature(f, c, sweep.explanation(layer, f)) for f, c in ranked[:top_n]]
    distances = (table["length"].astype(np.int64) - 1) - table["source_token"].astype(np.int64)
    counts = np.bincount(distances, minlength=1) if len(distances) else np.zeros(1, dtype=np.int64)
    head_counts = None
    if graphs.trajectory_heads is not None and graphs.trajectory_heads.shape[1] > 3:
        parts = graphs.trajectory_heads[:, 3:]
        recorded = ~np.isnan(graphs.trajectory_heads[:, 0])
        n_heads = parts.shape[1]
        head_counts = {}
        for layer in layers:
            rows = parts[(table["layer"] == layer) & recorded]
            # argmax takes the lowest head among equal parts
            head_counts[layer] = [int(c) for c in np.bincount(np.argmax(rows, axis=1), minlength=n_heads)] \
                if len(rows) else [0] * n_heads
    order_agreement = None
    if graphs.trajectory_order is not None:
        order_agreement = {}
        for layer in layers:
            rows = graphs.trajectory_order[(table["layer"] == layer) & (graphs.trajectory_order[:, 0] >= 0)]
            n = int(len(rows))
            order_agreement[layer] = {"trajectories": n,
                                      "shapley_agree": float(rows[:, 3].mean()) if n else None,
                                      "loo_agree": float(rows[:, 2].mean()) if n else None}
    mlp_counts = None
    if sweep.has_mlp:
        # The prompts the table summarises: those with rows in it.
        prompts = [int(p) for p in np.unique(table["prompt"])]
        mlp_counts = {layer: sum(len(sweep.mlp_newcomers(p, layer, q, graphs.top_t)) for p in prompts
                                 for q in range(1, sweep.n_tokens(p))) for layer in layers}
    return CorpusSummary(graphs.top_t, int(len(np.unique(table["prompt"]))), layers, top_features,
                         [int(c) for c in counts], layer_counts, head_counts, order_agreement, mlp_counts)


def summary_data(summary):
    return {"top_t": summary.top_t, "n_prompts": summary.n_prompts, "layers": summary.layers,
            "top_features": {str(l): [{"feature": f.feature, "count": f.count, "explanation": f.explanation}
                                      for f in fs] for l, fs in summary.top_features.items()},
            "distance_counts": summary.distance_counts,
            "layer_counts": {str(l): c for l, c in summary.layer_counts.items()},
            "head_counts": None if summary.head_counts is None
            else {str(l): c for l, c in summary.head_counts.items()},
            "order_agreement": None if summary.order_agreement is None
            else {str(l): a for l, a in summary.order_agreement.items()},
            "mlp_counts": None if summary.mlp_counts is None
            else {str(l): c for l, c in summary.mlp_counts.items()}}


def _grid(summary):
    """Layers x rank matrices of counts and feature ids for the heat map (NaN / -1 where empty)."""
    width = max([len(fs) for fs in summary.top_features.values()] + [1])
    counts = np.full((len(summary.layers), width), np.nan)
    ids = np.full((len(summary.layers), width), -1)
    for row, layer in enumerate(summary.layers):
        for col, f in enumerate(summary.top_features[layer]):
            counts[row, col], ids[row, col] = f.count, f.feature
    return counts, ids


def _plot_head_counts(summary, ax):
    n_heads = max(len(c) for c in summary.head_counts.values())
    z = np.array([summary.head_counts[l] + [0] * (n_heads - len(summary.head_counts[l])) for l in summary.layers])
    ax.imshow(z, aspect="auto", cmap="Blues")
    for (row, col), c in np.ndenumerate(z):
        ax.text(col, row, str(c), ha="center", va="center", fontsize=7,
                color="white" if c > 0.7 * max(z.max(), 1) else "black")
    ax.set_xticks(range(n_heads))
    ax.set_xticklabels([f"h{h}" for h in range(n_heads)], fontsize=8)
    ax.set_yticks(range(len(summary.layers)))
    ax.set_yticklabels([str(l) for l in summary.layers], fontsize=8)
    ax.set_xlabel("head with the largest signed part of the entry jump")
    ax.set_ylabel("layer")
    ax.set_title("Which head brought features in (sweep --heads)")


def _plot_order_agreement(summary, ax):
    layers = summary.layers
    x = np.arange(len(layers))
    for offset, key, label, colour in ((-0.2, "shapley_agree", "largest Shapley value", style.BLUE),
                                       (0.2, "loo_agree", "largest leave-one-out drop", style.PURPLE)):
        shares = [summary.order_agreement.get(l, {}).get(key) for l in layers]
        ax.bar(x + offset, [np.nan if v is None else v for v in shares], width=0.4, color=colour, label=label)
    for i, l in enumerate(layers):
        ax.text(i, 1.02, str(summary.order_agreement.get(l, {}).get("trajectories", 0)), ha="center",
                va="bottom", fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_xticks(x)
    ax.set_xticklabels([str(l) for l in layers], fontsize=8)
    ax.set_xlabel("layer (number above: trajectories with order-free views)")
    ax.set_ylabel("share of trajectories")
    ax.set_title("Source token = largest order-free contributor (sweep --orders)")
    ax.legend(fontsize=8, loc="lower right", frameon=False)


def plot_corpus_png(summary, out_path):
    counts, ids = _grid(summary)
    n_layers = len(summary.layers)
    # A third row for the views beyond the original method: which head brought features in (--heads) and
    # whether the prompt order's source token is the largest order-free contributor (--orders).
    extra = summary.head_counts is not None or summary.order_agreement is not None
    ratios = [max(n_layers, 4) * 0.36 + 1.0, 4.0] + ([4.0] if extra else [])
    fig = plt.figure(figsize=(14, sum(ratios) + 2.6), dpi=100)
    grid = fig.add_gridspec(len(ratios), 2, height_ratios=ratios)
    heat, hist, bars = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    if summary.head_counts is not None:
        _plot_head_counts(summary, fig.add_subplot(grid[2, 0]))
    if summary.order_agreement is not None:
        _plot_order_agreement(summary, fig.add_subplot(grid[2, 1]))

    image = heat.imshow(np.ma.masked_invalid(counts), aspect="auto", cmap="YlOrRd")
    darkest = np.nanmax(counts) if np.any(ids >= 0) else 1.0
    for (row, col), feature in np.ndenumerate(ids):
        if feature >= 0:
            heat.text(col, row, f"{feature}\n\u00d7{int(counts[row, col])}", ha="center", va="center",
                      fontsize=7, color="white" if counts[row, col] > 0.7 * darkest else "black")
    heat.set_yticks(range(n_layers))
    heat.set_yticklabels([str(l) for l in summary.layers], fontsize=8)
    heat.set_xticks(range(counts.shape[1]))
    heat.set_xticklabels([str(i + 1) for i in range(counts.shape[1])])
    heat.set_ylabel("layer")
    heat.set_xlabel("place among the layer's most frequent newcomer features (cell: feature id, count)")
    heat.set_title(f"Corpus summary: {summary.n_prompts} prompts, T = {summary.top_t}: "
                   f"features most often trajectory newcomers, per layer")
    fig.colorbar(image, ax=heat, pad=0.01).set_label("times a trajectory newcomer")

    distances = np.arange(len(summary.distance_counts))
    hist.bar(distances, summary.distance_counts, color=style.PURPLE, width=0.85)
    hist.set_xlabel("how far back the source token lies (last token \u2212 source token)")
    hist.set_ylabel("trajectories")
    hist.set_title("Distance of source tokens")

    if summary.mlp_counts is None:
        bars.bar(range(n_layers), [summary.layer_counts[l] for l in summary.layers], color=style.BLUE)
    else:
        x = np.arange(n_layers)
        bars.bar(x - 0.2, [summary.layer_counts[l] for l in summary.layers], width=0.4, color=style.BLUE,
                 label="attention (trajectories)")
        bars.bar(x + 0.2, [summary.mlp_counts[l] for l in summary.layers], width=0.4, color=style.PURPLE,
                 label="MLP newcomers")
        bars.legend(fontsize=8, frameon=False)
    bars.set_xticks(range(n_layers))
    bars.set_xticklabels([str(l) for l in summary.layers], fontsize=8, rotation=90 if n_layers > 30 else 0)
    bars.set_xlabel("layer")
    bars.set_ylabel("trajectories" if summary.mlp_counts is None else "newcomers")
    bars.set_title("Trajectories per layer" if summary.mlp_counts is None
                   else "Newcomers per layer: attention and MLP")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def write_corpus_html(summary, out_path):
    counts, ids = _grid(summary)
    hover = []
    for layer in summary.layers:
        listed = summary.top_features[layer]
        hover.append([f"layer {layer}, place {col + 1}<br>feature {f.feature}: {f.count} times<br>"
                      f"{html.escape(f.explanation or NO_EXPLANATION, quote=False)}"
                      for col, f in enumerate(listed)] + [""] * (counts.shape[1] - len(listed)))
    heads = summary.head_counts is not None
    titles = ["Features most often trajectory newcomers, per layer",
              "Distance of source tokens (last token \u2212 source token)",
              "Trajectories per layer" if summary.mlp_counts is None
              else "Newcomers per layer: attention trajectories and MLP newcomers"]
    heights = [max(len(summary.layers), 4) * 0.06 + 0.3, 0.3, 0.3]
    if heads:
        titles.append("Which head brought features in (largest signed part of the entry jump), per layer")
        heights.append(max(len(summary.layers), 4) * 0.06 + 0.3)
    orders = summary.order_agreement is not None
    if orders:
        titles.append("Share of trajectories whose prompt-order source token is the largest order-free "
                      "contributor, per layer")
        heights.append(0.3)
    fig = make_subplots(rows=len(titles), cols=1, vertical_spacing=0.06, row_heights=heights,
                        subplot_titles=titles)
    fig.add_trace(go.Heatmap(z=counts, x=[str(i + 1) for i in range(counts.shape[1])],
                             y=[f"L{l}" for l in summary.layers], colorscale="YlOrRd",
                             hovertext=hover, hoverinfo="text",
                             colorbar={"len": 0.45, "y": 0.78, "title": {"text": "count"}}), row=1, col=1)
    # plotly.js 2.6 heat maps cannot print cell text; a text trace on the same axes labels the cells.
    cells = [(col, layer, int(ids[row, col])) for row, layer in enumerate(summary.layers)
             for col in range(ids.shape[1]) if ids[row, col] >= 0]
    fig.add_trace(go.Scatter(x=[str(c + 1) for c, _, _ in cells], y=[f"L{l}" for _, l, _ in cells],
                             text=[str(f) for _, _, f in cells], mode="text", hoverinfo="skip",
                             textfont={"size": 10}), row=1, col=1)
    fig.add_trace(go.Bar(x=list(range(len(summary.distance_counts))), y=summary.distance_counts,
                         marker_color=style.PURPLE, name="trajectories by distance"), row=2, col=1)
    fig.add_trace(go.Bar(x=[f"L{l}" for l in summary.layers],
                         y=[summary.layer_counts[l] for l in summary.layers],
                         marker_color=style.BLUE, name="trajectories per layer"), row=3, col=1)
    if summary.mlp_counts is not None:
        fig.add_trace(go.Bar(x=[f"L{l}" for l in summary.layers],
                             y=[summary.mlp_counts[l] for l in summary.layers], marker_color=style.PURPLE,
                             name="MLP newcomers per layer",
                             hovertext=[f"layer {l}: {summary.mlp_counts[l]} MLP newcomers, "
                                        f"{summary.layer_counts[l]} attention trajectories"
                                        for l in summary.layers], hoverinfo="text"), row=3, col=1)
    if heads:
        n_heads = max(len(c) for c in summary.head_counts.values())
        z = [summary.head_counts[l] for l in summary.layers]
        fig.add_trace(go.Heatmap(z=z, x=[f"h{h}" for h in range(n_heads)], y=[f"L{l}" for l in summary.layers],
                                 colorscale="Blues", showscale=False,
                                 hovertext=[[f"layer {l}, head {h}: brought in {c} trajectories"
                                             for h, c in enumerate(summary.head_counts[l])]
                                            for l in summary.layers], hoverinfo="text"), row=4, col=1)
        fig.update_yaxes(autorange="reversed", row=4, col=1)
    if orders:
        for key, label, colour in (("shapley_agree", "largest Shapley value", style.BLUE),
                                   ("loo_agree", "largest leave-one-out drop", style.PURPLE)):
            shares = [summary.order_agreement.get(l, {}).get(key) for l in summary.layers]
            fig.add_trace(go.Bar(x=[f"L{l}" for l in summary.layers], y=shares, name=label, marker_color=colour,
                                 hovertext=[f"layer {l}: {label} agrees for "
                                            f"{'-' if v is None else f'{v:.0%}'} of "
                                            f"{summary.order_agreement.get(l, {}).get('trajectories', 0)} trajectories"
                                            for l, v in zip(summary.layers, shares)], hoverinfo="text"),
                          row=len(titles), col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_layout(title={"text": f"saetraj corpus summary: {summary.n_prompts} prompts, "
                                     f"T = {summary.top_t}"},
                      height=900 + (36 if heads else 18) * len(summary.layers) + (300 if heads else 0)
                      + (300 if orders else 0),
                      showlegend=False)
    page = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    with open(out_path, "w", encoding="utf-8") as out:
        out.write(embed_json(page, DATA_ELEMENT_ID, summary_data(summary)))
    return out_path
