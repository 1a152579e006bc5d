#!/usr/bin/env bash
# The sweep's output, head split included, is identical for 1, 2 and 3 ranks (and resumes to the same content after an
# interruption). Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
source "$SRC/tests/mpi/fixture.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_fixture 3
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
echo "identical across ranks, after resume and after a killed rank: 3 passed, 0 failed"
