#!/usr/bin/env bash
# The README's demo, end to end under mpirun with 2 ranks: fixtures, sweep, graphs, explanations, PNG,
# HTML and a summary naming where the files are. Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
rm -rf "$WORK" && mkdir -p "$WORK"
mpirun -n 2 --oversubscribe "$BIN" demo --out "$WORK/demo" --analysis-dir "$SRC/analysis" | tee "$WORK/log"
grep -q "ranks:          2" "$WORK/log"
for f in demo_sweep.h5 demo_sweep_graphs/T10/prompt_0000/traced.json demo_sweep_graphs/T10/prompt_0000/traced.graphml \
         figures/prompt_0000/traced_graph.png figures/prompt_0000/traced_graph.html \
         figures/prompt_0000/evolution_layer_00.png figures/corpus_summary.png \
         demo_sweep_graphs/T10/trajectories.csv demo_sweep_graphs/T10/attribution_graphs/demo_sweep-T10-p0000.json \
         demo_sweep_graphs/T10/attribution_graphs/graph-metadata.json; do
  [ -s "$WORK/demo/$f" ] || { echo "missing $f"; exit 1; }
done
/usr/bin/python3 - "$WORK/demo/demo_sweep.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["complete"] == 1
assert len(f["graphs/traced_edges"]) > 0
assert len(f["explanations/text"]) > 0
n = int(f["prompts/n_tokens"][0])
assert f["evolution/indices"].shape == (4, (n - 1) * (n + 4) // 2, 32)
print("demo file checked:", n, "tokens,", len(f["graphs/traced_edges"]), "traced edges")
PY
echo "demo under 2 ranks: 1 passed, 0 failed"
