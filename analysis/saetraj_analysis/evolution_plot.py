"""The "indices evolution" picture of one layer at a prompt's full length (SPEC 1.2-1.3).

x runs over the steps (initial, then after each source token), y is the rank in the top-k list (0 at the
top). Each feature is a line over the steps where it is listed; features listed at the initial step are
light blue, newcomers are coloured by their rank at the last step (red for rank 0 to blue for the worst
rank shown), and newcomers gone by the last step are grey.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from . import style  # noqa: E402


def rank_paths(block):
    """Feature id -> float array over the steps of `block` [steps, k]: its rank, NaN where absent."""
    paths = {}
    for step, row in enumerate(block):
        for rank, feature in enumerate(row):
            if feature >= 0:
                paths.setdefault(int(feature), np.full(len(block), np.nan))[step] = rank
    return paths


def plot_evolution(sweep, prompt, layer, out_path, rank_limit=40):
    """Draws the evolution of (prompt, layer) at the prompt's full length into the PNG `out_path`."""
    tokens = sweep.tokens(prompt)
    q = len(tokens) - 1
    block = np.asarray(sweep.evolution_block(prompt, layer, q))
    steps = np.arange(q + 2)
    paths = rank_paths(block)
    rank_limit = min(rank_limit, sweep.k)
    worst = max(rank_limit - 1, 1)

    width = min(max(8.0, 0.5 * len(steps) + 3.5), 60.0)
    fig, ax = plt.subplots(figsize=(width, 8.5), dpi=100)
    visible = {f: p for f, p in paths.items() if np.nanmin(p) < rank_limit}
    # Initial features underneath, then newcomers with the best final ranks drawn last (on top).
    def order(item):
        feature, path = item
        if not np.isnan(path[0]):
            return (0, 0.0)
        return (1, -(path[-1] if not np.isnan(path[-1]) else rank_limit + 1))

    for feature, path in sorted(visible.items(), key=order):
        if not np.isnan(path[0]):
            colour, width_pt, alpha = style.LIGHT_BLUE, 1.2, 0.9
        elif np.isnan(path[-1]):
            colour, width_pt, alpha = style.GREY, 1.0, 0.7
        else:
            colour, width_pt, alpha = style.rank_colour(path[-1], worst), 1.8, 0.95
        ax.plot(steps, path, color=colour, linewidth=width_pt, alpha=alpha, marker="o", markersize=2.5,
                zorder=2 if colour == style.LIGHT_BLUE else 3)
        if not np.isnan(path[-1]) and path[-1] < rank_limit:
            ax.annotate(str(feature), (steps[-1], path[-1]), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7, color=colour if colour != style.LIGHT_BLUE else "#4a7fa8")

    labels = ["initial"] + [style.mpl_label(style.token_label(t)) for t in tokens]
    ax.set_xticks(steps)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=9)
    ax.set_xlim(-0.5, steps[-1] + 1.0)
    ax.set_ylim(rank_limit - 0.5, -0.5)
    ax.set_xlabel("step: initial, then after each source token is added")
    ax.set_ylabel(f"rank in the top-{sweep.k} list (0 = highest activation; top {rank_limit} shown)")
    ax.grid(True, axis="x", color="#eeeeee", zorder=0)
    title = style.mpl_label(style.shorten(sweep.prompt_text(prompt), 90))
    ax.set_title(f"Layer {layer}: indices evolution at the full length ({len(tokens)} tokens, query {q})\n"
                 f"prompt {prompt}: \u201c{title}\u201d", fontsize=11)

    colourbar = fig.colorbar(ScalarMappable(Normalize(0, worst), style.RANK_CMAP), ax=ax, pad=0.01)
    colourbar.set_label(f"newcomer's rank at the last step ({worst} or worse is blue)")
    colourbar.locator = MaxNLocator(integer=True)
    colourbar.update_ticks()
    ax.legend(handles=[Patch(color=style.LIGHT_BLUE, label="present at the initial step"),
                       Patch(color=style.GREY, label="newcomer gone by the last step")],
              loc="lower left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
