"""Static picture of a traced trajectory graph: x = token position, y = layer (SPEC "Edge styling"). For a
sweep made with --mlp-transcoder, a ring marks the vertices where MLP newcomers arrived, with their count."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from . import style  # noqa: E402


def plot_traced_graph(graph, out_path):
    """Draws `graph` (a TracedGraph) into the PNG `out_path`."""
    positions = list(range(1, len(graph.tokens)))
    width = min(max(8.0, 0.55 * len(positions) + 3.0), 60.0)
    height = min(max(5.0, 0.32 * len(graph.layers) + 2.5), 30.0)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)

    # Gold 0-trajectory edges first, then thick edges under thin ones so every edge stays visible.
    ordered = sorted(graph.edges, key=lambda e: (e.num_trajectories > 0, -e.num_trajectories))
    for edge in ordered:
        ax.plot([edge.from_token, edge.to_token], [edge.from_layer, edge.to_layer],
                color=style.edge_colour(edge.num_trajectories, edge.best_final_position, graph.top_t),
                linewidth=style.edge_width(edge.num_trajectories), alpha=0.85,
                solid_capstyle="round", zorder=2)
    if graph.nodes:
        ax.scatter([n.token for n in graph.nodes], [n.layer for n in graph.nodes], s=22, color="#333333",
                   zorder=3)
    with_mlp = [n for n in graph.nodes if n.mlp_newcomers]
    if with_mlp:
        ax.scatter([n.token for n in with_mlp], [n.layer for n in with_mlp], s=110, facecolors="none",
                   edgecolors=style.GREEN, linewidths=1.6, zorder=4)
        for n in with_mlp:
            ax.annotate(str(len(n.mlp_newcomers)), (n.token, n.layer), xytext=(5, 4), textcoords="offset points",
                        fontsize=7, color=style.GREEN, zorder=5)

    ax.set_xticks(positions)
    ax.set_xticklabels([style.mpl_label(style.token_label(t)) for t in graph.tokens[1:]], rotation=60,
                       ha="right", fontsize=9)
    ax.set_xlim(0.5, max(positions[-1] if positions else 1, 1) + 0.5)
    ax.set_yticks(graph.layers)
    ax.set_ylim(min(graph.layers) - 0.7, max(graph.layers) + 0.7)
    ax.set_xlabel("token position (BOS column left out)")
    ax.set_ylabel("layer")
    ax.grid(True, color="#eeeeee", zorder=0)
    title = style.mpl_label(style.shorten(graph.prompt_text, 90))
    ax.set_title(f"Traced trajectory graph (T = {graph.top_t}, {len(graph.edges)} edges)\n"
                 f"prompt {graph.prompt}: \u201c{title}\u201d", fontsize=11, pad=30)

    colourbar = fig.colorbar(ScalarMappable(Normalize(0, graph.top_t), style.RANK_CMAP), ax=ax, pad=0.01)
    colourbar.set_label("best final position of the edge's trajectories")
    colourbar.locator = MaxNLocator(integer=True)
    colourbar.update_ticks()
    handles = [Line2D([], [], color=style.GOLD, linewidth=style.edge_width(0), label="0 trajectories")]
    for n in (1, 4, 16):
        handles.append(Line2D([], [], color=style.PURPLE, linewidth=style.edge_width(n),
                              label=f"{n} trajector{'y' if n == 1 else 'ies'}"))
    if graph.has_mlp:
        handles.append(Line2D([], [], marker="o", markersize=8, markerfacecolor="none", color=style.GREEN,
                              linestyle="none", label="MLP newcomers arrived (count)"))
    # Above the plot, between the axes and the title, where it cannot hide edges.
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(handles), fontsize=8,
              frameon=False, borderaxespad=0.2)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
