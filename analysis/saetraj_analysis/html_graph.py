"""Interactive, self-contained HTML of a traced trajectory graph (plotly.js embedded, works offline).

Hovering a vertex shows layer readout, arriving newcomers with explanations, the MLP newcomers (sweep
--mlp-transcoder: the transcoder feature or term that brought each in) and the top 5 features;
hovering the middle of an edge shows its trajectories. The graph data is also embedded as JSON in
<script type="application/json" id="saetraj-graph-data"> for tools and tests.
"""

import html
import json

import plotly.graph_objects as go

from . import style

NO_EXPLANATION = "no explanation"
EXPLANATION_LIMIT = 120
DATA_ELEMENT_ID = "saetraj-graph-data"
# Plotly collapses ordinary spaces in hover labels; no-break spaces keep list items indented.
INDENT = "\u00a0\u00a0"


def _escape(text):
    """Plotly reads hover and tick texts as a small HTML subset: '<' and '&' must be escaped."""
    return html.escape(text, quote=False)


def _explained(explanation):
    return _escape(style.shorten(explanation, EXPLANATION_LIMIT)) if explanation else NO_EXPLANATION


def _token(graph, position):
    return f"{position} {_escape(repr(graph.tokens[position]))}"


def _heads(t):
    """' [heads: h3 +0.52 (61%), ...; unassigned -0.05]' for a trajectory with a head split, else ''."""
    if t.heads is None:
        return ""
    parts = ", ".join(f"h{h} {v:+.3g} ({s:.0%})" if s == s else f"h{h} {v:+.3g}"
                      for h, v, s in t.heads.top_heads())
    rest = f"; unassigned {t.heads.unassigned:+.3g}"
    if t.heads.bias != 0:
        rest += f", b_O {t.heads.bias:+.3g}"
    return f" [jump {t.heads.jump:+.3g}: {parts}{rest}]"


def _yes(flag):
    return "yes" if flag else "no"


def _order(t):
    """' [order-free: ...]' for a trajectory with order-free views (sweep --orders), else ''. Names whether
    the feature vanishes without the source token, the source token's Shapley value and the largest one
    (each with its standard error), and whether each view agrees with the prompt order."""
    o = t.order
    if o is None:
        return ""
    if o.activation != o.activation:  # a file without trajectory_order_values: the agreement only
        return (f" [order-free: largest leave-one-out drop token {o.loo_largest}, largest Shapley token "
                f"{o.shapley_largest}; agree: LOO {_yes(o.loo_agrees)}, Shapley {_yes(o.shapley_agrees)}]")
    loo = "vanishes" if o.vanishes_without_source else f"{o.without_source:.3g} of {o.activation:.3g}"
    largest = ("largest" if o.shapley_agrees else
               f"largest token {o.shapley_largest} {o.shapley_largest_value:+.3g} \u00b1 {o.shapley_largest_se:.2g}")
    return (f" [order-free: without token {o.source_token} {loo}; Shapley {o.shapley_source:+.3g} \u00b1 "
            f"{o.shapley_source_se:.2g}, {largest}; agree: LOO {_yes(o.loo_agrees)}, "
            f"Shapley {_yes(o.shapley_agrees)}]")


def _mlp_term(a):
    """'transcoder feature 17 (activation 0.53)', with the transcoder feature's explanation when the file has
    one ('transcoder feature 17 [its text] (activation 0.53)'), or 'the bias term' (skip, error): what brought
    the MLP newcomer of MlpArrival `a` in."""
    m = a.newcomer
    if m.term == "feature":
        text = f" [{_explained(a.transcoder_explanation)}]" if a.transcoder_explanation else ""
        return f"transcoder feature {m.transcoder_feature}{text} (activation {m.transcoder_activation:.3g})"
    return f"the {m.term} term"


def node_hover(graph, node):
    lines = [f"<b>token {_token(graph, node.token)}, layer {node.layer}</b>",
             f"<i>readout of layer {node.layer} at the last token:</i>"]
    lines += [f"{INDENT}{_escape(repr(r.text))} {r.prob:.3f}" for r in node.readout]
    lines.append(f"<i>newcomers arriving here (length {node.token + 1}):</i>")
    lines += ([f"{INDENT}f{t.feature} from token {_token(graph, t.source_token)}, final position "
              f"{t.final_position}{_heads(t)}{_order(t)}: {_explained(t.explanation)}" for t in node.newcomers]
              or [f"{INDENT}none"])
    if graph.has_mlp:
        lines.append(f"<i>MLP newcomers arriving here (layer {node.layer}'s MLP, query {node.token}; final "
                     f"position in resid_post's top-k):</i>")
        lines += ([f"{INDENT}f{a.newcomer.feature} via {_mlp_term(a)}, step {a.newcomer.step} of "
                   f"{a.newcomer.steps - 1}, final position {a.newcomer.final_position} "
                   f"({a.newcomer.activation:.3g}): {_explained(a.explanation)}" for a in node.mlp_newcomers]
                  or [f"{INDENT}none"])
    lines.append("<i>top 5 features here:</i>")
    lines += [f"{INDENT}#{f.rank} f{f.feature} ({f.activation:.3g}): {_explained(f.explanation)}"
              for f in node.top_features] or [f"{INDENT}none active"]
    return "<br>".join(lines)


def edge_hover(graph, edge):
    lines = [f"<b>token {_token(graph, edge.from_token)}, layer {edge.from_layer} \u2192 "
             f"token {_token(graph, edge.to_token)}, layer {edge.to_layer}</b>"]
    if edge.num_trajectories == 0:
        lines.append("0 trajectories")
    else:
        lines.append(f"{edge.num_trajectories} trajectories, best final position {edge.best_final_position}")
        lines += [f"{INDENT}f{t.feature}, final position {t.final_position}{_heads(t)}{_order(t)}: "
                  f"{_explained(t.explanation)}" for t in edge.trajectories]
    return "<br>".join(lines)


def graph_data(graph):
    """The JSON-ready description of the drawn graph, hover texts included."""
    def trajectory(t):
        out = {"source_token": t.source_token, "feature": t.feature, "final_position": t.final_position,
               "explanation": t.explanation}
        if t.heads is not None:
            out["heads"] = {"jump": t.heads.jump, "bias": t.heads.bias, "unassigned": t.heads.unassigned,
                            "values": list(t.heads.values)}
        if t.order is not None:
            o = t.order

            def number(v):
                return None if v != v else v
            out["order"] = {"activation": number(o.activation), "without_source": number(o.without_source),
                            "vanishes_without_source": None if o.without_source != o.without_source
                            else o.vanishes_without_source,
                            "loo_largest": o.loo_largest, "loo_agrees": o.loo_agrees,
                            "shapley_source": {"value": number(o.shapley_source), "se": number(o.shapley_source_se)},
                            "shapley_largest": {"token": o.shapley_largest, "value": number(o.shapley_largest_value),
                                                "se": number(o.shapley_largest_se)},
                            "shapley_agrees": o.shapley_agrees}
        return out

    nodes = [{"token": n.token, "layer": n.layer,
              "readout": [{"token_id": r.token_id, "text": r.text, "prob": r.prob} for r in n.readout],
              "newcomers": [trajectory(t) for t in n.newcomers],
              "top_features": [{"rank": f.rank, "feature": f.feature, "activation": f.activation,
                                "explanation": f.explanation} for f in n.top_features],
              "hover": node_hover(graph, n)} for n in graph.nodes]
    if graph.has_mlp:
        for node, n in zip(nodes, graph.nodes):
            node["mlp_newcomers"] = [
                {"feature": a.newcomer.feature, "final_position": a.newcomer.final_position,
                 "activation": a.newcomer.activation, "step": a.newcomer.step, "steps": a.newcomer.steps,
                 "term": a.newcomer.term, "transcoder_feature": a.newcomer.transcoder_feature,
                 "transcoder_activation": a.newcomer.transcoder_activation,
                 "transcoder_explanation": a.transcoder_explanation, "explanation": a.explanation}
                for a in n.mlp_newcomers]
    edges = [{"from": [e.from_token, e.from_layer], "to": [e.to_token, e.to_layer],
              "num_trajectories": e.num_trajectories, "best_final_position": e.best_final_position,
              "trajectories": [trajectory(t) for t in e.trajectories], "hover": edge_hover(graph, e)}
             for e in graph.edges]
    return {"prompt": graph.prompt, "prompt_text": graph.prompt_text, "tokens": graph.tokens,
            "layers": graph.layers, "top_t": graph.top_t, "nodes": nodes, "edges": edges}


def _figure(graph, data):
    fig = go.Figure()
    for edge in sorted(graph.edges, key=lambda e: (e.num_trajectories > 0, -e.num_trajectories)):
        fig.add_trace(go.Scatter(
            x=[edge.from_token, edge.to_token], y=[edge.from_layer, edge.to_layer], mode="lines",
            line={"color": style.edge_colour(edge.num_trajectories, edge.best_final_position, graph.top_t),
                  "width": style.edge_width(edge.num_trajectories)},
            opacity=0.85, hoverinfo="skip", showlegend=False))

    # Hover targets for edges sit at their midpoints; the trajectory ones also carry the colour bar.
    for carrying in (False, True):
        picked = [(e, d) for e, d in zip(graph.edges, data["edges"]) if (e.num_trajectories > 0) == carrying]
        if not picked:
            continue
        marker = {"size": 9, "symbol": "diamond", "line": {"width": 0.5, "color": "white"}}
        if carrying:
            marker.update(color=[e.best_final_position for e, _ in picked], colorscale=style.RANK_COLORSCALE,
                          cmin=0, cmax=graph.top_t, showscale=True,
                          colorbar={"title": {"text": "best final<br>position"},
                                    "dtick": 1 if graph.top_t <= 20 else None})
        else:
            marker.update(color=style.GOLD)
        fig.add_trace(go.Scatter(
            x=[(e.from_token + e.to_token) / 2 for e, _ in picked],
            y=[(e.from_layer + e.to_layer) / 2 for e, _ in picked], mode="markers", marker=marker,
            hovertext=[d["hover"] for _, d in picked], hoverinfo="text",
            name="edges with trajectories" if carrying else "0-trajectory edges"))

    with_mlp = [n for n in graph.nodes if n.mlp_newcomers]
    if with_mlp:
        # A ring around the vertex, under its hover target: MLP newcomers arrived here (the hover lists them).
        fig.add_trace(go.Scatter(
            x=[n.token for n in with_mlp], y=[n.layer for n in with_mlp], mode="markers",
            marker={"size": 19, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": style.GREEN}},
            hoverinfo="skip", name="MLP newcomers arrived"))
    fig.add_trace(go.Scatter(
        x=[n.token for n in graph.nodes], y=[n.layer for n in graph.nodes], mode="markers",
        marker={"size": 11, "color": "#333333", "line": {"width": 1, "color": "white"}},
        hovertext=[d["hover"] for d in data["nodes"]], hoverinfo="text", name="vertices (token, layer)"))

    positions = list(range(1, len(graph.tokens)))
    fig.update_layout(
        title={"text": f"Traced trajectory graph, prompt {graph.prompt}: "
                       f"\u201c{_escape(style.shorten(graph.prompt_text, 100))}\u201d (T = {graph.top_t})"},
        xaxis={"title": {"text": "token position (BOS column left out)"}, "tickmode": "array",
               "tickvals": positions, "tickangle": -60,
               "ticktext": [_escape(style.token_label(graph.tokens[p])) for p in positions]},
        yaxis={"title": {"text": "layer"}, "tickmode": "array", "tickvals": graph.layers},
        hoverlabel={"align": "left", "font": {"size": 11}}, plot_bgcolor="white",
        height=max(600, 26 * len(graph.layers) + 250),
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0.0})
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False)
    return fig


def embed_json(page, element_id, data):
    """Adds `data` as a JSON script element before </body>; '</' is escaped so text cannot end it."""
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    block = f'<script type="application/json" id="{element_id}">{payload}</script>\n'
    cut = page.rfind("</body>")
    return page[:cut] + block + page[cut:]


def write_graph_html(graph, out_path):
    """Writes the interactive page of `graph` (a TracedGraph) to `out_path`."""
    data = graph_data(graph)
    page = _figure(graph, data).to_html(include_plotlyjs=True, full_html=True,
                                        config={"displaylogo": False, "responsive": True})
    with open(out_path, "w", encoding="utf-8") as out:
        out.write(embed_json(page, DATA_ELEMENT_ID, data))
    return out_path
