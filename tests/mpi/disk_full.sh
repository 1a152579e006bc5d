#!/usr/bin/env bash
# A write that fails as on a full disk (injected: SAETRAJ_TEST_FAIL_WRITE_AFTER_PROMPTS=RANK:PROMPTS makes
# that rank's writes fail with ENOSPC) stops every rank of mpirun -n 2 with a message that says what is
# wrong and what to do, exits non-zero, leaves a readable file holding the finished prompts, and --resume
# then gives the uninterrupted result. Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
source "$SRC/tests/mpi/fixture.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_fixture 3
write_corpus
sweep_args "$WORK/corpus.txt" --k 24 --top-t 6 --chunk-rows 40 --no-graphs
mpirun -n 1 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/ref.h5"

for spec in 1:2 0:1; do
  echo "== writes of rank ${spec%%:*} fail after ${spec##*:} prompt(s) (2 ranks), then resumed"
  out="$WORK/full-${spec%%:*}.h5"
  set +e
  SAETRAJ_TEST_FAIL_WRITE_AFTER_PROMPTS=$spec timeout 300 mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" \
    --out "$out" > "$WORK/full.log" 2>&1
  status=$?
  set -e
  cat "$WORK/full.log"
  [ "$status" -ne 124 ] || { echo "mpirun hung after a failed write"; exit 1; }
  [ "$status" -ne 0 ] || { echo "a sweep whose writes failed must exit non-zero"; exit 1; }
  grep -q "failed: No space left on device; the file system holding" "$WORK/full.log" ||
    { echo "the message does not say the disk is full"; exit 1; }
  grep -q "then run the same command with --resume" "$WORK/full.log" ||
    { echo "the message does not say how to resume"; exit 1; }
  /usr/bin/python3 - "$out" "${spec##*:}" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
done = list(f["prompts/done"][()])
n = int(sys.argv[2])
assert f.attrs["complete"] == 0, f.attrs["complete"]
assert done == [1] * n + [0] * (4 - n), done
print("file after the failed write: readable, complete=0, done =", done)
PY
  mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$out" --resume
  /usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/ref.h5" "$out"
done
echo "disk full (injected) on either rank: 2 passed, 0 failed"
