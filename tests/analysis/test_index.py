"""The feature index (issue 16 §1, README "Feature index"):

- the reference indexer (saetraj_analysis.index_reference) on two small sweeps made by make_sweep, held to a
  brute-force recomputation written here from make_sweep's own tables (counts, row order, medians, ties of the
  top source tokens, explanations from the first source that has one, head shares and order agreement);
- its traced flag equals the `traced` column of trajectories.csv written by `saetraj graph`;
- the query API and analysis/query.py (feature, top, html) on it, and one-line errors for bad index files;
- `saetraj index` on the same sweeps and on the demo sweep (with --heads and --orders) equals the reference
  dataset by dataset, attribute by attribute.
"""

import csv
import html.parser
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

import make_sweep
from saetraj_analysis.errors import AnalysisError, IndexFormatError, IndexInputError
from saetraj_analysis.feature_index import FeatureIndex
from saetraj_analysis.index_reference import build_index

HERE = os.path.dirname(os.path.abspath(__file__))
QUERY = os.path.normpath(os.path.join(HERE, "..", "..", "analysis", "query.py"))
BINARY = os.environ.get("SAETRAJ_BINARY")
STRINGS = h5py.string_dtype("utf-8")
TOP_T = 3
N_HEADS = 3

# Prompts whose tokens repeat (so that source token ids repeat and the top source lists have ties).
PROMPTS_B = [
    ["<bos>", "a", " b", " a", " b", " c", " a", " d"],
    ["<bos>", " b", " b", " a", "\n", " c"],
    ["<bos>", " c", "a", " a", " d", " b", " a", " c", " b"],
]


def _remap_token_ids(path):
    """Token ids by text (one id per distinct text, in order of first appearance), as a tokenizer gives."""
    with h5py.File(path, "r+") as h5:
        texts = [t.decode() for t in h5["tokens/text"][()]]
        vocab = {}
        ids = [vocab.setdefault(t, 500 - 7 * len(vocab)) for t in texts]   # ids not in text order
        h5["tokens/ids"][...] = np.array(ids, dtype=np.int32)


def _add_heads_and_order(path, seed):
    """Synthetic per-trajectory head splits and order-free views, with NaN, zero-jump and -1 rows."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r+") as h5:
        n = h5["graphs/trajectories"].shape[0]
        heads = rng.normal(size=(n, 3 + N_HEADS)).astype(np.float32)
        heads[::7] = np.nan
        heads[3::11, 0] = 0.0
        heads[h5["graphs/trajectories"]["feature"] == 5] = np.nan    # no usable row for feature 5
        ds = h5["graphs"].create_dataset("trajectory_heads", data=heads)
        ds.attrs.create("columns", data=["jump", "bias", "unassigned"] + [f"head {h}" for h in range(N_HEADS)],
                        dtype=STRINGS)
        order = rng.integers(-1, 2, size=(n, 4)).astype(np.int32)
        ds = h5["graphs"].create_dataset("trajectory_order", data=order)
        ds.attrs.create("columns", data=["loo_source", "shapley_source", "loo_agrees", "shapley_agrees"],
                        dtype=STRINGS)
        ds = h5["graphs"].create_dataset("trajectory_order_values",
                                         data=rng.normal(size=(n, 6)).astype(np.float32))
        ds.attrs.create("columns", data=["activation", "without_source", "shapley_source", "shapley_source_se",
                                         "shapley_largest", "shapley_largest_se"], dtype=STRINGS)


def _make_sources(folder, rich):
    a, b = folder / "a.h5", folder / "b.h5"
    truth_a = make_sweep.write_sweep(str(a), top_t=TOP_T, seed=11, k=6, n_features=14)
    truth_b = make_sweep.write_sweep(str(b), prompts=PROMPTS_B, top_t=TOP_T, seed=12, k=6, n_features=14)
    for path in (a, b):
        _remap_token_ids(path)
    with h5py.File(a, "r+") as h5:
        # a explains only even features, with its own text: those win over b's.
        del h5["explanations"]
        keys = [(l, f) for l in truth_a.layers for f in range(14) if f % 2 == 0]
        h5.create_dataset("explanations/layer", data=np.array([l for l, _ in keys], dtype=np.int32))
        h5.create_dataset("explanations/feature", data=np.array([f for _, f in keys], dtype=np.int32))
        h5.create_dataset("explanations/text", data=[f"from a: L{l} f{f}" for l, f in keys], dtype=STRINGS)
    with h5py.File(b, "r+") as h5:
        h5.create_dataset("prompts/id", data=[f"b-{p}" for p in range(len(PROMPTS_B))], dtype=STRINGS)
    if rich:
        _add_heads_and_order(a, 1)
        _add_heads_and_order(b, 2)
    return [a, b], [truth_a, truth_b]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    paths, truths = _make_sources(folder, rich=False)
    build_index([str(p) for p in paths], str(folder / "index.h5"), command_line="test")
    return paths, truths, folder / "index.h5"


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rich")
    paths, truths = _make_sources(folder, rich=True)
    build_index([str(p) for p in paths], str(folder / "index.h5"), command_line="test")
    return paths, truths, folder / "index.h5"


def read_all(path):
    """{name: value} of every dataset (numpy arrays; strings as str) and every attribute ('@name', 'ds@name')."""
    found = {}

    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    def value(v):
        v = np.asarray(v)
        if v.dtype.kind in "OS":
            return [text(x) for x in v.ravel()] if v.ndim else text(v[()])
        return v

    with h5py.File(path, "r") as h5:
        for name, v in h5.attrs.items():
            found["@" + name] = value(v)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found[name] = value(obj[()])
                found[name + ":dtype"] = "string" if h5py.check_string_dtype(obj.dtype) else str(obj.dtype)
                for a, v in obj.attrs.items():
                    found[f"{name}@{a}"] = value(v)
        h5.visititems(visit)
    return found


# ----- brute force -------------------------------------------------------------------------------------

def brute_force(paths):
    """The index's rows and aggregates computed the long way from each file's own tables."""
    occurrences = []        # dicts in index order
    explanations = {}
    prompt_base, token_text_of = 0, {}
    for s, path in enumerate(paths):
        with h5py.File(path, "r") as h5:
            texts = [t.decode() for t in h5["tokens/text"][()]]
            ids = h5["tokens/ids"][()].tolist()
            offsets = h5["prompts/token_offset"][()].tolist()
            for i, t in zip(ids, texts):
                token_text_of.setdefault(i, t)
            traced = {(int(e["prompt"]), int(e["to_layer"]), int(e["to_token"]), int(e["from_token"]))
                      for e in h5["graphs/traced_edges"][()] if e["num_trajectories"] > 0}
            group = h5["graphs"]
            heads = group["trajectory_heads"][()] if "trajectory_heads" in group else None
            order = group["trajectory_order"][()] if "trajectory_order" in group else None
            for r, t in enumerate(group["trajectories"][()]):
                p, n, layer, src = int(t["prompt"]), int(t["length"]), int(t["layer"]), int(t["source_token"])
                occurrences.append(dict(
                    key=(layer, int(t["feature"])), source=s, prompt=prompt_base + p, length=n, source_token=src,
                    distance_back=n - 1 - src, final_position=int(t["final_position"]),
                    source_id=ids[offsets[p] + src], traced=int((p, layer, n - 1, src) in traced),
                    heads=None if heads is None else heads[r], order=None if order is None else order[r]))
            if "explanations" in h5:
                for l, f, text in zip(h5["explanations/layer"][()], h5["explanations/feature"][()],
                                      h5["explanations/text"][()]):
                    explanations.setdefault((int(l), int(f)), text.decode())
            prompt_base += len(offsets)
    # Row order: (layer, feature), then the order met above (sorted() is stable).
    occurrences = sorted(occurrences, key=lambda o: o["key"])
    features = {}
    for o in occurrences:
        features.setdefault(o["key"], []).append(o)
    return occurrences, features, explanations, token_text_of


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def check_against_brute_force(paths, index_path, with_extras, fixture_has_ties=True):
    occurrences, features, explanations, token_text_of = brute_force(paths)
    got = read_all(index_path)
    for name in ("prompt", "length", "source_token", "distance_back", "final_position", "source_id", "traced"):
        assert got[f"occurrences/{name}"].tolist() == [o[name] for o in occurrences], name
    keys = sorted(features)
    assert list(zip(got["features/layer"].tolist(), got["features/feature"].tolist())) == keys
    starts = np.cumsum([0] + [len(features[k]) for k in keys])[:-1]
    assert got["features/start"].tolist() == starts.tolist()
    assert got["features/count"].tolist() == [len(features[k]) for k in keys]
    ties = evens = 0
    for row, key in enumerate(keys):
        occ = features[key]
        assert got["features/prompts"][row] == len({o["prompt"] for o in occ})
        assert got["features/traced"][row] == sum(o["traced"] for o in occ)
        d = [o["distance_back"] for o in occ]
        fp = [o["final_position"] for o in occ]
        assert got["features/distance_mean"][row] == pytest.approx(sum(d) / len(d), rel=1e-15)
        assert got["features/distance_median"][row] == median(d)
        assert got["features/final_position_mean"][row] == pytest.approx(sum(fp) / len(fp), rel=1e-15)
        assert got["features/final_position_median"][row] == median(fp)
        evens += len(d) % 2 == 0 and sorted(d)[len(d) // 2 - 1] != sorted(d)[len(d) // 2]
        counts = {}
        for o in occ:
            counts[o["source_id"]] = counts.get(o["source_id"], 0) + 1
        # Most first, ties to the lower id: try every id against every other.
        expected = [i for i in counts
                    if sum(1 for j in counts if (counts[j], -j) > (counts[i], -i)) < 5]
        expected.sort(key=lambda i: sum(1 for j in counts if (counts[j], -j) > (counts[i], -i)))
        ties += len(set(counts[i] for i in expected)) < len(expected)
        assert got["features/top_sources"][row].tolist() == expected + [-1] * (5 - len(expected))
        assert got["features/top_source_counts"][row].tolist() == [counts[i] for i in expected] + \
            [0] * (5 - len(expected))
        assert got["features/explanation"][row] == explanations.get(key, "")
        if with_extras:
            rows = [o["heads"].astype(np.float64) for o in occ
                    if np.isfinite(o["heads"][0]) and o["heads"][0] != 0]
            if rows:
                want = np.mean([r[3:] / r[0] for r in rows], axis=0)
                np.testing.assert_allclose(got["features/head_share_mean"][row], want, rtol=1e-12)
            else:
                assert np.isnan(got["features/head_share_mean"][row]).all()
            for col, name in ((2, "loo_agree"), (3, "shapley_agree")):
                seen = [int(o["order"][col]) for o in occ if o["order"][col] in (0, 1)]
                if seen:
                    assert got[f"features/{name}"][row] == pytest.approx(sum(seen) / len(seen), rel=1e-15)
                else:
                    assert np.isnan(got[f"features/{name}"][row])
    assert not fixture_has_ties or (ties > 0 and evens > 0), "the fixture should hold tied top sources and even counts"
    vocab = sorted({o["source_id"] for o in occurrences})
    assert got["vocab/id"].tolist() == vocab
    assert got["vocab/text"] == [token_text_of[i] for i in vocab]
    return got


def test_reference_equals_brute_force(plain):
    paths, truths, index = plain
    got = check_against_brute_force(paths, index, with_extras=False)
    assert got["@format"] == "saetraj-index" and got["@format_version"] == 1
    assert got["@sources"] == [str(p) for p in paths] and got["@graphs_group"] == "graphs"
    assert got["@top_t"] == TOP_T and got["@layers"].tolist() == truths[0].layers
    assert "occurrences/heads" not in got and "features/loo_agree" not in got
    # /prompts and /tokens: a's prompts then b's; explanation precedence (a's only for even features).
    assert got["prompts/source"].tolist() == [0, 0, 0, 1, 1, 1]
    assert got["prompts/index"].tolist() == [0, 1, 2, 0, 1, 2]
    assert got["prompts/id"] == ["", "", "", "b-0", "b-1", "b-2"]
    assert got["prompts/text"][3] == "a b a b c a d"
    assert got["tokens/text"] == [t for prompts in (make_sweep.DEFAULT_PROMPTS, PROMPTS_B) for p in prompts for t in p]
    assert got["prompts/token_offset"].tolist() == np.cumsum([0] + [len(p) for p in
                                                                      make_sweep.DEFAULT_PROMPTS + PROMPTS_B])[:-1].tolist()
    explained = dict(zip(zip(got["features/layer"].tolist(), got["features/feature"].tolist()),
                         got["features/explanation"]))
    assert any(k[1] % 2 == 0 and v.startswith("from a") for k, v in explained.items())
    assert any(k[1] % 2 == 1 and v.startswith("concept") for k, v in explained.items())
    assert all(v == "" for k, v in explained.items() if k[1] % 6 == 3)   # neither explains these


def test_reference_with_heads_and_order_equals_brute_force(rich):
    paths, _, index = rich
    got = check_against_brute_force(paths, index, with_extras=True)
    assert got["occurrences/heads"].shape[1] == 3 + N_HEADS
    assert got["occurrences/heads@columns"][3:] == [f"head {h}" for h in range(N_HEADS)]
    assert got["occurrences/order@columns"][2] == "loo_agrees"
    assert np.isnan(got["features/head_share_mean"]).any() and np.isfinite(got["features/head_share_mean"]).any()


def test_reference_refuses_bad_sets(plain, tmp_path):
    paths, _, _ = plain
    a, b = (str(p) for p in paths)
    with pytest.raises(AnalysisError, match="given twice"):
        build_index([a, b, a], str(tmp_path / "x.h5"))
    other = tmp_path / "k8.h5"
    make_sweep.write_sweep(str(other), top_t=TOP_T, k=8)
    with pytest.raises(AnalysisError, match=r"k8.h5: k is 8 but .*a.h5 has 6"):
        build_index([a, str(other)], str(tmp_path / "x.h5"))
    running = tmp_path / "running.h5"
    shutil.copy(a, running)
    with h5py.File(running, "r+") as h5:
        h5.attrs["complete"] = np.int32(0)
    with pytest.raises(AnalysisError, match="running.h5: the sweep is incomplete"):
        build_index([str(running)], str(tmp_path / "x.h5"))
    with pytest.raises(AnalysisError, match=r"a.h5: no graphs built with T=7"):
        build_index([a], str(tmp_path / "x.h5"), top_t=7)
    with pytest.raises(AnalysisError, match=r"a.h5: the output is one of the sweep files"):
        build_index([a, b], a)
    build_index([a], str(tmp_path / "i.h5"))
    with pytest.raises(AnalysisError, match=r"i.h5: attribute 'format' is 'saetraj-index'; expected 'saetraj-sweep'"):
        build_index([a, str(tmp_path / "i.h5")], str(tmp_path / "x2.h5"))
    with h5py.File(a, "r") as h5:                          # a is untouched
        assert h5.attrs["format"] == "saetraj-sweep"


def test_an_index_without_occurrences(tmp_path):
    make_sweep.write_sweep(str(tmp_path / "s.h5"), top_t=-1)     # no newcomer reaches final position <= -1
    assert build_index([str(tmp_path / "s.h5")], str(tmp_path / "i.h5")) == 0
    with FeatureIndex.open(tmp_path / "i.h5") as index:
        assert index.layers() == [] and index.top(3) == [] and index.n_occurrences == 0
        assert index._file["features/top_sources"].shape == (0, 5)
        with pytest.raises(IndexInputError, match="feature 1 is not in the index"):
            index.feature(3, 1)


def test_reference_reads_the_group_of_another_t(tmp_path):
    path = tmp_path / "s.h5"
    truth = make_sweep.write_sweep(str(path), top_t=TOP_T, extra_top_t=(5,))
    build_index([str(path)], str(tmp_path / "i.h5"), top_t=5)
    with FeatureIndex.open(tmp_path / "i.h5") as index:
        assert index.top_t == 5
        assert index.n_occurrences == len(make_sweep._graph_tables(truth, 5)[0])


# ----- the query API and the command ---------------------------------------------------------------------

def test_api_feature_profile_and_occurrences(plain):
    paths, _, index_path = plain
    occurrences, features, explanations, token_text_of = brute_force(paths)
    key = max(sorted(features), key=lambda k: len(features[k]))
    with FeatureIndex.open(index_path) as index:
        assert index.layers() == sorted({k[0] for k in features})
        profile = index.feature(*key)
        occ = features[key]
        assert (profile.layer, profile.feature, profile.count) == (key[0], key[1], len(occ))
        assert profile.explanation == explanations.get(key, "")
        assert profile.top_sources[0].text == token_text_of[profile.top_sources[0].token_id]
        examples = profile.occurrences()
        assert len(examples) == len(occ) and len(profile.occurrences(limit=2)) == 2
        prompts = make_sweep.DEFAULT_PROMPTS + PROMPTS_B
        for o, want in zip(examples, occ):
            assert o.source_file == str(paths[want["source"]])
            assert o.prompt == want["prompt"] - 3 * want["source"]
            assert o.tokens == prompts[want["prompt"]][:want["length"]]
            assert o.prompt_text == "".join(prompts[want["prompt"]][1:])
            assert (o.source_token, o.query_token, o.final_position, o.traced) == \
                (want["source_token"], want["length"] - 1, want["final_position"], bool(want["traced"]))
        with pytest.raises(IndexInputError, match="feature 99 is not in the index"):
            index.feature(key[0], 99)
        with pytest.raises(IndexInputError, match="layer 42 was not analysed"):
            index.feature(42, 1)


def test_api_top_orders_by_count_then_feature(plain):
    paths, _, index_path = plain
    _, features, _, _ = brute_force(paths)
    layer = sorted(features)[0][0]
    mine = sorted((k for k in features if k[0] == layer), key=lambda k: (-len(features[k]), k[1]))
    with FeatureIndex.open(index_path) as index:
        assert [p.feature for p in index.top(layer, n=4)] == [k[1] for k in mine[:4]]
        by_prompts = sorted(mine, key=lambda k: (-len({o["prompt"] for o in features[k]}), k[1]))
        assert [p.feature for p in index.top(layer, n=100, by="prompts")] == [k[1] for k in by_prompts]
        with pytest.raises(IndexInputError, match="cannot sort by 'bogus'"):
            index.top(layer, by="bogus")


def query(*args):
    return subprocess.run([sys.executable, QUERY, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_command_feature_and_top(plain):
    paths, _, index_path = plain
    _, features, explanations, _ = brute_force(paths)
    key = max(sorted(features), key=lambda k: (len(features[k]), k))
    done = query(index_path, "feature", f"{key[0]}:{key[1]}", "--examples", 2)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"layer {key[0]} feature {key[1]}: {explanations.get(key) or 'no explanation'}"
    assert f"occurrences {len(features[key])} in " in lines[1]
    first = features[key][0]
    tokens = (make_sweep.DEFAULT_PROMPTS + PROMPTS_B)[first["prompt"]][:first["length"]]
    marked = "".join(
        ("[[" if i == first["source_token"] else "") + ("{{" if i == first["length"] - 1 else "")
        + t.replace("\n", "\\n") + ("}}" if i == first["length"] - 1 else "") + ("]]" if i == first["source_token"] else "")
        for i, t in enumerate(tokens))
    assert f"    {marked}" in lines
    assert "\x1b[" not in done.stdout                       # not a terminal: no colour
    coloured = query(index_path, "feature", f"{key[0]}:{key[1]}", "--colour", "always")
    assert "\x1b[1;31m" in coloured.stdout
    top = query(index_path, "top", "--layer", key[0], "-n", 3)
    assert top.returncode == 0, top.stderr
    rows = top.stdout.splitlines()[2:]
    mine = sorted((k for k in features if k[0] == key[0]), key=lambda k: (-len(features[k]), k[1]))[:3]
    assert [int(r.split()[0]) for r in rows] == [k[1] for k in mine]
    assert [int(r.split()[1]) for r in rows] == [len(features[k]) for k in mine]


@pytest.mark.parametrize("breakage, message", [
    ("sweep", "attribute 'format' is 'saetraj-sweep'; expected 'saetraj-index'; this is a sweep file"),
    ("version", "attribute 'format_version' is 2; this reader knows 1"),
    ("missing", "missing dataset /occurrences/source_token"),
    ("shape", "/features/top_sources has shape"),
    ("text", "cannot open as an HDF5 file (not an HDF5 file)"),
    ("nofile", "no such file"),
])
def test_command_one_line_errors_for_bad_index_files(plain, tmp_path, breakage, message):
    paths, _, index_path = plain
    bad = tmp_path / "bad.h5"
    if breakage == "sweep":
        bad = paths[0]
    elif breakage == "text":
        bad.write_text("not hdf5")
    elif breakage != "nofile":
        shutil.copy(index_path, bad)
        with h5py.File(bad, "r+") as h5:
            if breakage == "version":
                h5.attrs["format_version"] = np.int64(2)
            elif breakage == "missing":
                del h5["occurrences/source_token"]
            else:
                top = h5["features/top_sources"][()]
                del h5["features/top_sources"]
                h5.create_dataset("features/top_sources", data=top[:, :3])
    done = query(bad, "top", "--layer", 3)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stderr.startswith(f"query.py: error: {bad}")


def test_command_feature_not_in_index(plain):
    _, _, index_path = plain
    done = query(index_path, "feature", "3:999")
    assert done.returncode == 2
    assert done.stderr == f"query.py: error: {index_path}: layer 3 feature 999 is not in the index (it never " \
                          f"arrived through attention with final position <= T={TOP_T})\n"
    done = query(index_path, "feature", "3-1")
    assert done.returncode == 2 and "'3-1' is not LAYER:INDEX" in done.stderr


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.marks, self.text, self._in = {}, [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = tag
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "mark":
            self._in = "mark"
        if tag in ("script", "link", "img"):
            self.links.append(attrs.get("src") or attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "mark":
            self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in == "mark":
            self.marks.append(data)


def test_command_html_pages(plain, tmp_path):
    paths, _, index_path = plain
    _, features, explanations, _ = brute_force(paths)
    key = next(k for k in sorted(features) if explanations.get(k) and len(features[k]) >= 2)
    out = tmp_path / "pages"
    done = query(index_path, "html", "--out", out, "--examples", 3, f"{key[0]}:{key[1]}")
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    assert [os.path.basename(p) for p in written] == [f"L{key[0]:02d}_f{key[1]}.html", "index.html"]
    page = _Page()
    page.feed(open(written[0], encoding="utf-8").read())
    for element in ("explanation", "aggregates", "distance-histogram", "top-sources", "examples"):
        assert element in page.ids
    assert explanations[key] in "".join(page.text)
    first = features[key][0]
    source_text = (make_sweep.DEFAULT_PROMPTS + PROMPTS_B)[first["prompt"]][first["source_token"]]
    assert page.marks[0] == "highlighted"                 # the legend, then one per example
    assert len(page.marks) == 1 + min(3, len(features[key]))
    assert source_text.replace("\n", "\\n") in page.marks[1]
    assert page.links == ["index.html"]                   # nothing fetched
    listing = _Page()
    listing.feed(open(written[1], encoding="utf-8").read())
    assert listing.links == [os.path.basename(written[0])]
    # Every layer's top 2 by default.
    done = query(index_path, "html", "--out", tmp_path / "all", "--top", 2)
    assert len(done.stdout.split()) == 2 * len({k[0] for k in features}) + 1
    done = query(index_path, "html", "--out", tmp_path / "two", "--top", 2, "--layer", 3, "--layer", 5)
    assert [os.path.basename(p)[:3] for p in done.stdout.split()] == ["L03", "L03", "L05", "L05", "ind"]
    done = query(index_path, "html", "--out", tmp_path / "both", "--layer", 3, f"{key[0]}:{key[1]}")
    assert done.returncode == 2
    assert done.stderr == "query.py: error: give either features (LAYER:INDEX ...) or --layer, not both\n"


# ----- saetraj index against the reference ------------------------------------------------------------------

def _has_index_command():
    if not BINARY:
        return False
    done = subprocess.run([BINARY, "index", "--help"], capture_output=True, text=True)
    return done.returncode == 0


needs_index = pytest.mark.skipif(not _has_index_command(),
                                 reason="SAETRAJ_BINARY is not set (ctest sets it) or has no `index` command yet")
needs_binary = pytest.mark.skipif(not BINARY, reason="SAETRAJ_BINARY is not set (ctest sets it)")


def assert_traced_equals_csv(index_path, csv_paths):
    """/occurrences/traced equals the `traced` column of each source's trajectories.csv, row for row."""
    got = read_all(index_path)
    csv_traced = {}
    for s, path in enumerate(csv_paths):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                key = (s, int(r["prompt"]), int(r["length"]), int(r["layer"]), int(r["source_token"]),
                       int(r["feature"]))
                csv_traced[key] = int(r["traced"])
    assert len(csv_traced) == len(got["occurrences/prompt"])
    layer_of = np.repeat(got["features/layer"], got["features/count"])
    feature_of = np.repeat(got["features/feature"], got["features/count"])
    for row in range(len(got["occurrences/prompt"])):
        p = int(got["occurrences/prompt"][row])
        key = (int(got["prompts/source"][p]), int(got["prompts/index"][p]), int(got["occurrences/length"][row]),
               int(layer_of[row]), int(got["occurrences/source_token"][row]), int(feature_of[row]))
        assert got["occurrences/traced"][row] == csv_traced[key], key
    assert 0 < sum(csv_traced.values()) < len(csv_traced)


@needs_binary
def test_traced_flag_equals_the_csv_column(plain, tmp_path):
    paths, _, index_path = plain
    csv_paths = []
    for s, path in enumerate(paths):
        copy = tmp_path / f"s{s}.h5"
        shutil.copy(path, copy)
        subprocess.run([BINARY, "graph", str(copy), "--top-t", str(TOP_T)], check=True, capture_output=True)
        csv_paths.append(tmp_path / f"s{s}_graphs" / f"T{TOP_T}" / "trajectories.csv")
    assert_traced_equals_csv(index_path, csv_paths)


def assert_same_index(cpp_path, ref_path):
    cpp, ref = read_all(cpp_path), read_all(ref_path)
    skip = {"@created_utc", "@command_line"}
    assert sorted(set(cpp) - skip) == sorted(set(ref) - skip)
    for name in sorted(set(ref) - skip):
        a, b = cpp[name], ref[name]
        if isinstance(b, np.ndarray):
            assert a.shape == b.shape and a.dtype == b.dtype, (name, a.shape, a.dtype, b.shape, b.dtype)
            np.testing.assert_array_equal(a, b, err_msg=name)   # floats too: both sum left to right
        else:
            assert a == b, name


@needs_index
def test_saetraj_index_equals_the_reference(plain, tmp_path):
    paths, _, _ = plain
    args = [str(p) for p in paths]
    build_index(args, str(tmp_path / "ref.h5"))
    done = subprocess.run([BINARY, "index", *args, "--out", str(tmp_path / "cpp.h5")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_index(tmp_path / "cpp.h5", tmp_path / "ref.h5")
    # Two ranks, small batches: the same file.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    done = subprocess.run(["mpirun", "-n", "2", "--oversubscribe", BINARY, "index", *args, "--batch-rows", "7",
                           "--out", str(tmp_path / "mpi.h5")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert_same_index(tmp_path / "mpi.h5", tmp_path / "ref.h5")


@needs_index
def test_saetraj_index_of_another_t_equals_the_reference(tmp_path):
    path = str(tmp_path / "s.h5")
    make_sweep.write_sweep(path, top_t=TOP_T, extra_top_t=(5,))
    build_index([path], str(tmp_path / "ref.h5"), top_t=5)
    done = subprocess.run([BINARY, "index", path, "--top-t", "5", "--out", str(tmp_path / "cpp.h5")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_index(tmp_path / "cpp.h5", tmp_path / "ref.h5")
    assert read_all(tmp_path / "cpp.h5")["@graphs_group"] == "graphs_T5"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    subprocess.run([BINARY, "demo", "--out", str(out), "--no-render", "--heads", "--orders", "2"], check=True,
                   capture_output=True)
    build_index([str(out / "demo_sweep.h5")], str(out / "ref.h5"))
    return out / "demo_sweep.h5", out / "ref.h5"


@needs_binary
def test_reference_on_the_demo_with_heads_and_orders_equals_brute_force(demo):
    sweep, ref = demo
    got = check_against_brute_force([sweep], ref, with_extras=True, fixture_has_ties=False)
    assert_traced_equals_csv(ref, [sweep.parent / "demo_sweep_graphs" / "T10" / "trajectories.csv"])
    assert got["occurrences/heads"].shape == (len(got["occurrences/prompt"]), 7)
    assert np.isfinite(got["features/loo_agree"]).all()


@needs_index
def test_saetraj_index_of_the_demo_equals_the_reference(demo, tmp_path):
    sweep, ref = demo
    sweep = str(sweep)
    done = subprocess.run([BINARY, "index", sweep, "--out", str(tmp_path / "cpp.h5")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_index(tmp_path / "cpp.h5", ref)
    with FeatureIndex.open(tmp_path / "cpp.h5") as index:
        assert index.has_heads and index.has_order
    # --top-t with /graphs's own T reads /graphs (saetraj graph never writes /graphs_T10 beside it).
    build_index([sweep], str(tmp_path / "ref10.h5"), top_t=10)
    done = subprocess.run([BINARY, "index", sweep, "--top-t", "10", "--out", str(tmp_path / "cpp10.h5")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_index(tmp_path / "cpp10.h5", tmp_path / "ref10.h5")
    assert read_all(tmp_path / "cpp10.h5")["@graphs_group"] == "graphs"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian package chromium is not installed "
                                                            "(.ci/setup-debian installs it)")
def test_feature_page_in_a_browser(plain, tmp_path):
    """Headless Chromium, offline, draws a feature page: the histogram's bars and the highlighted source tokens
    are in its DOM."""
    paths, _, index_path = plain
    _, features, _, _ = brute_force(paths)
    key = max(sorted(features), key=lambda k: len(features[k]))
    done = query(index_path, "html", "--out", tmp_path / "pages", f"{key[0]}:{key[1]}")
    assert done.returncode == 0, done.stderr
    page = done.stdout.split()[0]
    result = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"file://{page}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert dom.count('<mark class="source"') == 1 + min(len(features[key]), 10)   # legend + default 10 examples
    assert dom.count("<rect ") == max(o["distance_back"] for o in features[key]) + 1
    assert f"Layer {key[0]}, feature {key[1]}" in dom
