#!/usr/bin/env bash
# SIGINT (Ctrl-C) and SIGTERM (scancel, a job's time limit) sent to mpirun in the middle of a two-rank
# sweep: every rank stops after the prompt it is on, the exit status is non-zero, the message says how
# to continue, the file stays readable with complete = 0 and the finished prompts marked done, and
# --resume then gives the uninterrupted result. Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
source "$SRC/tests/mpi/fixture.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_fixture 2
# The sweep pauses after 3 prompts (SAETRAJ_TEST_PAUSE) and the signal is sent while it waits there, so it
# lands mid-sweep whatever the machine's speed.
for i in $(seq 1 12); do echo "Prompt $i: Mark gave the flashlight to Max in the dark room."; done > "$WORK/corpus.txt"
sweep_args "$WORK/corpus.txt" --k 8 --top-t 4 --no-graphs
mpirun -n 1 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/ref.h5" > /dev/null 2>&1

for sig in INT TERM; do
  echo "== SIG$sig to mpirun -n 2 mid-sweep, then resumed"
  out="$WORK/$sig.h5"
  pause="$WORK/pause.$sig" && rm -rf "$pause" && mkdir -p "$pause"
  SAETRAJ_TEST_PAUSE="3:$pause" mpirun -n 2 --oversubscribe -x SAETRAJ_TEST_PAUSE "$BIN" "${common[@]}" \
      --out "$out" > "$WORK/$sig.log" 2>&1 &
  pid=$!
  # Both ranks wait at the pause point (after 3 of 12 prompts) when the signal arrives; a rank stops waiting
  # when the signal reaches it. (Should it never, the pause ends after a minute and the check below fails.)
  until [ -e "$pause/paused.0" ] && [ -e "$pause/paused.1" ]; do
    kill -0 "$pid" 2> /dev/null || { cat "$WORK/$sig.log"; echo "the sweep ended before the pause point"; exit 1; }
    sleep 0.05
  done
  kill "-$sig" "$pid"
  (sleep 60 && touch "$pause/continue") > /dev/null 2>&1 &
  watchdog=$!
  set +e
  wait "$pid"
  status=$?
  pkill -P "$watchdog" 2> /dev/null; kill "$watchdog" 2> /dev/null
  set -e
  cat "$WORK/$sig.log"
  [ "$status" -ne 0 ] || { echo "a sweep stopped by SIG$sig must exit non-zero"; exit 1; }
  grep -q "Continue with the same command plus --resume" "$WORK/$sig.log" ||
    { echo "the message does not say how to continue"; exit 1; }
  /usr/bin/python3 - "$out" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
done = f["prompts/done"][()]
assert f.attrs["complete"] == 0, f.attrs["complete"]
n = int(done.sum())
assert n == 3 and list(done) == [1] * n + [0] * (len(done) - n), list(done)
print(f"file after the signal: readable, complete=0, {n}/{len(done)} prompts done")
PY
  mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$out" --resume > /dev/null 2>&1
  /usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/ref.h5" "$out"
done
echo "SIGINT and SIGTERM mid-sweep: 2 passed, 0 failed"
