#!/usr/bin/env bash
# saetraj index (issue 16 §1) on the demo: the demo's sweep (--heads, --orders) and a second sweep of a
# small corpus with the same model and SAEs, indexed serially, under mpirun -n 2 and -n 3, and with batches
# (and windows) of 100, 30 and 50 rows: every dataset and attribute (when and how it was run aside) identical. Its counts
# add up to the sources' trajectory tables. Each bad input is refused with one line naming the file:
# not a sweep file, incomplete, no graph group, other k, the same file twice, --out an input, an existing
# --out, also under mpirun. Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
"$BIN" demo --no-render --heads --orders 4 --out demo > /dev/null 2>&1
printf '{"id": "a", "text": "Anna gave the book to Ben."}\n{"id": "b", "text": "Smith left the room."}\n{"id": "c", "text": "Mark gave flashlight to Max in the dark room."}\n' > corpus.jsonl
sweep=(sweep --model demo/fixtures/model --sae 'demo/fixtures/saes/layer_{layer}' --prompt-file corpus.jsonl
       --top-t 10 --heads --orders 4)
"$BIN" "${sweep[@]}" --k 32 --out more.h5 > /dev/null 2>&1
S=(demo/demo_sweep.h5 more.h5)
passed=0
"$BIN" index "${S[@]}" --out i1.h5 | grep -q "indexed 2 sweep file(s): 4 prompt(s)"
"$BIN" index "${S[@]}" --out i1_b1.h5 --batch-rows 100 --quiet > /dev/null
mpirun -n 2 --oversubscribe "$BIN" index "${S[@]}" --out i2.h5 --batch-rows 30 > /dev/null
mpirun -n 3 --oversubscribe "$BIN" index "${S[@]}" --out i3.h5 --batch-rows 50 > /dev/null
mpirun -n 3 --oversubscribe "$BIN" index "${S[@]}" --out i3_mem.h5 --memory-mb 1 > /dev/null
/usr/bin/python3 - i1.h5 i1_b1.h5 i2.h5 i3.h5 i3_mem.h5 <<'PY'
import sys, h5py, numpy as np
def content(path):
    out = {}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            if k not in ("created_utc", "command_line"):
                out["@" + k] = [str(x) for x in np.asarray(v).ravel()]
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                out[name] = (str(obj.dtype), obj.shape, [bytes(x) for x in data.ravel()] if data.dtype == object else data.tobytes())
                for k, v in obj.attrs.items():
                    out[name + "@" + k] = [str(x) for x in np.asarray(v).ravel()]
        f.visititems(visit)
    return out
first = content(sys.argv[1])
for other in sys.argv[2:]:
    c = content(other)
    assert sorted(c) == sorted(first), (other, sorted(set(c) ^ set(first)))
    for name in first:
        assert c[name] == first[name], (other, name)
with h5py.File(sys.argv[1], "r") as f, h5py.File("demo/demo_sweep.h5", "r") as a, h5py.File("more.h5", "r") as b:
    n = len(a["graphs/trajectories"]) + len(b["graphs/trajectories"])
    assert len(f["occurrences/prompt"]) == n and int(f["features/count"][()].sum()) == n
    assert f["occurrences/heads"].shape == (n, 7) and f["occurrences/order_values"].shape == (n, 6)
    assert (np.diff(f["features/start"][()]) == f["features/count"][()][:-1]).all()
    assert int(f["features/traced"][()].sum()) == int(f["occurrences/traced"][()].sum()) > 0
    assert sum(1 for e in f["features/explanation"][()] if e) > 0
print(f"index identical for {len(sys.argv) - 1} runs (1, 2, 3 ranks; batches of 100, 30, 50 rows and --memory-mb 1): {n} occurrences")
PY
passed=$((passed + 1))

# refused: each run must fail with the given line on stderr, and leave no --out behind
refused() {
  local want=$1; shift
  if "$@" --out bad.h5 > out.txt 2> err.txt; then echo "$* succeeded"; exit 1; fi
  grep -qF -- "$want" err.txt || { echo "$*: expected '$want', got:"; cat err.txt; exit 1; }
  [ ! -e bad.h5 ] || { echo "$* left bad.h5 behind"; exit 1; }
  passed=$((passed + 1))
}
refused "i1.h5 is an HDF5 file but not a saetraj sweep file" "$BIN" index i1.h5
cp more.h5 running.h5
/usr/bin/python3 -c "import h5py; f = h5py.File('running.h5', 'r+'); f.attrs['complete'] = 0"
refused "running.h5 is incomplete (3 of 3 prompts done, complete = 0); finish it with its sweep command and --resume, then index it" \
  "$BIN" index demo/demo_sweep.h5 running.h5
cp more.h5 nographs.h5
/usr/bin/python3 -c "import h5py; f = h5py.File('nographs.h5', 'r+'); del f['graphs']"
refused "nographs.h5 has no graph group /graphs; run \`saetraj graph nographs.h5\` first" "$BIN" index nographs.h5
"$BIN" "${sweep[@]}" --k 16 --out k16.h5 > /dev/null 2>&1
refused "k16.h5 differs from demo/demo_sweep.h5 in k: 16 here, 32 there" "$BIN" index demo/demo_sweep.h5 k16.h5
refused "saetraj index: more.h5 is given twice (also as more.h5)" "$BIN" index more.h5 demo/demo_sweep.h5 more.h5
refused "saetraj index: more.h5 is given twice" mpirun -n 2 --oversubscribe "$BIN" index more.h5 more.h5
if "$BIN" index more.h5 --out more.h5 2> err.txt; then echo "index --out an input succeeded"; exit 1; fi
grep -qF "saetraj index: --out more.h5 is also one of the inputs" err.txt || { cat err.txt; exit 1; }
passed=$((passed + 1))
if "$BIN" index "${S[@]}" --out i1.h5 2> err.txt; then echo "index over an existing file succeeded"; exit 1; fi
grep -qF "saetraj index: i1.h5 already exists; pass --overwrite to replace it, or choose another --out" err.txt \
  || { cat err.txt; exit 1; }
"$BIN" index "${S[@]}" --out i1.h5 --overwrite > /dev/null
passed=$((passed + 1))
"$BIN" index --help | grep -q "SWEEP.h5 \[MORE.h5 ...\] --out INDEX.h5"
echo "index: $passed passed, 0 failed"
