#!/usr/bin/env bash
# A real full disk, on a small tmpfs (needs root and permission to mount; exits 77, "skipped", otherwise).
# 1. The file system is too small for the new sweep file: every rank stops with a message saying the disk
#    is full, before anything is written, and the same command succeeds once there is room.
# 2. The file system fills up while the sweep runs (a filler file takes every free byte after the file was
#    created and its space reserved): the prompts are computed into the reserved space, finishing the file
#    is refused, the file stays readable with every prompt done and complete = 0, and --resume after freeing
#    space finishes it with the uninterrupted result.
# Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
source "$SRC/tests/mpi/fixture.sh"
rm -rf "$WORK" && mkdir -p "$WORK/small"
if ! mount -t tmpfs -o size=64k saetraj-test "$WORK/small" 2> "$WORK/mount.log"; then
  echo "skipped: cannot mount a tmpfs here ($(cat "$WORK/mount.log"))"
  exit 77
fi
trap 'umount "$WORK/small" 2> /dev/null || true' EXIT
make_fixture 3
write_corpus
sweep_args "$WORK/corpus.txt" --k 24 --top-t 6 --chunk-rows 40 --no-graphs
mpirun -n 1 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/ref.h5"
out="$WORK/small/s.h5"

expect_failure() {  # $1: log file, then grep patterns the message must hold
  local log=$1 status=$2; shift 2
  cat "$log"
  [ "$status" -ne 124 ] || { echo "mpirun hung on a full disk"; exit 1; }
  [ "$status" -ne 0 ] || { echo "a sweep on a full disk must exit non-zero"; exit 1; }
  for pattern in "$@"; do grep -q -- "$pattern" "$log" || { echo "message lacks: $pattern"; exit 1; }; done
}

echo "== 1. the new file does not fit in 64 KiB"
set +e
timeout 300 mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$out" > "$WORK/1.log" 2>&1
status=$?
set -e
expect_failure "$WORK/1.log" "$status" "the sweep file $out (its evolution tables are reserved at creation) needs about" \
  "free: the disk is (nearly) full. Free space or choose an --out on another file system"
[ ! -e "$out" ] || { echo "the partial file was left behind"; exit 1; }
mount -o remount,size=64m "$WORK/small"
mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$out"
/usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/ref.h5" "$out"
rm -f "$out"

echo "== 2. the disk fills up after the file was created"
set +e
SAETRAJ_TEST_STOP_AFTER_PROMPTS=0 mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$out" > /dev/null 2>&1
dd if=/dev/zero of="$WORK/small/filler" bs=4k status=none 2> /dev/null
timeout 300 mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$out" --resume > "$WORK/2.log" 2>&1
status=$?
set -e
expect_failure "$WORK/2.log" "$status" "finishing the sweep file $out (its readout token strings) needs about" \
  "has 0 B free: the disk is (nearly) full" "free space, then run the same command with --resume"
/usr/bin/python3 - "$out" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
done = list(f["prompts/done"][()])
assert f.attrs["complete"] == 0, f.attrs["complete"]
assert done == [1, 1, 1, 1], done
print("file on the full disk: readable, complete=0, done =", done)
PY
rm "$WORK/small/filler"
mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$out" --resume
/usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/ref.h5" "$out"
echo "disk full on a real (tmpfs) file system: 2 passed, 0 failed"
