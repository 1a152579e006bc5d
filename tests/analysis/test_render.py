"""render.py end to end: the files it writes, their content against the HDF5 tables, and its errors."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import h5py
import numpy as np
import pytest
from matplotlib import image

import make_sweep

RENDER = os.path.join(os.path.dirname(__file__), "..", "..", "analysis", "render.py")


def run_render(*args):
    return subprocess.run([sys.executable, RENDER, *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})


def embedded(path, element_id):
    text = open(path, encoding="utf-8").read()
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', text, re.S)
    assert found, f"{path} has no {element_id} block"
    return json.loads(found.group(1))


def assert_picture(path, min_width, min_height):
    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_width and height >= min_height, f"{path} is {width}x{height}"
    # A blank or single-colour picture has (almost) no variance.
    assert pixels[..., :3].std() > 0.05, f"{path} looks blank"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    base = tmp_path_factory.mktemp("render")
    truth = make_sweep.write_sweep(base / "sweep.h5", extra_top_t=(5,))
    result = run_render(base / "sweep.h5", "--out", base / "out")
    assert result.returncode == 0, result.stderr
    return base, truth, result.stdout.split()


def drawn_edges(truth, prompt):
    rows = truth.traced_edges[truth.traced_edges["prompt"] == prompt]
    return {((int(r["from_token"]), int(r["from_layer"])), (int(r["to_token"]), int(r["to_layer"])),
             int(r["num_trajectories"]), int(r["best_final_position"]))
            for r in rows if r["from_token"] != 0 and r["to_token"] != 0}


def test_render_writes_and_prints_every_output(rendered):
    base, truth, printed = rendered
    out = base / "out"
    names = [f"evolution_layer_{l:02d}.png" for l in (3, 4, 5, 6)] + ["traced_graph.png", "traced_graph.html"]
    expected = [out / f"prompt_{p:04d}" / name for p in range(3) for name in names]
    expected += [out / "corpus_summary.png", out / "corpus_summary.html"]
    assert printed == [str(p) for p in expected]
    assert all(p.is_file() for p in expected)


def test_pictures_have_size_and_content(rendered):
    base, _, printed = rendered
    for path in printed:
        if path.endswith(".png"):
            assert_picture(path, 700, 400)


def test_html_is_self_contained(rendered):
    base, _, _ = rendered
    text = (base / "out" / "prompt_0000" / "traced_graph.html").read_text(encoding="utf-8")
    # No external script or style: plotly.js mentions its CDN inside its own source, so look at tags.
    assert not re.search(r"<(script|link)[^>]*\b(src|href)=", text)
    assert len(text) > 1_000_000  # plotly.js itself is embedded


@pytest.mark.parametrize("prompt", [0, 1, 2])
def test_html_graph_matches_traced_edges(rendered, prompt):
    base, truth, _ = rendered
    data = embedded(base / "out" / f"prompt_{prompt:04d}" / "traced_graph.html", "saetraj-graph-data")
    edges = {(tuple(e["from"]), tuple(e["to"]), e["num_trajectories"], e["best_final_position"])
             for e in data["edges"]}
    assert len(data["edges"]) == len(edges)
    assert edges == drawn_edges(truth, prompt)
    vertices = {v for e in edges for v in e[:2]}
    assert len(data["nodes"]) == len(vertices)
    assert {(n["token"], n["layer"]) for n in data["nodes"]} == vertices
    assert data["tokens"] == truth.prompts[prompt]
    assert data["top_t"] == 3


@pytest.mark.parametrize("prompt", [0, 1, 2])
def test_edge_hover_lists_trajectories_with_explanations(rendered, prompt):
    base, truth, _ = rendered
    data = embedded(base / "out" / f"prompt_{prompt:04d}" / "traced_graph.html", "saetraj-graph-data")
    table = truth.trajectories
    for edge in data["edges"]:
        (source, _), (target, layer) = edge["from"], edge["to"]
        rows = table[(table["prompt"] == prompt) & (table["length"] == target + 1) & (table["layer"] == layer)
                     & (table["source_token"] == source)]
        expected = sorted((int(r["final_position"]), int(r["feature"])) for r in rows)
        assert sorted((t["final_position"], t["feature"]) for t in edge["trajectories"]) == expected
        assert len(expected) == edge["num_trajectories"]
        for position, feature in expected:
            text = truth.explanations.get((layer, feature))
            shown = html.escape(text, quote=False) if text else "no explanation"
            assert f"f{feature}, final position {position}: {shown}" in edge["hover"]


@pytest.mark.parametrize("prompt", [0, 1, 2])
def test_node_hover_has_readout_newcomers_and_top_features(rendered, prompt):
    base, truth, _ = rendered
    data = embedded(base / "out" / f"prompt_{prompt:04d}" / "traced_graph.html", "saetraj-graph-data")
    table = truth.trajectories
    for node in data["nodes"]:
        token, layer = node["token"], node["layer"]
        for text, prob in truth.readout[(prompt, layer)]:
            assert f"{html.escape(repr(text), quote=False)} {prob:.3f}" in node["hover"]
        last_step = truth.blocks[(prompt, layer, token)][token + 1]
        assert [f["feature"] for f in node["top_features"]] == [int(f) for f in last_step if f >= 0][:5]
        for f in node["top_features"]:
            text = truth.explanations.get((layer, f["feature"]))
            assert f"#{f['rank']} f{f['feature']} " in node["hover"]
            assert f["explanation"] == text
        rows = table[(table["prompt"] == prompt) & (table["length"] == token + 1) & (table["layer"] == layer)]
        assert sorted((t["source_token"], t["feature"]) for t in node["newcomers"]) == sorted(
            (int(r["source_token"]), int(r["feature"])) for r in rows)
        for r in rows:
            text = truth.explanations.get((layer, int(r["feature"])))
            assert f"f{int(r['feature'])} from token {int(r['source_token'])} " in node["hover"]
            assert (html.escape(text, quote=False) if text else "no explanation") in node["hover"]


def test_explanations_show_in_hover_text(rendered):
    base, _, _ = rendered
    data = embedded(base / "out" / "prompt_0000" / "traced_graph.html", "saetraj-graph-data")
    hovers = " ".join(n["hover"] for n in data["nodes"])
    assert "concept L" in hovers and "&amp;co" in hovers
    assert "no explanation" in hovers


def test_corpus_summary_counts(rendered):
    base, truth, _ = rendered
    data = embedded(base / "out" / "corpus_summary.html", "saetraj-corpus-data")
    table = truth.trajectories
    assert data["n_prompts"] == 3
    assert data["layer_counts"] == {str(l): int(np.count_nonzero(table["layer"] == l)) for l in (3, 4, 5, 6)}
    distances = [int(r["length"]) - 1 - int(r["source_token"]) for r in table]
    assert data["distance_counts"] == [distances.count(d) for d in range(max(distances) + 1)]
    for layer in (3, 4, 5, 6):
        counts = Counter(int(f) for f in table["feature"][table["layer"] == layer])
        best = sorted(counts.items(), key=lambda fc: (-fc[1], fc[0]))[:10]
        listed = data["top_features"][str(layer)]
        assert [(f["feature"], f["count"]) for f in listed] == best
        assert [f["explanation"] for f in listed] == [truth.explanations.get((layer, f)) for f, _ in best]


def test_top_t_picks_the_matching_graphs(tmp_path, rendered):
    base, truth, _ = rendered
    result = run_render(base / "sweep.h5", "--out", tmp_path, "--prompt", 1, "--layers", 4, "--top-t", 5)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "prompt_0001" / n) for n in
                                     ("evolution_layer_04.png", "traced_graph.png", "traced_graph.html")] + [
        str(tmp_path / "corpus_summary.png"), str(tmp_path / "corpus_summary.html")]
    with h5py.File(base / "sweep.h5", "r") as h5:
        rows = h5["graphs_T5/traced_edges"][()]
    expected = {((int(r["from_token"]), int(r["from_layer"])), (int(r["to_token"]), int(r["to_layer"])))
                for r in rows[rows["prompt"] == 1] if r["from_token"] != 0}
    data = embedded(tmp_path / "prompt_0001" / "traced_graph.html", "saetraj-graph-data")
    assert data["top_t"] == 5
    assert {(tuple(e["from"]), tuple(e["to"])) for e in data["edges"]} == expected
    assert expected != {(a, b) for a, b, _, _ in drawn_edges(truth, 1)}


def test_max_prompts_limits_the_default_selection(tmp_path, rendered):
    base, _, _ = rendered
    result = run_render(base / "sweep.h5", "--out", tmp_path, "--max-prompts", 1, "--layers", 3)
    assert result.returncode == 0, result.stderr
    assert "drawing the first 1 of 3 finished prompts" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["corpus_summary.html", "corpus_summary.png", "prompt_0000"]


def test_unfinished_prompts_are_skipped_or_refused(tmp_path):
    make_sweep.write_sweep(tmp_path / "partial.h5", done=[1, 0, 1])
    result = run_render(tmp_path / "partial.h5", "--out", tmp_path / "out", "--layers", 3)
    assert result.returncode == 0, result.stderr
    assert sorted(p for p in os.listdir(tmp_path / "out") if p.startswith("prompt")) == ["prompt_0000",
                                                                                         "prompt_0002"]
    result = run_render(tmp_path / "partial.h5", "--out", tmp_path / "out", "--prompt", 1)
    assert result.returncode == 2
    assert "prompt 1 is not finished (/prompts/done is 0)" in result.stderr


def test_without_explanations_hover_says_so(tmp_path):
    make_sweep.write_sweep(tmp_path / "plain.h5", explanations=False)
    result = run_render(tmp_path / "plain.h5", "--out", tmp_path / "out", "--prompt", 0, "--layers", 3)
    assert result.returncode == 0, result.stderr
    data = embedded(tmp_path / "out" / "prompt_0000" / "traced_graph.html", "saetraj-graph-data")
    annotated = [n for n in data["nodes"] if n["newcomers"] or n["top_features"]]
    assert annotated
    assert all("no explanation" in n["hover"] for n in annotated)
    assert not any("concept" in n["hover"] for n in data["nodes"])


@pytest.mark.parametrize("change, args, message", [
    (lambda h5: h5.attrs.__setitem__("format", "hdf5-other"), (),
     r"sweep\.h5: attribute 'format' is 'hdf5-other'; expected 'saetraj-sweep'"),
    (lambda h5: h5.__delitem__("readout/probs"), (), r"sweep\.h5: missing dataset /readout/probs"),
    (None, ("--layers", 9), r"layer 9 was not analysed; analysed layers are 3, 4, 5, 6"),
    (None, ("--prompt", 5), r"prompt 5 does not exist; the file holds prompts 0\.\.2"),
    (None, ("--top-t", 7), r"no graphs built with T=7"),
])
def test_errors_exit_non_zero_with_a_clear_message(rendered, tmp_path, change, args, message):
    base, _, _ = rendered
    path = tmp_path / "sweep.h5"
    shutil.copy(base / "sweep.h5", path)
    if change:
        with h5py.File(path, "r+") as h5:
            change(h5)
    result = run_render(path, "--out", tmp_path / "out", *args)
    assert result.returncode == 2
    assert re.search(r"^render\.py: error: .*" + message, result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_order_free_hover_text_with_and_without_values():
    """The hover text of a trajectory with order-free views (sweep --orders): with the values of
    /graphs/trajectory_order_values, and agreement only for a file whose graphs predate that table."""
    from saetraj_analysis.html_graph import _order
    from saetraj_analysis.traced_graph import Trajectory, order_views

    bare = Trajectory(3, 17, 2, None, order=order_views(3, np.array([5, 3, 0, 1], dtype=np.int32)))
    assert _order(bare) == (" [order-free: largest leave-one-out drop token 5, largest Shapley token 3; "
                            "agree: LOO no, Shapley yes]")
    full = Trajectory(3, 17, 2, None, order=order_views(3, np.array([3, 0, 1, 0], dtype=np.int32),
                                                        np.array([0.5, 0.0, 0.125, 0.01, 0.25, 0.02])))
    assert _order(full) == (" [order-free: without token 3 vanishes; Shapley +0.125 \u00b1 0.01, largest token 0 "
                            "+0.25 \u00b1 0.02; agree: LOO yes, Shapley no]")
    kept = Trajectory(3, 17, 2, None, order=order_views(3, np.array([3, 3, 1, 1], dtype=np.int32),
                                                        np.array([0.5, 0.2, 0.3, 0.01, 0.3, 0.01])))
    assert "without token 3 0.2 of 0.5; Shapley +0.3 \u00b1 0.01, largest;" in _order(kept)
    assert order_views(3, np.array([-1, -1, -1, -1], dtype=np.int32)) is None
    assert _order(Trajectory(3, 17, 2, None)) == ""
