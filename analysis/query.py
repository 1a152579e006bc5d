#!/usr/bin/python3
"""Asks a feature index (INDEX.h5 from `saetraj index`) about features.

    /usr/bin/python3 analysis/query.py INDEX.h5 feature LAYER:INDEX [--examples N]
    /usr/bin/python3 analysis/query.py INDEX.h5 top --layer L [-n N] [--by count]
    /usr/bin/python3 analysis/query.py INDEX.h5 html --out DIR [--layer L]... [--top N] [LAYER:INDEX ...]

`feature` prints the profile and examples, the source token in [[ ]] and the query token in {{ }} (ANSI
colour instead when stdout is a terminal); `top` lists the features that most often arrive through
attention; `html` writes an offline page per feature and index.html, and prints the paths.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from saetraj_analysis.errors import AnalysisError, IndexInputError  # noqa: E402
from saetraj_analysis.feature_index import SORT_KEYS, FeatureIndex  # noqa: E402
from saetraj_analysis import feature_pages  # noqa: E402


def feature_spec(text):
    layer, sep, index = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(layer), int(index)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not LAYER:INDEX (for example 5:1234)") from None


def positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} should be at least 1")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Query a saetraj feature index (saetraj index).")
    parser.add_argument("index", help="the INDEX.h5 written by saetraj index")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("feature", help="profile and examples of one feature")
    one.add_argument("feature", type=feature_spec, metavar="LAYER:INDEX")
    one.add_argument("--examples", type=positive, default=5, metavar="N", help="examples to print (default 5)")
    one.add_argument("--colour", choices=("auto", "always", "never"), default="auto",
                     help="ANSI colour for the source and query tokens (default: when stdout is a terminal)")
    top = commands.add_parser("top", help="features of a layer that most often arrive through attention")
    top.add_argument("--layer", type=int, required=True, metavar="L", help="model layer number")
    top.add_argument("-n", type=positive, default=20, help="how many (default 20)")
    top.add_argument("--by", choices=SORT_KEYS, default="count", help="sort key, largest first (default count)")
    pages = commands.add_parser("html", help="an offline HTML page per feature, and index.html")
    pages.add_argument("--out", required=True, help="folder to write into (created if missing)")
    pages.add_argument("--layer", type=int, action="append", metavar="L",
                       help="a layer whose top features get pages; repeatable (default: every layer in the index)")
    pages.add_argument("--top", type=positive, default=20, metavar="N",
                       help="pages for the N most frequent features of each layer (default 20)")
    pages.add_argument("--examples", type=positive, default=10, metavar="N", help="examples per page (default 10)")
    pages.add_argument("features", type=feature_spec, nargs="*", metavar="LAYER:INDEX",
                       help="pages for these features instead of each layer's top N")
    return parser.parse_args(argv)


def run(args):
    with FeatureIndex.open(args.index) as index:
        if args.command == "feature":
            profile = index.feature(*args.feature)
            colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty())
            print("\n".join(feature_pages.profile_lines(index, profile)))
            shown = profile.occurrences(limit=args.examples)
            print(f"examples ({len(shown)} of {profile.count}; source token in "
                  f"{'red' if colour else '[[ ]]'}, query token {'underlined' if colour else 'in {{ }}'}):")
            for o in shown:
                print(f"  {feature_pages.occurrence_heading(o)}")
                print(f"    {feature_pages.marked_text(o, colour)}")
        elif args.command == "top":
            profiles = index.top(args.layer, args.n, args.by)
            print("\n".join(feature_pages.top_lines(index, profiles, args.layer, args.by)))
        else:
            if args.features and args.layer:
                raise IndexInputError("give either features (LAYER:INDEX ...) or --layer, not both")
            if args.features:
                profiles = [index.feature(layer, feature) for layer, feature in args.features]
            else:
                profiles = [p for layer in (args.layer or index.layers()) for p in index.top(layer, args.top)]
            for path in feature_pages.write_pages(index, profiles, args.out, args.examples):
                print(path)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except AnalysisError as err:
        print(f"query.py: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
