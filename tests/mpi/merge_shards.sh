#!/usr/bin/env bash
# saetraj merge (issue 16 part 2): three shards of a corpus (one prompt of it skipped), merged in any order,
# serially and under mpirun -n 2, equal dataset by dataset to one unsharded sweep of the corpus
# (compare_sweeps.py); the --heads split, the --orders views and the --mlp-transcoder path included. Each bad set of shards is refused with one line
# naming the file: other settings, overlapping, missing, incomplete, not a shard.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
source "$SRC/tests/mpi/fixture.sh"
make_fixture 2 --transcoders
write_corpus
printf '{"id": "a", "text": "Anna gave the book to Ben."}\n{"id": "b", "text": ""}\n{"id": "c", "text": "Smith left the room."}\n{"id": "d", "text": "Mark gave flashlight to Max."}\n{"id": "e", "text": "Numbers like 2024 are digits."}\n' > corpus.jsonl
# --orders too: a prompt's sampled orders are seeded by its position in the whole input, so shards sample
# what the unsharded sweep samples.
sweep_args corpus.jsonl --k 16 --top-t 5 --heads --orders 4 --order-seed 3
"$BIN" "${common[@]}" --out full.h5 > /dev/null 2>&1
for i in 0 1 2; do "$BIN" "${common[@]}" --shard "$i/3" --out "s$i.h5" > /dev/null 2>&1; done
COMPARE=$SRC/tests/mpi/compare_sweeps.py
passed=0
"$BIN" merge s0.h5 s1.h5 s2.h5 --out merged.h5
/usr/bin/python3 "$COMPARE" full.h5 merged.h5 || exit 1; passed=$((passed + 1))
"$BIN" merge s2.h5 s0.h5 s1.h5 --out merged_any_order.h5 > /dev/null
/usr/bin/python3 "$COMPARE" full.h5 merged_any_order.h5 > /dev/null || exit 1; passed=$((passed + 1))
mpirun -n 2 --oversubscribe "$BIN" merge s1.h5 s2.h5 s0.h5 --out merged_mpi.h5 > /dev/null
/usr/bin/python3 "$COMPARE" full.h5 merged_mpi.h5 > /dev/null || exit 1; passed=$((passed + 1))
# --mlp-transcoder: /mlp (format version 3) is copied too.
sweep_args corpus.jsonl --k 16 --top-t 5 --no-graphs --mlp-transcoder "$WORK/fx/transcoders/layer_{layer}"
"$BIN" "${common[@]}" --out mlp_full.h5 > /dev/null 2>&1
for i in 0 1 2; do "$BIN" "${common[@]}" --shard "$i/3" --out "mlp_s$i.h5" > /dev/null 2>&1; done
"$BIN" merge mlp_s1.h5 mlp_s0.h5 mlp_s2.h5 --out mlp_merged.h5 > /dev/null
/usr/bin/python3 "$COMPARE" mlp_full.h5 mlp_merged.h5 || exit 1
/usr/bin/python3 -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r"); assert "mlp/slots" in f and f.attrs["format_version"] == 3' mlp_merged.h5
passed=$((passed + 1))

# refused: each run must fail with the given line on stderr
refused() {
  local want=$1; shift
  if "$BIN" merge "$@" --out bad.h5 > out.txt 2> err.txt; then echo "merge $* succeeded"; exit 1; fi
  grep -qF -- "$want" err.txt || { echo "merge $*: expected '$want', got:"; cat err.txt; exit 1; }
  [ ! -e bad.h5 ] || { echo "merge $* left bad.h5 behind"; exit 1; }
  passed=$((passed + 1))
}
sweep_args corpus.jsonl --k 8 --top-t 5 --heads --orders 4 --order-seed 3
"$BIN" "${common[@]}" --shard 1/3 --out s1_k8.h5 > /dev/null 2>&1
sweep_args corpus.jsonl --k 16 --top-t 5 --heads --orders 4 --order-seed 3
refused "s1_k8.h5 was made with other settings than s0.h5: k is 16 there, 8 here" s0.h5 s1_k8.h5 s2.h5
cp s0.h5 s0_copy.h5
refused "s0_copy.h5 and s0.h5 are both shard 0/3 (overlapping prompts)" s0.h5 s1.h5 s2.h5 s0_copy.h5
refused "shard 1/3 is missing: its prompts would be missing from bad.h5; give all 3 shard files" s0.h5 s2.h5
cp s1.h5 s1_running.h5
/usr/bin/python3 -c "import h5py; f = h5py.File('s1_running.h5', 'r+'); f.attrs['complete'] = 0"
refused "s1_running.h5 is incomplete (1 of 1 prompts done, complete = 0); finish it with its sweep command and --resume" \
  s0.h5 s1_running.h5 s2.h5
refused "full.h5 is not a shard (it was swept without --shard I/N)" full.h5
"$BIN" "${common[@]}" --shard 0/2 --out h0_of_2.h5 > /dev/null 2>&1
refused "h0_of_2.h5 is shard 0/2, but s0.h5 is one of 3 shards" s0.h5 s1.h5 s2.h5 h0_of_2.h5
if "$BIN" merge s0.h5 s1.h5 s2.h5 --out merged.h5 2> err.txt; then echo "merge over an existing file succeeded"; exit 1; fi
grep -qF "saetraj merge: merged.h5 already exists; pass --overwrite to replace it, or choose another --out" err.txt \
  || { cat err.txt; exit 1; }
"$BIN" merge s0.h5 s1.h5 s2.h5 --out merged.h5 --overwrite > /dev/null
/usr/bin/python3 "$COMPARE" full.h5 merged.h5 > /dev/null || exit 1
passed=$((passed + 1))
echo "merge: $passed passed, 0 failed"
