"""analysis/ on a sweep file made by the C++ binary itself (the demo fixture, 2 MPI ranks): the pictures
render, and the HTML's embedded graph matches the HDF5 traced-edge table written by `saetraj`."""

import json
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
from matplotlib import image

HERE = os.path.dirname(os.path.abspath(__file__))
RENDER = os.path.normpath(os.path.join(HERE, "..", "..", "analysis", "render.py"))
BINARY = os.environ.get("SAETRAJ_BINARY")

pytestmark = pytest.mark.skipif(not BINARY, reason="SAETRAJ_BINARY is not set (ctest sets it)")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("cpp")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    subprocess.run(["mpirun", "-n", "2", "--oversubscribe", BINARY, "demo", "--out", str(out), "--no-render",
                    "--heads", "--orders", "8"],
                   check=True, env=env, capture_output=True)
    figures = out / "figures"
    done = subprocess.run([sys.executable, RENDER, str(out / "demo_sweep.h5"), "--out", str(figures)],
                          check=True, capture_output=True, text=True)
    return out / "demo_sweep.h5", figures, done.stdout.split()


def test_every_printed_file_exists_and_pictures_are_not_blank(sweep):
    _, _, printed = sweep
    assert any(p.endswith("traced_graph.html") for p in printed)
    for path in printed:
        assert os.path.getsize(path) > 0, path
        if path.endswith(".png"):
            pixels = image.imread(path)
            assert pixels.shape[0] > 200 and pixels.shape[1] > 300
            assert float(np.var(pixels)) > 1e-4, path


def test_html_graph_matches_the_traced_edges_written_by_saetraj(sweep):
    h5, figures, _ = sweep
    page = (figures / "prompt_0000" / "traced_graph.html").read_text()
    found = re.search(r'<script type="application/json" id="saetraj-graph-data">(.*?)</script>', page, re.S)
    assert found
    data = json.loads(found.group(1))
    with h5py.File(h5, "r") as f:
        table = f["graphs/traced_edges"][()]
        table = table[table["prompt"] == 0]
        top_t = int(f["graphs"].attrs["top_t"])
        explained = len(f["explanations/text"])
    expected = {((int(e["from_token"]), int(e["from_layer"])), (int(e["to_token"]), int(e["to_layer"])),
                 int(e["num_trajectories"]), int(e["best_final_position"])) for e in table}
    drawn = {(tuple(e["from"]), tuple(e["to"]), e["num_trajectories"], e["best_final_position"])
             for e in data["edges"]}
    assert len(expected) > 0
    assert drawn == expected
    vertices = {v for e in drawn for v in e[:2]}
    assert {(n["token"], n["layer"]) for n in data["nodes"]} == vertices
    assert top_t == 10
    assert explained > 0
    # Explanations from the fixture's Neuronpedia-style export reach the page.
    assert "fires on" in page


def test_head_split_reaches_hover_page_data_and_corpus_summary(sweep):
    """sweep --heads: every drawn trajectory carries its head split, equal to /graphs/trajectory_heads; the
    hover text names the top heads; the corpus summary counts, per layer, the head with the largest part."""
    h5, figures, _ = sweep
    page = (figures / "prompt_0000" / "traced_graph.html").read_text()
    data = json.loads(re.search(r'id="saetraj-graph-data">(.*?)</script>', page, re.S).group(1))
    with h5py.File(h5, "r") as f:
        table = f["graphs/trajectories"][()]
        heads = f["graphs/trajectory_heads"][()]
        n_heads = int(f["heads"].attrs["heads"])
    assert heads.shape == (len(table), 3 + n_heads)
    by_key = {(int(r["length"]), int(r["layer"]), int(r["source_token"]), int(r["feature"])): heads[i]
              for i, r in enumerate(table) if r["prompt"] == 0}
    carried = 0
    for edge in data["edges"]:
        for t in edge["trajectories"]:
            row = by_key[(edge["to"][0] + 1, edge["to"][1], t["source_token"], t["feature"])]
            split = t["heads"]
            assert split["jump"] == pytest.approx(float(row[0]))
            assert split["values"] == pytest.approx([float(v) for v in row[3:]])
            best = int(np.argmax(row[3:]))
            assert f"h{best} " in edge["hover"]
            carried += 1
    assert carried > 0
    assert "unassigned" in data["edges"][0]["hover"] or any("unassigned" in e["hover"] for e in data["edges"])

    summary = (figures / "corpus_summary.html").read_text()
    found = re.search(r'id="saetraj-corpus-data">(.*?)</script>', summary, re.S)
    counts = json.loads(found.group(1))["head_counts"]
    for layer in set(int(l) for l in table["layer"]):
        rows = heads[(table["layer"] == layer) & ~np.isnan(heads[:, 0])]
        expected = np.bincount(np.argmax(rows[:, 3:], axis=1), minlength=n_heads).tolist() if len(rows) else [0] * n_heads
        assert counts[str(layer)] == expected


def test_order_agreement_per_layer_in_the_corpus_summary(sweep):
    """sweep --orders: the corpus summary's share of trajectories whose source token is also the largest
    Shapley / leave-one-out contributor equals the mean of /graphs/trajectory_order's flags per layer."""
    h5, figures, _ = sweep
    summary = (figures / "corpus_summary.html").read_text()
    data = json.loads(re.search(r'id="saetraj-corpus-data">(.*?)</script>', summary, re.S).group(1))
    agreement = data["order_agreement"]
    with h5py.File(h5, "r") as f:
        table = f["graphs/trajectories"][()]
        order = f["graphs/trajectory_order"][()]
    assert order.shape == (len(table), 4)
    checked = 0
    for layer in set(int(l) for l in table["layer"]):
        rows = order[(table["layer"] == layer) & (order[:, 0] >= 0)]
        assert agreement[str(layer)]["trajectories"] == len(rows)
        if len(rows):
            assert agreement[str(layer)]["shapley_agree"] == pytest.approx(rows[:, 3].mean())
            assert agreement[str(layer)]["loo_agree"] == pytest.approx(rows[:, 2].mean())
            checked += 1
    assert checked > 0


def _order_values_recomputed(f, table):
    """[rows of table, 6] from /order/values itself: activation, without_source, shapley_source and its SE,
    and the largest Shapley value and its SE (ties: the lower token), per trajectory."""
    values = f["order/values"][()]
    slots = int(f["order"].attrs["slots"])
    layers = [int(l) for l in f.attrs["layers"]]
    row_offset = f["prompts/row_offset"][()]
    out = np.full((len(table), 6), np.nan)
    for r, row in enumerate(table):
        q, slot, j = int(row["length"]) - 1, int(row["final_position"]), int(row["source_token"])
        if slot >= slots:
            continue
        base = int(row_offset[int(row["prompt"])]) + (q - 1) * (q + 4) // 2  # rows before query q
        block = values[layers.index(int(row["layer"])), base:base + q + 2, 3 * slot:3 * slot + 3]
        if np.isnan(block[0, 0]):
            continue
        shapley = block[1:, 1]
        largest = int(np.argmax(shapley))
        out[r] = [block[0, 0], block[j + 1, 0], block[j + 1, 1], block[j + 1, 2], shapley[largest],
                  block[largest + 1, 2]]
    return out


def test_order_views_reach_json_graphs_hover_and_page_data(sweep):
    """sweep --orders: /graphs/trajectory_order_values equals a recomputation from /order/values; every
    JSON graph entry and every drawn trajectory carries the same views; the hover text names them."""
    h5, figures, _ = sweep
    with h5py.File(h5, "r") as f:
        table = f["graphs/trajectories"][()]
        order = f["graphs/trajectory_order"][()]
        values = f["graphs/trajectory_order_values"][()]
        assert list(f["graphs/trajectory_order_values"].attrs["columns"]) == [
            "activation", "without_source", "shapley_source", "shapley_source_se", "shapley_largest",
            "shapley_largest_se"]
        expected = _order_values_recomputed(f, table)
    assert values.shape == (len(table), 6)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    np.testing.assert_allclose(values[~np.isnan(values)], expected[~np.isnan(expected)], rtol=1e-6)
    assert (~np.isnan(values[:, 0])).sum() > 0
    by_key = {(int(r["length"]), int(r["layer"]), int(r["source_token"]), int(r["feature"])): i
              for i, r in enumerate(table) if r["prompt"] == 0}

    traced = json.loads((h5.parent / "demo_sweep_graphs" / "T10" / "prompt_0000" / "traced.json").read_text())
    in_json = 0
    for edge in traced["edges"]:
        for t in edge["all_trajectories"]:
            i = by_key[(edge["to"][0] + 1, edge["to"][1], edge["from"][0], t["sae_index"])]
            if order[i, 0] < 0:
                assert "order" not in t
                continue
            o = t["order"]
            assert o["loo_largest"] == order[i, 0] and o["shapley_largest"]["token"] == order[i, 1]
            assert o["loo_agrees"] == bool(order[i, 2]) and o["shapley_agrees"] == bool(order[i, 3])
            assert o["activation"] == pytest.approx(float(values[i, 0]))
            assert o["vanishes_without_source"] == (values[i, 1] == 0)
            assert o["shapley_source"]["value"] == pytest.approx(float(values[i, 2]))
            assert o["shapley_source"]["se"] == pytest.approx(float(values[i, 3]))
            assert o["shapley_largest"]["value"] == pytest.approx(float(values[i, 4]))
            in_json += 1
    assert in_json > 0

    page = (figures / "prompt_0000" / "traced_graph.html").read_text()
    data = json.loads(re.search(r'id="saetraj-graph-data">(.*?)</script>', page, re.S).group(1))
    drawn = 0
    for edge in data["edges"]:
        for t in edge["trajectories"]:
            i = by_key[(edge["to"][0] + 1, edge["to"][1], t["source_token"], t["feature"])]
            if order[i, 0] < 0:
                continue
            o = t["order"]
            assert o["shapley_source"]["value"] == pytest.approx(float(values[i, 2]))
            assert o["shapley_largest"]["token"] == order[i, 1]
            assert o["loo_agrees"] == bool(order[i, 2])
            agree = f"agree: LOO {'yes' if order[i, 2] else 'no'}, Shapley {'yes' if order[i, 3] else 'no'}"
            assert agree in edge["hover"]
            drawn += 1
    assert drawn > 0
    assert "order-free: without token" in page
