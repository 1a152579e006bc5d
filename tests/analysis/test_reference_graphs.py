"""Hand-worked checks of the test helper's reference implementation of SPEC 1.3-1.5, so that the sweep
files the other tests build carry graph tables that follow the method."""

import numpy as np

import make_sweep

# Query q = 2 (steps 0..3), k = 4. Feature 5 enters at step 1 (source 0), 6 at step 2 (source 1), 7 at
# step 3 (source 2); at the last step 7, 6, 5, 1 hold ranks 0, 1, 2, 3.
BLOCK = np.array([[1, 2, 3, -1],
                  [1, 5, 2, 3],
                  [6, 1, 2, 5],
                  [7, 6, 5, 1]], dtype=np.int32)


def still(q, features=(1, 2, 3)):
    """An evolution table with no newcomers."""
    return np.array([list(features) + [-1]] * (q + 2), dtype=np.int32)


def test_trajectories_keep_newcomers_up_to_final_position_t():
    assert make_sweep.trajectories(BLOCK, 1) == [(1, 6, 1), (2, 7, 0)]
    assert make_sweep.trajectories(BLOCK, 2) == [(0, 5, 2), (1, 6, 1), (2, 7, 0)]
    assert make_sweep.trajectories(BLOCK, 0) == [(2, 7, 0)]


def test_newcomer_missing_from_last_step_is_no_trajectory():
    block = np.array([[1, -1], [1, 4], [1, -1]], dtype=np.int32)
    assert make_sweep.trajectories(block, 5) == []


def test_length_graph_spine_source_edges_and_vertical_edge():
    blocks = {(3, 2): still(2), (4, 2): BLOCK}
    assert make_sweep.length_graph(blocks, [3, 4], 3, 1) == [
        (0, 3, 0, 4, 0, -1), (1, 3, 2, 4, 1, 1), (2, 3, 2, 4, 1, 0)]
    # With T = 1 but feature 7 absent the last token sends nothing: a vertical edge is added.
    no_last = BLOCK.copy()
    no_last[3] = [1, 6, 5, 2]
    blocks[(4, 2)] = no_last
    assert make_sweep.length_graph(blocks, [3, 4], 3, 1) == [
        (0, 3, 0, 4, 0, -1), (1, 3, 2, 4, 1, 1), (2, 3, 2, 4, 0, -1)]


def test_traced_graph_follows_sources_back_over_lengths():
    layers = [3, 4, 5]
    blocks = {(layer, q): still(q) for layer in layers for q in (1, 2)}
    # (5, q=2): feature 9 arrives after source token 1 and ends at rank 0.
    blocks[(5, 2)] = np.array([[1, 2, 3, -1], [1, 2, 3, -1], [9, 1, 2, 3], [9, 1, 2, 3]], dtype=np.int32)
    # (4, q=1): feature 8 arrives from source 0, which the traced graph leaves out.
    blocks[(4, 1)] = np.array([[1, 2, 3, -1], [8, 1, 2, 3], [8, 1, 2, 3]], dtype=np.int32)
    traced = make_sweep.traced_graph(blocks, layers, 3, 1)
    assert sorted(traced) == sorted([(1, 4, 2, 5, 1, 0), (2, 4, 2, 5, 0, -1), (2, 3, 2, 4, 0, -1),
                                     (1, 3, 1, 4, 0, -1)])
