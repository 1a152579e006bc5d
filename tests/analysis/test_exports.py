"""The graph step's exports for other tools (README "Graphs other tools open"), made by `saetraj graph` from a
format_version 1 file written by make_sweep (whose reference implementation of SPEC 1.3-1.5 gives the
expected trajectories and traced graph), and from the demo's format_version 2 sweep with --heads and
--orders:

- every attribution graph validates against Neuronpedia's published JSON schema (vendored in schemas/) and
  holds the fields circuit-tracer's pydantic models (frontend/graph_models.py) require;
- its nodes and links are the reference traced graph mapped as include/saetraj/graph/attribution_export.h
  says;
- trajectories.csv holds the reference trajectories, read back by analysis/ with the csv module and, when
  installed, pandas.
"""

import glob
import json
import os
import subprocess

import h5py
import numpy as np
import pytest

import make_sweep
from saetraj_analysis.errors import SweepFormatError
from saetraj_analysis.trajectory_table import COLUMNS, read_trajectory_table

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "schemas", "neuronpedia-graph-schema.json")
BINARY = os.environ.get("SAETRAJ_BINARY")

pytestmark = pytest.mark.skipif(not BINARY, reason="SAETRAJ_BINARY is not set (ctest sets it)")
TOP_T = 3


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
    out = tmp_path_factory.mktemp("v1")
    path = out / "corpus.h5"
    truth = make_sweep.write_sweep(str(path), top_t=TOP_T)
    subprocess.run([BINARY, "graph", str(path), "--top-t", str(TOP_T)], check=True, capture_output=True)
    return path, truth, out / "corpus_graphs" / f"T{TOP_T}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    subprocess.run([BINARY, "demo", "--out", str(out), "--no-render", "--heads", "--orders", "2"], check=True,
                   capture_output=True)
    path = out / "demo_sweep.h5"
    with h5py.File(path, "r") as h5:
        top_t = int(h5["graphs"].attrs["top_t"])
    return path, out / "demo_sweep_graphs" / f"T{top_t}"


def graph_files(folder):
    files = sorted(glob.glob(str(folder / "attribution_graphs" / "*-p*.json")))
    assert files, f"no attribution graphs in {folder}"
    return files


def check_circuit_tracer_fields(doc):
    """The fields and types circuit-tracer's frontend/graph_models.py (Model, Metadata, QParams, Node) require,
    rewritten by hand, and the references its viewer follows (links between existing nodes)."""
    meta = doc["metadata"]
    assert isinstance(meta["slug"], str) and isinstance(meta["scan"], str) and isinstance(meta["prompt"], str)
    assert all(isinstance(t, str) for t in meta["prompt_tokens"])
    assert meta["transcoder_list"] == []
    q = doc["qParams"]
    assert q["pinnedIds"] == [] and q["supernodes"] == [] and isinstance(q["linkType"], str)
    assert isinstance(q["clickedId"], str) and isinstance(q["sg_pos"], str)
    ids = set()
    for node in doc["nodes"]:
        for key, kind in (("node_id", str), ("feature", int), ("layer", str), ("ctx_idx", int),
                          ("feature_type", str), ("jsNodeId", str), ("clerp", str)):
            assert isinstance(node[key], kind) and not isinstance(node[key], bool), (key, node)
        assert 0 <= node["ctx_idx"] < len(meta["prompt_tokens"])
        assert node["node_id"] not in ids
        ids.add(node["node_id"])
        if node["feature_type"] == "logit":
            float(node["clerp"].split("(p=")[1].split(")")[0])  # the viewer parses the probability from here
    for link in doc["links"]:
        assert link["source"] in ids and link["target"] in ids
        assert isinstance(link["weight"], float)


def test_the_vendored_schema_refuses_a_broken_graph():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.load(open(SCHEMA))
    broken = {"metadata": {"slug": "x", "scan": "y", "prompt_tokens": ["a"], "prompt": "a"}, "qParams": {},
              "nodes": [{"feature": 1, "layer": "0", "ctx_idx": 0, "feature_type": "embedding", "jsNodeId": "x",
                         "clerp": ""}], "links": []}
    with pytest.raises(jsonschema.ValidationError, match="'node_id' is a required property"):
        jsonschema.Draft7Validator(schema).validate(broken)


@pytest.mark.parametrize("which", ["v1", "demo"])
def test_every_graph_validates_against_neuronpedias_schema(which, request):
    jsonschema = pytest.importorskip("jsonschema")
    folder = request.getfixturevalue(which)[-1]
    validator = jsonschema.Draft7Validator(json.load(open(SCHEMA)))
    files = graph_files(folder)
    index = json.load(open(folder / "attribution_graphs" / "graph-metadata.json"))
    assert [g["slug"] + ".json" for g in index["graphs"]] == [os.path.basename(f) for f in files]
    for path in files:
        doc = json.load(open(path, encoding="utf-8"))
        validator.validate(doc)
        check_circuit_tracer_fields(doc)
        assert doc["metadata"]["schema_version"] == 1


def cantor(layer, index):
    return (layer + index) * (layer + index + 1) // 2 + index


def test_graphs_are_the_reference_traced_graphs_mapped(v1):
    path, truth, folder = v1
    with h5py.File(path, "r") as h5:
        ids = h5["tokens/ids"][()]
        offsets = h5["prompts/token_offset"][()]
        readout_ids = h5["readout/token_ids"][()]
    for p, tokens in enumerate(truth.prompts):
        doc = json.load(open(folder / "attribution_graphs" / f"corpus-T{TOP_T}-p{p:04d}.json", encoding="utf-8"))
        assert doc["metadata"]["prompt_tokens"] == tokens
        blocks = {(layer, q): truth.blocks[(p, layer, q)] for layer in truth.layers for q in range(1, len(tokens))}
        traced = make_sweep.traced_graph(blocks, truth.layers, len(tokens), TOP_T)
        carried = {}  # edge -> [(feature, final position)]
        for edge in traced:
            f_tok, f_layer, t_tok, t_layer = edge[:4]
            carried[edge[:4]] = [(f, pos) for src, f, pos in make_sweep.trajectories(blocks[(t_layer, t_tok)], TOP_T)
                                 if src == f_tok]
        arrivals = {}
        for (f_tok, f_layer, t_tok, t_layer), features in carried.items():
            arrivals.setdefault((t_tok, t_layer), []).extend(f"{t_layer}_{f}_{t_tok}" for f, _ in features)
        emb = [f"E_{ids[offsets[p] + j]}_{j}" for j in range(len(tokens))]
        expected_links = set()
        for (f_tok, f_layer, t_tok, t_layer), features in carried.items():
            sources = arrivals.get((f_tok, f_layer)) or [emb[f_tok]]
            for f, pos in features:
                expected_links |= {(s, f"{t_layer}_{f}_{t_tok}", (TOP_T + 1 - pos) / (TOP_T + 1)) for s in sources}
        features = {n["node_id"]: n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"}
        assert set(features) == {i for ids_ in arrivals.values() for i in ids_}
        for node_id, node in features.items():
            layer, f, t = map(int, node_id.split("_"))
            assert (node["feature"], node["layer"], node["ctx_idx"]) == (cantor(layer, f), str(layer), t)
            # make_sweep writes explanations for features not divisible by 3: they are the labels.
            label = f'L{layer} #{f} from "{tokens[node["saetraj"]["source_token"]]}" ' \
                    f'(rank {node["saetraj"]["final_position"]})'
            assert node["clerp"] == truth.explanations.get((layer, f), label)
        assert [n["node_id"] for n in doc["nodes"] if n["feature_type"] == "embedding"] == emb
        assert {(l["source"], l["target"], l["weight"]) for l in doc["links"]} == expected_links
        assert len(doc["links"]) == len(expected_links)
        # make_sweep's last analysed layer is the model's last: the readout's tokens are the logit nodes.
        logits = [n for n in doc["nodes"] if n["feature_type"] == "logit"]
        assert [n["feature"] for n in logits] == list(readout_ids[p, -1])
        assert [n["clerp"] for n in logits] == [f'Output "{text}" (p={prob:.3f})'
                                                for text, prob in truth.readout[(p, truth.layers[-1])]]


def reference_rows(truth):
    rows = []
    for p, tokens in enumerate(truth.prompts):
        blocks = {(layer, q): truth.blocks[(p, layer, q)] for layer in truth.layers for q in range(1, len(tokens))}
        traced = make_sweep.traced_graph(blocks, truth.layers, len(tokens), TOP_T)
        traced_keys = {(e[3], e[2], e[0]) for e in traced}  # (to_layer, query, source)
        for n in range(2, len(tokens) + 1):
            for layer in truth.layers:
                for src, f, pos in make_sweep.trajectories(blocks[(layer, n - 1)], TOP_T):
                    rows.append({"prompt": p, "length": n, "layer": layer, "source_token": src,
                                 "distance_back": n - 1 - src, "feature": f, "final_position": pos,
                                 "traced": int((layer, n - 1, src) in traced_keys),
                                 "source_text": tokens[src], "query_text": tokens[n - 1]})
    return rows


def test_table_holds_the_reference_trajectories(v1):
    path, truth, folder = v1
    rows = read_trajectory_table(str(folder / "trajectories.csv"), backend="csv")
    expected = reference_rows(truth)
    key = lambda r: (r["prompt"], r["length"], r["layer"], r["source_token"], r["final_position"])
    assert sorted(rows, key=key) == sorted(expected, key=key)
    assert any(r["traced"] for r in rows) and not all(r["traced"] for r in rows)
    with h5py.File(path, "r") as h5:
        assert len(rows) == len(h5["graphs/trajectories"])


def test_table_extra_columns_from_heads_and_orders(demo):
    path, folder = demo
    rows = read_trajectory_table(str(folder / "trajectories.csv"), backend="csv")
    with h5py.File(path, "r") as h5:
        table = h5["graphs/trajectories"][()]
        heads = h5["graphs/trajectory_heads"]
        head_columns = [c.decode() if isinstance(c, bytes) else c for c in heads.attrs["columns"]]
        heads = heads[()]
        order = h5["graphs/trajectory_order"][()]
    assert len(rows) == len(table) > 0
    for i, row in enumerate(rows):
        assert [row[c] for c in ("prompt", "length", "layer", "source_token", "feature", "final_position")] == \
            [int(table[c][i]) for c in ("prompt", "length", "layer", "source_token", "feature", "final_position")]
        for c, column in enumerate(head_columns):
            value = row["heads_" + column.replace(" ", "_")]
            assert (np.isnan(value) and np.isnan(heads[i, c])) or value == pytest.approx(float(heads[i, c]), rel=1e-7)
        assert [row["order_" + c] for c in ("loo_source", "shapley_source", "loo_agrees", "shapley_agrees")] == \
            [float(v) for v in order[i]]


def test_pandas_reads_the_same_table(v1):
    pandas = pytest.importorskip("pandas")
    folder = v1[-1]
    frame = read_trajectory_table(str(folder / "trajectories.csv"), backend="pandas")
    assert isinstance(frame, pandas.DataFrame)
    assert frame.to_dict("records") == read_trajectory_table(str(folder / "trajectories.csv"), backend="csv")
    assert str(frame["feature"].dtype) == "int64"


def test_a_table_with_another_header_is_refused(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("prompt,length,layer\n0,2,3\n")
    with pytest.raises(SweepFormatError, match=r"t\.csv: not a saetraj trajectory table"):
        read_trajectory_table(str(bad))
    fields = [name for name, _ in COLUMNS]
    bad.write_text(",".join(fields) + "\n0,2,3,1,1,x,0,1,\"a\",\"b\"\n")
    with pytest.raises(SweepFormatError, match=r"t\.csv: line 2: column feature: 'x' is not a number"):
        read_trajectory_table(str(bad), backend="csv")
