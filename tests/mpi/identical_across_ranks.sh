#!/usr/bin/env bash
# The sweep's output, head split and MLP path included, is identical for 1, 2 and 3 ranks (and resumes to the
# same content after an interruption). Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
source "$SRC/tests/mpi/fixture.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_fixture 3 --transcoders
cat > "$WORK/corpus.txt" <<'TXT'
The final correct answer: Max, Mark and Smith are in the empty dark room. Smith left. Mark gave flashlight to
Anna gave the book to Ben.

Numbers like 2024 and 42 are written with digits.
Smith left.
TXT
# --heads, --orders: the head split (/heads) and the order-free views (/order) must be identical too, and resume.
sweep_args "$WORK/corpus.txt" --k 24 --top-t 6 --chunk-rows 40 --no-graphs --heads --orders 8 --order-seed 3
for n in 1 2 3; do
  echo "== $n rank(s)"
  mpirun -n "$n" --oversubscribe "$BIN" "${common[@]}" --out "$WORK/s$n.h5"
done
/usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/s1.h5" "$WORK/s2.h5" "$WORK/s3.h5"

# --mlp-transcoder: the MLP path (/mlp, format version 3) is identical too, and leaves /evolution as it was.
echo "== --mlp-transcoder, 1, 2, 3 and 4 ranks (4: two ranks share a layer's queries)"
sweep_args "$WORK/corpus.txt" --k 24 --top-t 6 --chunk-rows 40 --no-graphs --mlp-transcoder "$WORK/fx/transcoders/layer_{layer}"
for n in 1 2 3 4; do
  mpirun -n "$n" --oversubscribe "$BIN" "${common[@]}" --out "$WORK/m$n.h5"
done
/usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/m1.h5" "$WORK/m2.h5" "$WORK/m3.h5" "$WORK/m4.h5"
/usr/bin/python3 - "$WORK/m1.h5" "$WORK/s1.h5" <<'PY'
import sys, h5py, numpy as np
m, s = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert m.attrs["format_version"] == 3 and s.attrs["format_version"] == 2
for name in ("evolution/indices", "evolution/values", "readout/token_ids"):
    assert np.array_equal(m[name][()], s[name][()]), name
steps, slots = m["mlp/steps"][()], m["mlp/slots"][()]
n_queries = int(sum(n - 1 for n in m["prompts/n_tokens"][()]))
assert steps.shape == (3, n_queries) and (steps >= 3).all(), steps
assert (slots[..., 0] >= 1).sum() > 0 and (slots[..., 1] == 0).sum() > 0
print("/mlp: every query decomposed, newcomers attributed to transcoder features; /evolution unchanged")
PY
sweep_args "$WORK/corpus.txt" --k 24 --top-t 6 --chunk-rows 40 --no-graphs --heads --orders 8 --order-seed 3

echo "== interrupted after 2 prompts (2 ranks), then resumed"
set +e
SAETRAJ_TEST_STOP_AFTER_PROMPTS=2 mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/r.h5"
status=$?
set -e
[ "$status" -ne 0 ] || { echo "an interrupted sweep must exit non-zero"; exit 1; }
/usr/bin/python3 - "$WORK/r.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
done = list(f["prompts/done"][()])
assert f.attrs["complete"] == 0, f.attrs["complete"]
assert done == [1, 1, 0, 0], done
print("interrupted file: complete=0, done =", done)
PY
mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/r.h5" --resume
/usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/s1.h5" "$WORK/r.h5"
echo "== rank 1 killed (SIGKILL) after 2 prompts (2 ranks), then resumed"
rm -f "$WORK/k.h5"
set +e
SAETRAJ_TEST_KILL_RANK_AFTER_PROMPTS=1:2 mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/k.h5" \
  > "$WORK/k.log" 2>&1
status=$?
set -e
[ "$status" -ne 0 ] || { echo "a sweep that lost a rank must exit non-zero"; exit 1; }
/usr/bin/python3 - "$WORK/k.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
done = list(f["prompts/done"][()])
assert f.attrs["complete"] == 0, f.attrs["complete"]
assert done[:2] == [1, 1] and done[3] == 0, done
print("file after a killed rank: readable, complete=0, done =", done)
PY
mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/k.h5" --resume
/usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/s1.h5" "$WORK/k.h5"
echo "identical across ranks (with and without --mlp-transcoder), after resume and after a killed rank: 4 passed, 0 failed"
