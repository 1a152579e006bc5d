#!/usr/bin/env bash
# Gemma-2 end to end under mpirun with 2 ranks: the synthetic Gemma-2 fixture (BF16 shards, SentencePiece,
# Gemma Scope-layout SAEs), a sweep that takes its SAEs from the release tree (--gemmascope-root), and the
# demo with --arch gemma2 (explanations attached). Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
rm -rf "$WORK" && mkdir -p "$WORK"
"$BIN" synth --arch gemma2 --out "$WORK/fx" --layers 2 --d-model 32 --heads 4 --d-mlp 64 --d-sae 128 \
  --vocab 320 --sliding-window 6 | tee "$WORK/synth.log"
grep -q "Gemma Scope layout, width 128" "$WORK/synth.log"
if "$BIN" synth --arch bert --out "$WORK/bad" 2> "$WORK/bad.log"; then echo "--arch bert accepted"; exit 1; fi
grep -q -- '--arch must be gpt2, gemma2, gemma3, llama or qwen3, got "bert"' "$WORK/bad.log"
if "$BIN" sweep --model "$WORK/fx/saetraj-demo-gemma2" --gemmascope-root "$WORK/fx/saes" --gemmascope-width 16k \
    --prompt "Max" --out "$WORK/bad.h5" 2> "$WORK/bad.log"; then echo "missing width accepted"; exit 1; fi
grep -q "has no width_16k folder; widths there: width_128" "$WORK/bad.log"
mpirun -n 2 --oversubscribe "$BIN" sweep --model "$WORK/fx/saetraj-demo-gemma2" --gemmascope-root "$WORK/fx/saes" \
  --gemmascope-width 128 --gemmascope-l0 1 --prompt "Mark gave flashlight to Max in the dark room" --k 8 --top-t 5 \
  --out "$WORK/sweep.h5"
"$BIN" sweep --model "$WORK/fx/saetraj-demo-gemma2" --gemmascope-root "$WORK/fx/saes" \
  --gemmascope-width 128 --gemmascope-l0 1 --prompt "Mark gave flashlight to Max in the dark room" --k 8 --top-t 5 \
  --out "$WORK/sweep1.h5"
/usr/bin/python3 "$SRC/tests/mpi/compare_sweeps.py" "$WORK/sweep.h5" "$WORK/sweep1.h5"
/usr/bin/python3 - "$WORK/sweep.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["complete"] == 1
arch = f.attrs["architecture"]
arch = arch.decode() if isinstance(arch, bytes) else str(arch)
assert arch == "Gemma2ForCausalLM", arch
ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f.attrs["sae_ids"]]
assert ids == ["saetraj-demo-gemma2/0-gemmascope-res-128", "saetraj-demo-gemma2/1-gemmascope-res-128"], ids
hooks = [s.decode() if isinstance(s, bytes) else str(s) for s in f.attrs["sae_hooks"]]
assert hooks == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], hooks
assert (f["evolution/indices"][...] >= 0).any()
print("gemma2 sweep checked:", int(f["prompts/n_tokens"][0]), "tokens")
PY
mpirun -n 2 --oversubscribe "$BIN" demo --arch gemma2 --out "$WORK/demo" --no-render | tee "$WORK/demo.log"
grep -q "synthetic Gemma-2" "$WORK/demo.log"
/usr/bin/python3 - "$WORK/demo/demo_sweep.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["complete"] == 1
assert len(f["explanations/text"]) > 0
print("gemma2 demo checked:", len(f["explanations/text"]), "explanations")
PY
echo "gemma2 under 2 ranks: 1 passed, 0 failed"
