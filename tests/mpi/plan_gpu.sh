#!/usr/bin/env bash
# `saetraj plan --device cuda --gpu-memory`: each GPU's share (encoders, working set, the model on rank 0)
# and the verdict against the given memory, without a GPU. Arguments: saetraj binary, a work folder, the
# source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
source "$SRC/tests/mpi/fixture.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_fixture 4 --transcoders
plan=(plan --model "$WORK/fx/model" --sae "$WORK/fx/saes/layer_{layer}" --device cuda --ranks 2 --tokens 40)
"$BIN" "${plan[@]}" --gpu-memory 1GiB > "$WORK/fits.txt"
cat "$WORK/fits.txt"
grep -q "rank 0: layers 0 1; .*; GPU: working set .*; model .*; total " "$WORK/fits.txt"
grep -q "rank 1: layers 2 3; .*; GPU: working set " "$WORK/fits.txt"
grep -q "every rank fits in 1.00 GiB of GPU memory" "$WORK/fits.txt"
set +e
"$BIN" "${plan[@]}" --gpu-memory 20KiB > "$WORK/small.txt" 2> "$WORK/small.err"
status=$?
set -e
cat "$WORK/small.txt"
[ "$status" -eq 2 ] || { echo "expected exit 2 when the GPUs are too small, got $status"; exit 1; }
grep -q "does not fit: rank 0's GPU cannot hold its share: layers 0,1 need SAE encoders" "$WORK/small.txt"
grep -q "even one layer per GPU does not fit" "$WORK/small.txt"
set +e
"$BIN" plan --model "$WORK/fx/model" --sae "$WORK/fx/saes/layer_{layer}" --gpu-memory 1GiB 2> "$WORK/bad.err"
status=$?
set -e
[ "$status" -eq 2 ] && grep -q "\-\-gpu-memory goes with --device cuda" "$WORK/bad.err" ||
  { cat "$WORK/bad.err"; echo "--gpu-memory without --device cuda must be refused"; exit 1; }
# With --mlp-transcoder each rank's share grows by its layers' transcoders and MLP-path tensors.
"$BIN" "${plan[@]}" --mlp-transcoder "$WORK/fx/transcoders/layer_{layer}" > "$WORK/mlp.txt"
cat "$WORK/mlp.txt"
total() { sed -n "s/^  rank $2: .*; total \(.*\)$/\1/p" "$1"; }
grep -q "rank 0: layers 0 1; .*; SAE encoders and transcoders .*; GPU: working set " "$WORK/mlp.txt"
for r in 0 1; do
  [ "$(total "$WORK/fits.txt" $r)" != "$(total "$WORK/mlp.txt" $r)" ] && [ -n "$(total "$WORK/mlp.txt" $r)" ] ||
    { echo "rank $r: the transcoders did not change its total"; exit 1; }
done
set +e
"$BIN" "${plan[@]}" --mlp-transcoder "7=$WORK/fx/transcoders/layer_0" 2> "$WORK/bad_tc.err"
status=$?
set -e
[ "$status" -eq 2 ] && grep -q "layer 7 is not among the analysed layers" "$WORK/bad_tc.err" ||
  { cat "$WORK/bad_tc.err"; echo "--mlp-transcoder for a layer not analysed must be refused"; exit 1; }
echo "plan --device cuda: 5 passed, 0 failed"
