"""Reading sweep files: every accessor against what the helper wrote, and every broken file."""

import shutil

import h5py
import numpy as np
import pytest

import make_sweep
from saetraj_analysis import Sweep, SweepFormatError, SweepInputError
from saetraj_analysis.evolution_plot import rank_paths
from saetraj_analysis.io import rows_of_prompt
from saetraj_analysis import style


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("io") / "sweep.h5"
    truth = make_sweep.write_sweep(path, extra_top_t=(5,))
    return path, truth


def broken_copy(written, tmp_path, change):
    """A copy of the good file with `change(h5file)` applied."""
    path = tmp_path / "broken.h5"
    shutil.copy(written[0], path)
    with h5py.File(path, "r+") as h5:
        change(h5)
    return path


def test_rows_of_prompt_matches_spec_count():
    assert [rows_of_prompt(n) for n in (2, 3, 9)] == [3, 7, 52]


def test_prompts_tokens_and_layers(written):
    path, truth = written
    with Sweep(path) as sweep:
        assert sweep.n_prompts == 3
        assert list(sweep.layers) == [3, 4, 5, 6]
        assert sweep.k == 8
        assert sweep.tokens(1) == ["<bos>", "Pay", " $5", " for", " </b>", " tea"]
        assert sweep.prompt_text(0) == "The final answer: Max gave flashlight to"
        assert sweep.n_tokens(2) == 5
        assert sweep.is_done(2)


def test_evolution_blocks_are_the_written_tables(written):
    path, truth = written
    with Sweep(path) as sweep:
        for (p, layer, q), block in truth.blocks.items():
            got = sweep.evolution_block(p, layer, q)
            assert got.shape == (q + 2, 8)
            np.testing.assert_array_equal(got, block)
        values = sweep.evolution_values(0, 4, 3)
        assert values[0, 0] == pytest.approx(1.0)
        assert values[0, 1] == pytest.approx(0.5)


def test_readout_and_explanations(written):
    path, truth = written
    with Sweep(path) as sweep:
        readout = sweep.readout(2, 5)
        assert [(r.text, round(r.prob, 6)) for r in readout] == [
            (t, round(prob, 6)) for t, prob in truth.readout[(2, 5)]]
        assert readout[0].text == " rd2L5n0"
        assert sweep.has_explanations
        assert sweep.explanation(4, 7) == "concept L4 f7 &co"
        assert sweep.explanation(4, 6) is None


def test_graph_tables_by_prompt_and_by_t(written):
    path, truth = written
    with Sweep(path) as sweep:
        graphs = sweep.graphs()
        assert (graphs.group, graphs.top_t) == ("graphs", 3)
        mine = graphs.for_prompt(1)
        assert mine.traced_edges.tolist() == truth.traced_edges[truth.traced_edges["prompt"] == 1].tolist()
        assert mine.trajectories.tolist() == truth.trajectories[truth.trajectories["prompt"] == 1].tolist()
        assert len(mine.edges) == np.count_nonzero(truth.edges["prompt"] == 1)
        assert sweep.available_top_t() == [3, 5]
        assert sweep.graphs(5).group == "graphs_T5"
        with pytest.raises(SweepInputError,
                           match=r"no graphs built with T=7; the file holds graphs for T=3, 5"):
            sweep.graphs(7)


def test_bad_requests_name_what_exists(written):
    with Sweep(written[0]) as sweep:
        with pytest.raises(SweepInputError,
                           match=r"layer 9 was not analysed; analysed layers are 3, 4, 5, 6"):
            sweep.layer_index(9)
        with pytest.raises(SweepInputError, match=r"prompt 3 does not exist; the file holds prompts 0\.\.2"):
            sweep.tokens(3)
        with pytest.raises(SweepInputError, match=r"query 5 is out of range for prompt 2 \(5 tokens"):
            sweep.evolution_block(2, 3, 5)


def test_file_without_explanations(tmp_path):
    path = tmp_path / "plain.h5"
    make_sweep.write_sweep(path, explanations=False)
    with Sweep(path) as sweep:
        assert not sweep.has_explanations
        assert sweep.explanation(4, 7) is None


@pytest.mark.parametrize("change, message", [
    (lambda h5: h5.attrs.__setitem__("format", "other"),
     r"attribute 'format' is 'other'; expected 'saetraj-sweep'"),
    (lambda h5: h5.attrs.__setitem__("format_version", 4), r"attribute 'format_version' is 4; expected 1 to 3"),
    (lambda h5: h5.attrs.__delitem__("layers"), r"missing attribute 'layers' on /"),
    (lambda h5: h5.__delitem__("evolution/values"), r"missing dataset /evolution/values"),
    (lambda h5: h5.__delitem__("graphs"), r"missing group /graphs"),
    (lambda h5: h5.create_dataset("graphs/trajectory_heads", data=np.zeros((1, 5), np.float32)),
     r"/graphs/trajectory_heads has shape \(1, 5\); expected \(\d+, \*\)"),
    (lambda h5: h5.create_dataset("graphs/trajectory_order", data=np.zeros((1, 4), np.int32)),
     r"/graphs/trajectory_order has shape \(1, 4\); expected \(\d+, 4\)"),
    (lambda h5: h5.attrs.__setitem__("k", 9),
     r"/evolution/indices has shape \(4, \d+, 8\); expected \(4, \d+, 9\)"),
    (lambda h5: (h5.__delitem__("prompts/text"), h5.create_dataset("prompts/text", data=[1, 2, 3])),
     r"/prompts/text has dtype int64; expected a string dataset"),
    (lambda h5: (h5.__delitem__("graphs/edges"),
                 h5.create_dataset("graphs/edges", data=np.zeros(2, dtype=[("prompt", np.int32)]))),
     r"/graphs/edges should be a 1-D table with fields prompt, length, .*; "
     r"found shape \(2,\) with fields prompt"),
])
def test_broken_files_are_refused(written, tmp_path, change, message):
    path = broken_copy(written, tmp_path, change)
    with pytest.raises(SweepFormatError, match=message) as err:
        Sweep(path)
    assert str(path) in str(err.value)


def test_rows_out_of_order_are_reported(written, tmp_path):
    def shift(h5):
        steps = h5["evolution/row_step"][()]
        steps[0], steps[1] = steps[1], steps[0]
        h5["evolution/row_step"][...] = steps

    with Sweep(broken_copy(written, tmp_path, shift)) as sweep:
        with pytest.raises(SweepFormatError,
                           match=r"evolution rows 0\.\.2 of prompt 0 should be query 1, steps 0\.\.2; "
                                 r"found queries \[1, 1, 1\] and steps \[1, 0, 2\]"):
            sweep.evolution_block(0, 3, 1)


def test_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    with pytest.raises(SweepFormatError, match=r"notes\.h5: cannot open as an HDF5 file"):
        Sweep(path)


def test_hdf5_file_that_is_not_a_sweep_is_named_so(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=[1, 2, 3])
    with pytest.raises(SweepFormatError) as err:
        Sweep(path)
    assert str(err.value) == (f"{path}: an HDF5 file but not a saetraj sweep file (no root attribute format = "
                              f"\"saetraj-sweep\"); give a sweep file written by saetraj sweep")


def test_missing_and_truncated_files_are_named_so(tmp_path):
    with pytest.raises(SweepFormatError, match=r"nothing\.h5: no such file; check the path$"):
        Sweep(tmp_path / "nothing.h5")
    whole = tmp_path / "whole.h5"
    with h5py.File(whole, "w") as h5:
        h5.create_dataset("x", data=np.zeros(4096))
    data = whole.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SweepFormatError, match=rf"cannot open as an HDF5 file \(truncated: {len(data) // 2} of "
                                               rf"{len(data)} bytes\)"):
        Sweep(cut)


def test_rank_paths_follow_each_feature():
    paths = rank_paths(np.array([[1, 2, -1], [2, 5, 1]]))
    assert sorted(paths) == [1, 2, 5]
    np.testing.assert_array_equal(paths[1], [0, 2])
    np.testing.assert_array_equal(paths[2], [1, 0])
    np.testing.assert_array_equal(paths[5], [np.nan, 1])


def test_edge_style_scale():
    assert style.rank_colour(0, 3) == style.RED.lower()
    assert style.rank_colour(3, 3) == style.BLUE.lower()
    assert style.rank_colour(9, 3) == style.BLUE.lower()
    assert style.edge_colour(0, -1, 3) == style.GOLD
    assert style.edge_colour(2, 0, 3) == style.RED.lower()
    widths = [style.edge_width(n) for n in (0, 1, 2, 8)]
    assert widths == sorted(widths) and len(set(widths)) == 4
    assert style.mpl_label(" $5") == r" \$5"
    assert style.token_label("\n") == "\u21b5"
    assert style.token_label(" ") == "' '"
