#!/usr/bin/env bash
# The README's demo, end to end under mpirun with 2 ranks: fixtures, sweep, graphs, explanations, PNG,
# HTML and a summary naming where the files are. Then the same demo with --mlp-transcoder (no pictures): random
# transcoders next to the fixtures, a format_version 3 file with /mlp whose /evolution equals the plain demo's,
# traced.json's metadata.mlp_path, and the summary line. Arguments: saetraj binary, a work folder, the source tree.
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
assert f.attrs["format_version"] == 2 and "mlp" not in f
print("demo file checked:", n, "tokens,", len(f["graphs/traced_edges"]), "traced edges")
PY
mv "$WORK/demo/demo_sweep.h5" "$WORK/plain.h5"
mpirun -n 2 --oversubscribe "$BIN" demo --no-render --mlp-transcoder --out "$WORK/demo" > "$WORK/log_mlp" 2> "$WORK/err_mlp" \
  || { cat "$WORK/err_mlp"; exit 1; }
grep -q "^MLP path:       $WORK/demo/fixtures/transcoders/layer_{layer} (random SAE-Lens skip transcoders" "$WORK/log_mlp"
for l in 0 1 2 3; do [ -s "$WORK/demo/fixtures/transcoders/layer_$l/cfg.json" ] || { echo "missing transcoder $l"; exit 1; }; done
/usr/bin/python3 - "$WORK/demo/demo_sweep.h5" "$WORK/plain.h5" "$WORK/demo/demo_sweep_graphs/T10/prompt_0000/traced.json" <<'PY'
import json, sys, h5py, numpy as np
f, plain = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert f.attrs["complete"] == 1 and f.attrs["format_version"] == 3
assert "mlp_transcoder" in json.loads(f.attrs["config"])
n = int(f["prompts/n_tokens"][0])
assert f["mlp/final_indices"].shape == (4, n - 1, 32), f["mlp/final_indices"].shape
for name in ("indices", "values"):
    assert np.array_equal(f["evolution/" + name][()], plain["evolution/" + name][()]), name
path = json.load(open(sys.argv[3]))["metadata"]["mlp_path"]
assert len(path) > 0 and all(1 <= v["token"] < n and 0 <= v["layer"] < 4 and v["features"] for v in path)
print("demo --mlp-transcoder checked:", len(path), "MLP vertices in traced.json")
PY
echo "demo under 2 ranks: 2 passed, 0 failed"
