"""Text and offline HTML views of a feature index's profiles (analysis/query.py prints and writes them).

The HTML pages are self-contained (inline CSS and SVG, no script, nothing fetched): one page per feature
with its explanation, aggregates, distance histogram, top source tokens and examples, and an index.html
that links them.
"""

import html
import os

from . import style

SOURCE_OPEN, SOURCE_CLOSE = "[[", "]]"
QUERY_OPEN, QUERY_CLOSE = "{{", "}}"
ANSI_SOURCE, ANSI_QUERY, ANSI_RESET = "\x1b[1;31m", "\x1b[4m", "\x1b[0m"
EXPLANATION_LIMIT = 60


def visible(token):
    """A token as one line: newlines, tabs and carriage returns written as escapes."""
    return token.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _number(v, digits=2):
    return "n/a" if v != v else f"{v:.{digits}f}"


def marked_text(occurrence, colour=False):
    """The prompt's first `length` tokens, the source token in [[ ]] and the query token in {{ }} (ANSI
    bold red and underline instead when colour is set)."""
    out = []
    for position, token in enumerate(occurrence.tokens):
        text = visible(token)
        if position == occurrence.query_token:
            text = f"{ANSI_QUERY}{text}{ANSI_RESET}" if colour else f"{QUERY_OPEN}{text}{QUERY_CLOSE}"
        if position == occurrence.source_token:
            text = f"{ANSI_SOURCE}{text}{ANSI_RESET}" if colour else f"{SOURCE_OPEN}{text}{SOURCE_CLOSE}"
        out.append(text)
    return "".join(out)


def _source_list(profile):
    return ", ".join(f"{visible(s.text)!r} (id {s.token_id}) x{s.count}" for s in profile.top_sources)


def profile_lines(index, profile):
    """The profile as text lines (no trailing newline)."""
    lines = [f"layer {profile.layer} feature {profile.feature}: {profile.explanation or 'no explanation'}",
             f"  occurrences {profile.count} in {profile.prompts} prompt(s); traced {profile.traced}",
             f"  distance back: mean {_number(profile.distance_mean)}, median {_number(profile.distance_median, 1)}",
             f"  final position: mean {_number(profile.final_position_mean)}, "
             f"median {_number(profile.final_position_median, 1)} (T = {index.top_t})",
             f"  top source tokens: {_source_list(profile)}"]
    if profile.head_share_mean is not None:
        shares = sorted(zip(index.head_names, profile.head_share_mean), key=lambda hv: -abs(hv[1])
                        if hv[1] == hv[1] else 0)
        lines.append("  mean head share: " + ", ".join(f"{name} {_number(v)}" for name, v in shares[:4]))
    if profile.loo_agree is not None:
        lines.append(f"  order-free agreement: leave-one-out {_number(profile.loo_agree)}, "
                     f"Shapley {_number(profile.shapley_agree)}")
    return lines


def occurrence_heading(o):
    ident = f" (id {o.prompt_id})" if o.prompt_id else ""
    return (f"{os.path.basename(o.source_file)} prompt {o.prompt}{ident}: length {o.length}, source token "
            f"{o.source_token}, query token {o.query_token}, distance {o.distance_back}, final position "
            f"{o.final_position}{', traced' if o.traced else ''}")


def top_lines(index, profiles, layer, by):
    lines = [f"layer {layer}: the {len(profiles)} feature(s) with the largest {by} (T = {index.top_t})",
             f"{'feature':>8} {'count':>6} {'prompts':>7} {'traced':>6} {'dist med':>8} {'top source':<16} "
             f"explanation"]
    for p in profiles:
        source = repr(visible(p.top_sources[0].text)) if p.top_sources else ""
        lines.append(f"{p.feature:>8} {p.count:>6} {p.prompts:>7} {p.traced:>6} "
                     f"{_number(p.distance_median, 1):>8} {style.shorten(source, 16):<16} "
                     f"{style.shorten(p.explanation, EXPLANATION_LIMIT) if p.explanation else '-'}")
    return lines


# ----- HTML -------------------------------------------------------------------------------------------

PAGE_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; text-align: left; }
th { background: #eee; } .ex { font-family: monospace; white-space: pre-wrap; margin: 0.3em 0 1em 0; }
mark.source { background: #f4a6a6; font-weight: bold; } span.query { text-decoration: underline 2px; outline: 1px dashed #555; }
.meta { color: #555; font-size: 0.9em; }
"""


def page_name(layer, feature):
    return f"L{layer:02d}_f{feature}.html"


def _page(title, body):
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{PAGE_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _histogram_svg(counts):
    """Bars of counts[d] for distance d = 0, 1, ... as inline SVG."""
    if not counts:
        return "<p>no occurrences</p>"
    width, height, bar = 600, 160, max(4, min(40, 560 // len(counts)))
    top = max(counts)
    parts = [f'<svg id="distance-histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height + 30}" role="img" aria-label="distance back histogram">']
    for d, c in enumerate(counts):
        h = 0 if top == 0 else round(height * c / top)
        x = 30 + d * bar
        parts.append(f'<rect x="{x}" y="{height - h}" width="{bar - 1}" height="{h}" fill="#4a78b5">'
                     f'<title>distance {d}: {c}</title></rect>')
        if len(counts) <= 30 or d % 5 == 0:
            parts.append(f'<text x="{x + bar / 2}" y="{height + 14}" font-size="10" '
                         f'text-anchor="middle">{d}</text>')
    parts.append(f'<text x="30" y="{height + 28}" font-size="11">distance back (tokens); tallest bar '
                 f'{top}</text></svg>')
    return "".join(parts)


def _marked_html(o):
    out = []
    for position, token in enumerate(o.tokens):
        text = html.escape(visible(token))
        if position == o.query_token:
            text = f'<span class="query" title="query token {position}">{text}</span>'
        if position == o.source_token:
            text = f'<mark class="source" title="source token {position}">{text}</mark>'
        out.append(text)
    return "".join(out)


def feature_page(index, profile, examples):
    """The HTML of one feature's page; `examples` is how many occurrences to show."""
    e = html.escape
    rows = [("occurrences", profile.count), ("prompts", profile.prompts), ("traced", profile.traced),
            ("distance back, mean", _number(profile.distance_mean)),
            ("distance back, median", _number(profile.distance_median, 1)),
            ("final position, mean", _number(profile.final_position_mean)),
            ("final position, median", _number(profile.final_position_median, 1))]
    if profile.loo_agree is not None:
        rows += [("leave-one-out agrees", _number(profile.loo_agree)),
                 ("Shapley agrees", _number(profile.shapley_agree))]
    body = [f"<p><a href=\"index.html\">all features</a></p>",
            f"<h1>Layer {profile.layer}, feature {profile.feature}</h1>",
            f"<p id=\"explanation\">{e(profile.explanation) if profile.explanation else '<i>no explanation</i>'}</p>",
            "<h2>Aggregates</h2><table id=\"aggregates\">"
            + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows) + "</table>",
            "<h2>How far back the source token lies</h2>", _histogram_svg(index.distance_histogram(profile)),
            "<h2>Top source tokens</h2><table id=\"top-sources\"><tr><th>token</th><th>id</th><th>occurrences"
            "</th></tr>" + "".join(f"<tr><td><code>{e(repr(visible(s.text)))}</code></td><td>{s.token_id}</td>"
                                   f"<td>{s.count}</td></tr>" for s in profile.top_sources) + "</table>"]
    if profile.head_share_mean is not None:
        body.append("<h2>Mean head share</h2><table id=\"heads\">" + "".join(
            f"<tr><th>{e(n)}</th><td>{_number(v, 3)}</td></tr>"
            for n, v in zip(index.head_names, profile.head_share_mean)) + "</table>")
    shown = profile.occurrences(limit=examples)
    body.append(f"<h2>Examples ({len(shown)} of {profile.count})</h2><p class=\"meta\">source token "
                f"<mark class=\"source\">highlighted</mark>, query token <span class=\"query\">boxed</span></p>")
    body.append("<div id=\"examples\">")
    for o in shown:
        body.append(f"<div class=\"meta\">{e(occurrence_heading(o))}</div><div class=\"ex\">{_marked_html(o)}</div>")
    body.append("</div>")
    return _page(f"L{profile.layer} #{profile.feature}", "\n".join(body))


def write_pages(index, profiles, out_dir, examples=10):
    """Writes a page per profile and index.html into out_dir; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for p in profiles:
        path = os.path.join(out_dir, page_name(p.layer, p.feature))
        with open(path, "w", encoding="utf-8") as f:
            f.write(feature_page(index, p, examples))
        written.append(path)
    e = html.escape
    rows = "".join(f"<tr><td><a href=\"{page_name(p.layer, p.feature)}\">L{p.layer} #{p.feature}</a></td>"
                   f"<td>{p.count}</td><td>{p.prompts}</td><td>{p.traced}</td>"
                   f"<td>{_number(p.distance_median, 1)}</td><td>{e(p.explanation)}</td></tr>" for p in profiles)
    body = (f"<h1>Feature index {e(os.path.basename(index.path))}</h1><p class=\"meta\">{e(index.model)}; "
            f"T = {index.top_t}; {index.n_features} features, {index.n_occurrences} occurrences in "
            f"{index.n_prompts} prompts</p><table id=\"features\"><tr><th>feature</th><th>occurrences</th>"
            f"<th>prompts</th><th>traced</th><th>distance median</th><th>explanation</th></tr>{rows}</table>")
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(_page("Feature index", body))
    written.append(path)
    return written
