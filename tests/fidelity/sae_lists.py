"""Top-k active lists (SPEC 1.2) from full activation tables, and the comparison of saetraj's lists with them
that tolerates only genuine near-ties. Shared by test_saes.py and test_method.py."""
import numpy as np


def active_topk(acts, k):
    """acts [rows, d_sae] -> (indices int32 [rows, k], values float32 [rows, k]): activation > 0, sorted by
    activation descending, ties by lower index, padded with -1 / 0."""
    acts = np.asarray(acts, dtype=np.float32)
    rows = acts.shape[0]
    indices = np.full((rows, k), -1, dtype=np.int32)
    values = np.zeros((rows, k), dtype=np.float32)
    for r in range(rows):
        active = np.flatnonzero(acts[r] > 0)
        order = np.lexsort((active, -acts[r, active]))[:k]
        chosen = active[order]
        indices[r, :len(chosen)] = chosen
        values[r, :len(chosen)] = acts[r, chosen]
    return indices, values


def compare_lists(ours_i, ours_v, ref_i, ref_v, pre, boundary, tol):
    """Holds saetraj's lists to the reference's, row by row. A row agrees exactly (same indices, values within
    tol), or differs only by near-ties: at every position where the indices differ, either both features'
    reference pre-activations `pre` lie within tol of each other (two features in swapped order, or
    swapped across the cut of k), or the feature one side has and the other lacks lies within tol of its
    activity boundary (0, or the JumpReLU threshold given per feature in `boundary`). Returns
    (exact_rows, tie_rows); raises AssertionError naming the first row that agrees neither way."""
    exact = ties = 0
    for r in range(ref_i.shape[0]):
        si, sv, ri, rv = ours_i[r], ours_v[r], ref_i[r], ref_v[r]
        same = si == ri
        if same.all():
            worst = float(np.abs(sv - rv).max())
            assert worst <= tol, f"row {r}: same features, values differ by {worst:.3g} (tol {tol:.3g})"
            exact += 1
            continue
        worst = float(np.abs(sv[same] - rv[same]).max(initial=0.0))
        assert worst <= tol, f"row {r}: values of the shared ranks differ by {worst:.3g} (tol {tol:.3g})"
        for p in np.flatnonzero(~same):
            fs, fr = int(si[p]), int(ri[p])
            if fs >= 0:
                assert abs(sv[p] - pre[r, fs]) <= tol, f"row {r}: feature {fs}'s value {sv[p]} is not its activation"
            if fs >= 0 and fr >= 0:
                ok = abs(pre[r, fs] - pre[r, fr]) <= tol
            else:
                f = fs if fs >= 0 else fr
                ok = abs(pre[r, f] - boundary[f]) <= tol
            assert ok, (f"row {r}, rank {p}: saetraj has feature {fs} ({sv[p]:.6g}), the reference {fr} "
                        f"({rv[p]:.6g}); not a tie within {tol:.3g}.\n saetraj:   {si.tolist()}\n"
                        f" reference: {ri.tolist()}")
        ties += 1
    return exact, ties
