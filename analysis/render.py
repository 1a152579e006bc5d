#!/usr/bin/python3
"""Renders the pictures of a saetraj sweep file and prints the path of every file it writes.

    /usr/bin/python3 analysis/render.py SWEEP.h5 --out DIR [--prompt P ...] [--layers L ...] [--top-t T]

Per prompt (DIR/prompt_PPPP/): evolution_layer_LL.png for each layer, traced_graph.png and
traced_graph.html. For the whole file: DIR/corpus_summary.png and DIR/corpus_summary.html.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from saetraj_analysis import AnalysisError, Sweep, build_traced_graph  # noqa: E402
from saetraj_analysis.corpus_summary import plot_corpus_png, summarise, write_corpus_html  # noqa: E402
from saetraj_analysis.evolution_plot import plot_evolution  # noqa: E402
from saetraj_analysis.graph_plot import plot_traced_graph  # noqa: E402
from saetraj_analysis.html_graph import write_graph_html  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Draw the evolution plots, traced trajectory graphs "
                                                 "(PNG and interactive HTML) and corpus summary of a "
                                                 "saetraj sweep file.")
    parser.add_argument("sweep", help="the sweep's HDF5 file")
    parser.add_argument("--out", required=True, help="folder to write into (created if missing)")
    parser.add_argument("--prompt", type=int, nargs="+", metavar="P",
                        help="prompt indices to draw (default: the first --max-prompts finished prompts)")
    parser.add_argument("--max-prompts", type=int, default=10,
                        help="how many prompts to draw when --prompt is not given (default 10)")
    parser.add_argument("--layers", type=int, nargs="+", metavar="L",
                        help="model layers to draw evolution plots for (default: every analysed layer)")
    parser.add_argument("--top-t", type=int, metavar="T",
                        help="use the graphs built with this T (default: /graphs)")
    parser.add_argument("--rank-limit", type=int, default=40,
                        help="ranks shown in the evolution plots (default 40)")
    args = parser.parse_args(argv)
    if args.rank_limit < 1:
        parser.error("--rank-limit must be at least 1")
    if args.max_prompts < 1:
        parser.error("--max-prompts must be at least 1")
    return args


def chosen_prompts(sweep, args):
    if args.prompt:
        for p in args.prompt:
            if not sweep.is_done(p):
                raise AnalysisError(f"{sweep.path}: prompt {p} is not finished (/prompts/done is 0)")
        return args.prompt
    done = [p for p in range(sweep.n_prompts) if sweep.is_done(p)]
    if len(done) > args.max_prompts:
        print(f"render.py: drawing the first {args.max_prompts} of {len(done)} finished prompts; "
              f"choose others with --prompt", file=sys.stderr)
    return done[:args.max_prompts]


def render(args):
    with Sweep(args.sweep) as sweep:
        layers = args.layers or [int(l) for l in sweep.layers]
        for layer in layers:
            sweep.layer_index(layer)
        graphs = sweep.graphs(args.top_t)
        prompts = chosen_prompts(sweep, args)
        if not sweep.complete:
            print(f"render.py: {args.sweep} is not complete (attribute 'complete' is 0); drawing the "
                  f"finished prompts only", file=sys.stderr)
        os.makedirs(args.out, exist_ok=True)
        for prompt in prompts:
            folder = os.path.join(args.out, f"prompt_{prompt:04d}")
            os.makedirs(folder, exist_ok=True)
            for layer in layers:
                picture = os.path.join(folder, f"evolution_layer_{layer:02d}.png")
                print(plot_evolution(sweep, prompt, layer, picture, rank_limit=args.rank_limit), flush=True)
            graph = build_traced_graph(sweep, prompt, graphs)
            print(plot_traced_graph(graph, os.path.join(folder, "traced_graph.png")), flush=True)
            print(write_graph_html(graph, os.path.join(folder, "traced_graph.html")), flush=True)
        summary = summarise(sweep, graphs)
        print(plot_corpus_png(summary, os.path.join(args.out, "corpus_summary.png")), flush=True)
        print(write_corpus_html(summary, os.path.join(args.out, "corpus_summary.html")), flush=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        render(args)
    except AnalysisError as err:
        print(f"render.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
