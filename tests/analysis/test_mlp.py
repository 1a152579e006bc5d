"""The MLP path (sweep --mlp-transcoder, /mlp of a format version 3 file) in analysis/: io reads it back as
the records make_sweep encoded, the traced-graph hover of a vertex (token = query, layer) lists the MLP
newcomers that arrived there, the corpus summary counts them per layer, and broken /mlp data is refused."""

import html
import json
import os
import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest

import make_sweep
from saetraj_analysis.corpus_summary import summarise
from saetraj_analysis.errors import SweepFormatError, SweepInputError
from saetraj_analysis.io import Sweep
from test_render import assert_picture, embedded, run_render

TOP_T = 3


def expected_newcomers(truth, prompt, layer, q, top_t=None):
    """The records make_sweep wrote for (prompt, layer, q), by final position, cut at top_t."""
    _, records = truth.mlp[(prompt, layer, q)]
    return sorted((r for r in records if top_t is None or r[1] <= top_t), key=lambda r: r[1])


def as_records(newcomers):
    return [(m.feature, m.final_position, m.activation, m.step, m.term, m.transcoder_feature,
             m.transcoder_activation) for m in newcomers]


@pytest.fixture(scope="module")
def mlp_sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("mlp")
    truth = make_sweep.write_sweep(base / "sweep.h5", mlp=True, top_t=TOP_T)
    return base / "sweep.h5", truth


@pytest.fixture(scope="module")
def rendered(mlp_sweep):
    path, truth = mlp_sweep
    out = path.parent / "out"
    result = run_render(path, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, truth


def test_fixture_has_every_kind_of_newcomer(mlp_sweep):
    _, truth = mlp_sweep
    records = [r for _, rs in truth.mlp.values() for r in rs]
    assert {r[4] for r in records} == {"feature", "bias", "skip", "error"}
    assert any(r[1] > TOP_T for r in records) and any(r[1] <= TOP_T for r in records)


def test_mlp_newcomers_are_the_written_records(mlp_sweep):
    path, truth = mlp_sweep
    with Sweep(path) as sweep:
        assert sweep.format_version == 3 and sweep.has_mlp
        assert sweep.mlp_transcoders == [f"tc-{l}" for l in truth.layers]
        checked = 0
        for (p, layer, q), (steps, _) in truth.mlp.items():
            got = sweep.mlp_newcomers(p, layer, q)
            assert as_records(got) == expected_newcomers(truth, p, layer, q)
            assert all(m.steps == steps for m in got)
            assert as_records(sweep.mlp_newcomers(p, layer, q, TOP_T)) == expected_newcomers(truth, p, layer, q,
                                                                                            TOP_T)
            checked += len(got)
        assert checked > 50


def test_files_without_mlp_have_none(tmp_path):
    make_sweep.write_sweep(tmp_path / "plain.h5")
    with Sweep(tmp_path / "plain.h5") as sweep:
        assert not sweep.has_mlp and sweep.mlp_transcoders is None
        assert sweep.mlp_newcomers(0, 4, 2) == []


def test_query_out_of_range_is_named(mlp_sweep):
    path, _ = mlp_sweep
    with Sweep(path) as sweep:
        with pytest.raises(SweepInputError, match=r"query 9 is out of range for prompt 0 \(9 tokens: queries 1..8\)"):
            sweep.mlp_newcomers(0, 4, 9)


def _edit(src, dst, change):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        change(h5)
    return dst


def _replace(h5, name, data):
    del h5[name]
    h5.create_dataset(name, data=data)


@pytest.mark.parametrize("change, message", [
    (lambda h5: h5.attrs.__setitem__("format_version", 2),
     r"holds /mlp but its format_version is 2; /mlp needs version 3"),
    (lambda h5: h5["mlp"].attrs.__delitem__("transcoder_hooks"), r"missing attribute 'transcoder_hooks' on /mlp"),
    (lambda h5: h5["mlp"].attrs.__setitem__("transcoder_ids", ["a", "b"]),
     r"attribute 'transcoder_ids' of /mlp has 2 entries; expected 4, one per analysed layer"),
    (lambda h5: _replace(h5, "mlp/slots", h5["mlp/slots"][:, :-1]),
     r"/mlp/slots has shape \(4, 16, 8, 3\); expected \(4, 17, 8, 3\)"),
    (lambda h5: _replace(h5, "mlp/final_values", h5["mlp/final_values"][()].astype(np.int32)),
     r"/mlp/final_values has dtype int32; expected kind 'f'"),
    (lambda h5: h5.__delitem__("mlp/steps"), r"missing dataset /mlp/steps"),
    (lambda h5: _replace(h5, "mlp_explanations/feature", h5["mlp_explanations/feature"][:-1]),
     r"/mlp_explanations/feature has shape \(\d+,\); expected \(\d+\)"),
])
def test_broken_mlp_is_refused_on_open(mlp_sweep, tmp_path, change, message):
    path, _ = mlp_sweep
    broken = _edit(path, tmp_path / "broken.h5", change)
    with pytest.raises(SweepFormatError, match=re.escape(str(broken)) + ": " + message):
        Sweep(broken)


def _first_newcomer(truth):
    for (p, layer, q), (_, records) in sorted(truth.mlp.items()):
        if records:
            return p, layer, q, records[0][1]


@pytest.mark.parametrize("bad", [(1, 7, 5), (99, 0, 5), (1, 0, -1), (1, 2, 5)])
def test_broken_slot_is_refused_on_read(mlp_sweep, tmp_path, bad):
    path, truth = mlp_sweep
    p, layer, q, slot = _first_newcomer(truth)
    i, at = truth.layers.index(layer), sum(len(t) - 1 for t in truth.prompts[:p]) + q - 1
    step, kind, unit = bad

    def change(h5):
        h5["mlp/slots"][i, at, slot] = (step, kind, unit)
    broken = _edit(path, tmp_path / "slot.h5", change)
    with Sweep(broken) as sweep:
        with pytest.raises(SweepFormatError,
                           match=rf"/mlp/slots\[{i}, {at}, {slot}\] \(prompt {p}, layer {layer}, query {q}\) is "
                                 rf"step {step}, term {kind}, transcoder feature {unit} for feature \d+ of \d+ "
                                 rf"steps; expected a step in 1\.\.\d+"):
            sweep.mlp_newcomers(p, layer, q)


def test_node_hover_lists_the_mlp_newcomers(rendered):
    out, truth = rendered
    checked = transcoder_texts = 0
    for p in range(len(truth.prompts)):
        data = embedded(out / f"prompt_{p:04d}" / "traced_graph.html", "saetraj-graph-data")
        for node in data["nodes"]:
            token, layer = node["token"], node["layer"]
            expected = expected_newcomers(truth, p, layer, token, TOP_T)
            got = [(m["feature"], m["final_position"], m["activation"], m["step"], m["term"],
                    m["transcoder_feature"], m["transcoder_activation"]) for m in node["mlp_newcomers"]]
            assert got == expected
            assert [m["transcoder_explanation"] for m in node["mlp_newcomers"]] == [
                truth.mlp_explanations.get((layer, unit)) if term == "feature" else None
                for _, _, _, _, term, unit, _ in expected]
            hover = node["hover"].split("<br>")
            start = hover.index(f"<i>MLP newcomers arriving here (layer {layer}'s MLP, query {token}; final "
                                f"position in resid_post's top-k):</i>")
            listed = hover[start + 1:start + 1 + max(len(expected), 1)]
            if not expected:
                assert listed == ["\u00a0\u00a0none"]
            for line, (feature, position, value, step, term, unit, act) in zip(listed, expected):
                steps = truth.mlp[(p, layer, token)][0]
                tc_text = truth.mlp_explanations.get((layer, unit)) if term == "feature" else None
                tc_shown = f" [{html.escape(tc_text, quote=False)}]" if tc_text else ""
                transcoder_texts += tc_text is not None
                via = (f"transcoder feature {unit}{tc_shown} (activation {act:.3g})" if term == "feature"
                       else f"the {term} term")
                explanation = truth.explanations.get((layer, feature), "no explanation").replace("&", "&amp;")
                assert line == (f"\u00a0\u00a0f{feature} via {via}, step {step} of {steps - 1}, final position "
                                f"{position} ({value:.3g}): {explanation}")
                checked += 1
            assert hover[start + 1 + max(len(expected), 1)] == "<i>top 5 features here:</i>"
    assert checked > 5
    assert transcoder_texts > 0


def test_hover_without_mlp_has_no_mlp_section(tmp_path):
    make_sweep.write_sweep(tmp_path / "plain.h5")
    result = run_render(tmp_path / "plain.h5", "--out", tmp_path / "out", "--prompt", 0)
    assert result.returncode == 0, result.stderr
    data = embedded(tmp_path / "out" / "prompt_0000" / "traced_graph.html", "saetraj-graph-data")
    assert data["nodes"] and all("MLP" not in n["hover"] and "mlp_newcomers" not in n for n in data["nodes"])


def test_corpus_summary_counts_mlp_newcomers_per_layer(rendered, mlp_sweep):
    out, truth = rendered
    expected = {layer: sum(len(expected_newcomers(truth, p, layer, q, TOP_T)) for p in range(len(truth.prompts))
                           for q in range(1, len(truth.prompts[p]))) for layer in truth.layers}
    assert all(c > 0 for c in expected.values())
    data = embedded(out / "corpus_summary.html", "saetraj-corpus-data")
    assert data["mlp_counts"] == {str(l): c for l, c in expected.items()}
    assert data["layer_counts"] == {str(l): int(np.sum(truth.trajectories["layer"] == l)) for l in truth.layers}
    with Sweep(mlp_sweep[0]) as sweep:
        assert summarise(sweep, sweep.graphs()).mlp_counts == expected
    assert_picture(out / "corpus_summary.png", 700, 400)
    assert_picture(out / "prompt_0000" / "traced_graph.png", 700, 400)
    page = (out / "corpus_summary.html").read_text(encoding="utf-8")
    assert "MLP newcomers per layer" in page


BINARY = os.environ.get("SAETRAJ_BINARY")


@pytest.fixture(scope="module")
def cpp_mlp_sweep(tmp_path_factory):
    """`saetraj sweep --mlp-transcoder` (T = 6) on a synthetic two-layer model with random transcoders, two
    prompts; its folder (s.h5, s_graphs/)."""
    if not BINARY:
        pytest.skip("SAETRAJ_BINARY is not set (ctest sets it)")
    tmp_path = tmp_path_factory.mktemp("cpp_mlp")
    fx, out = tmp_path / "fx", tmp_path / "out"
    subprocess.run([BINARY, "synth", "--out", fx, "--layers", "2", "--d-model", "32", "--d-mlp", "64", "--vocab",
                    "320", "--context", "48", "--d-sae", "96", "--transcoders"], check=True, capture_output=True)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The final correct answer: Max, Mark and Smith are in the dark room.\n"
                      "Anna gave the book to Ben.\n")
    subprocess.run([BINARY, "sweep", "--model", fx / "model", "--sae", f"{fx}/saes/layer_{{layer}}",
                    "--prompt-file", corpus, "--k", "24", "--top-t", "6",
                    "--mlp-transcoder", f"{fx}/transcoders/layer_{{layer}}", "--out", out / "s.h5"],
                   check=True, capture_output=True)
    return out


def test_a_version_3_file_from_saetraj_renders_its_mlp_path(cpp_mlp_sweep):
    """`saetraj sweep --mlp-transcoder` on a synthetic model: render.py draws it, and every drawn vertex's MLP
    newcomers equal the mlp_vertices that saetraj's own JSON graph of that length lists for that layer (two
    readings of /mlp, C++ and Python)."""
    out = cpp_mlp_sweep
    result = run_render(out / "s.h5", "--out", out / "figures")
    assert result.returncode == 0, result.stderr
    with Sweep(out / "s.h5") as sweep:
        assert sweep.format_version == 3 and sweep.has_mlp
    compared = 0
    for p in range(2):
        data = embedded(out / "figures" / f"prompt_{p:04d}" / "traced_graph.html", "saetraj-graph-data")
        assert data["nodes"]
        for node in data["nodes"]:
            graph = json.loads((out / "s_graphs" / "T6" / f"prompt_{p:04d}" /
                                f"length_{node['token'] + 1:03d}.json").read_text())
            listed = [{key: v[key] for key in v if key != "layer"} for v in graph["metadata"]["mlp_vertices"]
                      if v["layer"] == node["layer"]]
            drawn = [{key: value for key, value in m.items() if key != "explanation" or value is not None}
                     for m in node["mlp_newcomers"]]
            assert drawn == listed
            assert f"MLP newcomers arriving here (layer {node['layer']}'s MLP, query {node['token']};" \
                in node["hover"]
            compared += len(drawn)
        # traced.json's mlp_path (the traced graph's MLP vertices, grouped by the term that brought them in)
        # holds the same newcomers at every drawn vertex.
        traced = json.loads((out / "s_graphs" / "T6" / f"prompt_{p:04d}" / "traced.json").read_text())
        for node in data["nodes"]:
            at_vertex = [v for v in traced["metadata"]["mlp_path"]
                         if (v["token"], v["layer"]) == (node["token"], node["layer"])]
            flat = sorted(({**f, "step": v["step"], "steps": v["steps"], "term": v["term"],
                            "transcoder_feature": v["transcoder_feature"],
                            "transcoder_activation": v["transcoder_activation"],
                            "transcoder_explanation": v["transcoder_explanation"]}
                           for v in at_vertex for f in v["features"]), key=lambda f: f["final_position"])
            assert flat == [{key: value for key, value in m.items() if key != "explanation" or value is not None}
                            for m in node["mlp_newcomers"]]
    assert compared > 0
    summary = embedded(out / "figures" / "corpus_summary.html", "saetraj-corpus-data")
    with h5py.File(out / "s.h5", "r") as h5:
        slots, layers = h5["mlp/slots"][()], list(h5.attrs["layers"])
    # Independent count: slots with a step >= 1 whose final position is <= T, over every query.
    positions = np.arange(slots.shape[2])[None, None, :]
    counted = ((slots[..., 0] >= 1) & (positions <= 6)).sum(axis=(1, 2))
    assert summary["mlp_counts"] == {str(int(l)): int(c) for l, c in zip(layers, counted)}


def test_attribution_graphs_carry_the_mlp_path(cpp_mlp_sweep):
    """The attribution-graph exports of that sweep validate against Neuronpedia's schema and circuit-tracer's
    fields, and hold traced.json's mlp_path as include/saetraj/graph/attribution_export.h maps it: one MLP node
    per vertex, linked to a feature node for each feature it brought in (weight: the rank score), and linked
    from what attention brought to that vertex, or from the token itself."""
    jsonschema = pytest.importorskip("jsonschema")
    from test_exports import SCHEMA, check_circuit_tracer_fields
    validator = jsonschema.Draft7Validator(json.load(open(SCHEMA)))
    top_t, checked = 6, 0
    for p in range(2):
        folder = cpp_mlp_sweep / "s_graphs" / "T6"
        doc = json.loads((folder / "attribution_graphs" / f"s-T6-p{p:04d}.json").read_text(encoding="utf-8"))
        validator.validate(doc)
        check_circuit_tracer_fields(doc)
        traced = json.loads((folder / f"prompt_{p:04d}" / "traced.json").read_text())
        nodes = {n["node_id"]: n for n in doc["nodes"]}
        links = {(l["source"], l["target"]): l["weight"] for l in doc["links"]}
        expected_ids = set()
        for v in traced["metadata"]["mlp_path"]:
            node_id = f"mlp_{v['layer']}_{v['token']}_{v['step']}"
            expected_ids.add(node_id)
            node = nodes[node_id]
            assert node["feature_type"] == "mlp reconstruction error" and node["feature"] == -1
            assert (node["layer"], node["ctx_idx"]) == (str(v["layer"]), v["token"])
            assert node["saetraj"] == {"mlp_term": v["term"], "transcoder_feature": v["transcoder_feature"],
                                       "transcoder_activation": v["transcoder_activation"], "step": v["step"],
                                       "steps": v["steps"]}
            for f in v["features"]:
                target = f"{v['layer']}_{f['feature']}_{v['token']}"
                assert nodes[target]["feature_type"] == "cross layer transcoder"
                assert links[(node_id, target)] == pytest.approx((top_t + 1 - f["final_position"]) / (top_t + 1))
                checked += 1
            sources = [s for (s, t) in links if t == node_id]
            assert sources, node_id
            assert all(nodes[s]["ctx_idx"] == v["token"] for s in sources)
        assert {i for i in nodes if i.startswith("mlp_")} == expected_ids
    assert checked > 0


def test_graphml_carries_the_mlp_path(cpp_mlp_sweep):
    """traced.graphml of that sweep, read with networkx, holds one "mlp" node per entry of traced.json's
    mlp_path, with an edge into its vertex carrying the features it brought in."""
    nx = pytest.importorskip("networkx")
    checked = 0
    for p in range(2):
        folder = cpp_mlp_sweep / "s_graphs" / "T6" / f"prompt_{p:04d}"
        g = nx.read_graphml(folder / "traced.graphml")
        traced = json.loads((folder / "traced.json").read_text())
        expected = set()
        for v in traced["metadata"]["mlp_path"]:
            node_id = f"mlp_t{v['token']}_l{v['layer']}_s{v['step']}"
            vertex = f"t{v['token']}_l{v['layer']}"
            expected.add(node_id)
            node = g.nodes[node_id]
            assert (node["kind"], node["mlp_term"], node["token"], node["layer"], node["step"], node["steps"]) == \
                ("mlp", v["term"], v["token"], v["layer"], v["step"], v["steps"])
            if v["term"] == "feature":
                assert node["transcoder_feature"] == v["transcoder_feature"]
                assert node["transcoder_activation"] == pytest.approx(v["transcoder_activation"])
            else:
                assert node["transcoder_feature"] == -1 and "transcoder_activation" not in node
            edge = g.edges[node_id, vertex]
            assert edge["features"] == " ".join(str(f["feature"]) for f in v["features"])
            assert edge["num_trajectories"] == len(v["features"])
            assert g.nodes[vertex]["kind"] == "vertex"
            checked += 1
        assert {n for n, d in g.nodes(data=True) if d["kind"] == "mlp"} == expected
    assert checked > 0
