"""Colours, widths and token labels shared by the static and interactive pictures (SPEC "Edge styling").

Edges: width grows with num_trajectories; colour runs red (best_final_position 0) through purple to blue
(the worst position drawn, T); 0-trajectory edges are gold. Evolution plots use the same red-to-blue
scale for the final rank of newcomers and light blue for features already present at the initial step.
"""

import math

from matplotlib.colors import LinearSegmentedColormap, to_hex

RED = "#d7191c"
PURPLE = "#7b3294"
BLUE = "#2c4bd8"
GOLD = "#d4a017"
LIGHT_BLUE = "#a6cee3"
GREY = "#9a9a9a"
GREEN = "#1a9641"  # vertices where MLP newcomers arrived (sweep --mlp-transcoder)

RANK_CMAP = LinearSegmentedColormap.from_list("saetraj_rank", [RED, PURPLE, BLUE])
# The same scale for plotly, as (position, colour) stops.
RANK_COLORSCALE = [[0.0, RED], [0.5, PURPLE], [1.0, BLUE]]


def rank_colour(position, worst):
    """Hex colour of a final position on the red (0) .. blue (`worst`) scale; beyond `worst` is blue."""
    fraction = 0.0 if worst <= 0 else min(max(position / worst, 0.0), 1.0)
    return to_hex(RANK_CMAP(fraction))


def edge_colour(num_trajectories, best_final_position, top_t):
    return GOLD if num_trajectories == 0 else rank_colour(best_final_position, top_t)


def edge_width(num_trajectories):
    """Line width in points (matplotlib) or pixels (plotly). The square root keeps edges carrying
    dozens of trajectories from covering their neighbours."""
    return 1.2 if num_trajectories == 0 else 1.5 + 2.5 * math.sqrt(num_trajectories)


def token_label(text):
    """A token as a readable axis label: control characters made visible, blank tokens quoted."""
    shown = text.replace("\n", "\u21b5").replace("\t", "\u21e5").replace("\r", "")
    return shown if shown.strip() else repr(text)


def mpl_label(text):
    """Matplotlib reads '$...$' as mathematics; token texts must be drawn literally."""
    return text.replace("$", r"\$")


def shorten(text, limit):
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"
