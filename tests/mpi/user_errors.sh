#!/usr/bin/env bash
# What a new user sees with wrong paths and wrong files (issue 17): for each case, the exact one-line
# message on stderr, nothing on stdout, and the exit code (2 bad input, 3 malformed file, 4 I/O). No
# HDF5 error stack, no "filesystem error", no exit code 1. Also: a JSONL corpus with malformed lines is
# swept with those lines listed under /skipped, and --strict-input stops at the first one.
# Arguments: saetraj binary, a work folder, the source tree.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
source "$SRC/tests/mpi/fixture.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
PY=/usr/bin/python3
passed=0 failed=0

# expect CODE MESSAGE COMMAND...: runs COMMAND; its exit status must be CODE, stdout empty, stderr exactly
# the one line MESSAGE.
expect() {
  local code=$1 message=$2
  shift 2
  local status=0
  "$@" > "$WORK/stdout" 2> "$WORK/stderr" || status=$?
  local ok=1
  [ "$status" -eq "$code" ] || { echo "  exit status $status, expected $code"; ok=0; }
  [ ! -s "$WORK/stdout" ] || { echo "  unexpected stdout:"; sed 's/^/    /' "$WORK/stdout"; ok=0; }
  [ "$(wc -l < "$WORK/stderr")" -eq 1 ] || { echo "  stderr is not one line:"; sed 's/^/    /' "$WORK/stderr"; ok=0; }
  [ "$(cat "$WORK/stderr")" == "$message" ] ||
    { echo "  stderr:   $(cat "$WORK/stderr")"; echo "  expected: $message"; ok=0; }
  if [ "$ok" -eq 1 ]; then
    passed=$((passed + 1)); echo "ok:   $*"
  else
    failed=$((failed + 1)); echo "FAIL: $*"
  fi
}

make_fixture 1
write_corpus
sweep_args "$WORK/corpus.txt" --k 8 --top-t 4
"$BIN" "${common[@]}" --out "$WORK/good.h5" > /dev/null 2>&1
echo "this is not an HDF5 file" > "$WORK/notes.h5"
: > "$WORK/empty.h5"
$PY -c 'import h5py, sys; h5py.File(sys.argv[1], "w").create_dataset("x", data=[1, 2, 3])' "$WORK/plain.h5"
size=$(stat -c %s "$WORK/good.h5")
half=$((size / 2))
head -c "$half" "$WORK/good.h5" > "$WORK/truncated.h5"
cp "$WORK/truncated.h5" "$WORK/truncated-resume.h5"
G="give a sweep file written by saetraj sweep"
R="--resume continues a sweep file: pass --overwrite instead to replace it, or choose another --out"

echo "== sweep files: missing, not HDF5, truncated, not a sweep"
expect 4 "saetraj: error: $WORK/no/such.h5: no such file; $G" "$BIN" graph "$WORK/no/such.h5"
expect 4 "saetraj: error: $WORK is a folder, not a file; $G" "$BIN" graph "$WORK"
expect 3 "saetraj: error: $WORK/notes.h5 is not an HDF5 file (no HDF5 signature); $G" "$BIN" graph "$WORK/notes.h5"
expect 3 "saetraj: error: $WORK/empty.h5 is not an HDF5 file (it is empty); $G" "$BIN" graph "$WORK/empty.h5"
expect 3 "saetraj: error: $WORK/truncated.h5 is truncated: $half of $size bytes (an unfinished copy or a full disk cut it short); $G" \
  "$BIN" graph "$WORK/truncated.h5"
expect 3 "saetraj: error: $WORK/plain.h5 is an HDF5 file but not a saetraj sweep file (no root attribute format = \"saetraj-sweep\"); $G" \
  "$BIN" graph "$WORK/plain.h5"
expect 3 "saetraj: error: $WORK/notes.h5 is not an HDF5 file (no HDF5 signature); $G" "$BIN" explain "$WORK/notes.h5" --bulk-root "$WORK"
expect 3 "saetraj: error: $WORK/truncated.h5 is truncated: $half of $size bytes (an unfinished copy or a full disk cut it short); $G" \
  "$BIN" info "$WORK/truncated.h5"

echo "== --resume on a file that is not a sweep"
cp "$WORK/notes.h5" "$WORK/notes-resume.h5"
expect 3 "saetraj: error: $WORK/notes-resume.h5 is not an HDF5 file (no HDF5 signature); $R" \
  "$BIN" "${common[@]}" --out "$WORK/notes-resume.h5" --resume
expect 3 "saetraj: error: $WORK/truncated-resume.h5 is truncated: $half of $size bytes (an unfinished copy or a full disk cut it short); $R" \
  "$BIN" "${common[@]}" --out "$WORK/truncated-resume.h5" --resume
expect 3 "saetraj: error: $WORK/plain.h5 is an HDF5 file but not a saetraj sweep file (no root attribute format = \"saetraj-sweep\"); $R" \
  "$BIN" "${common[@]}" --out "$WORK/plain.h5" --resume

echo "== the same under mpirun -n 2: one line from saetraj (rank 0 speaks for all), nothing from HDF5"
# mpirun adds its own banner about the non-zero exit; saetraj's part must still be the one line.
status=0
mpirun -n 2 --oversubscribe "$BIN" "${common[@]}" --out "$WORK/notes-resume.h5" --resume \
  > "$WORK/stdout" 2> "$WORK/stderr" || status=$?
if [ "$status" -eq 3 ] && [ ! -s "$WORK/stdout" ] && ! grep -q "HDF5-DIAG" "$WORK/stderr" &&
   [ "$(grep '^saetraj' "$WORK/stderr")" == "saetraj: error (rank 0): $WORK/notes-resume.h5 is not an HDF5 file (no HDF5 signature); $R" ]; then
  passed=$((passed + 1)); echo "ok:   mpirun -n 2 sweep --resume on a file that is not HDF5"
else
  failed=$((failed + 1)); echo "FAIL: mpirun -n 2 sweep --resume on a file that is not HDF5 (exit $status)"; cat "$WORK/stderr"
fi

# A command line every rank parses the same way and refuses: one line, from rank 0, not one per rank.
status=0
mpirun -n 2 --oversubscribe "$BIN" sweep --no-such-option > "$WORK/stdout" 2> "$WORK/stderr" || status=$?
if [ "$status" -eq 2 ] && [ ! -s "$WORK/stdout" ] &&
   [ "$(grep '^saetraj' "$WORK/stderr")" == "saetraj: error (rank 0): saetraj sweep: unrecognised option '--no-such-option' (see saetraj sweep --help)" ]; then
  passed=$((passed + 1)); echo "ok:   mpirun -n 2 sweep --no-such-option: one line"
else
  failed=$((failed + 1)); echo "FAIL: mpirun -n 2 sweep --no-such-option (exit $status)"; cat "$WORK/stderr"
fi

echo "== render.py on an HDF5 file that is not a sweep"
expect 2 "render.py: error: $WORK/plain.h5: an HDF5 file but not a saetraj sweep file (no root attribute format = \"saetraj-sweep\"); $G" \
  $PY "$SRC/analysis/render.py" "$WORK/plain.h5" --out "$WORK/figures"
expect 2 "render.py: error: $WORK/truncated.h5: cannot open as an HDF5 file (truncated: $half of $size bytes); $G" \
  $PY "$SRC/analysis/render.py" "$WORK/truncated.h5" --out "$WORK/figures"
expect 2 "render.py: error: $WORK/no/such.h5: no such file; check the path" \
  $PY "$SRC/analysis/render.py" "$WORK/no/such.h5" --out "$WORK/figures"

echo "== info on single files: safetensors (by name and by header), npz, tokenizer files"
mkdir -p "$WORK/files"
# A safetensors header that claims more bytes than the file holds.
printf '\xe8\x03\x00\x00\x00\x00\x00\x00{"a": 1}' > "$WORK/files/cut.safetensors"
cp "$WORK/files/cut.safetensors" "$WORK/files/weights.bin"
expect 3 "saetraj: error: header of $WORK/files/cut.safetensors (1000 bytes) runs past the end of the file (16 bytes); the file is corrupted or incomplete" "$BIN" info "$WORK/files/cut.safetensors"
expect 3 "saetraj: error: header of $WORK/files/weights.bin (1000 bytes) runs past the end of the file (16 bytes); the file is corrupted or incomplete" "$BIN" info "$WORK/files/weights.bin"
echo "not a zip archive" > "$WORK/files/params.npz"
expect 3 "saetraj: error: $WORK/files/params.npz is not a zip archive (an .npz is one), or it is truncated or corrupt: Not a zip archive" "$BIN" info "$WORK/files/params.npz"
mkdir -p "$WORK/files/tok"
echo '{"model": {"type": "BPE", "vocab": ' > "$WORK/files/tok/tokenizer.json"
expect 3 "saetraj: error: tokenizer file '$WORK/files/tok/tokenizer.json' is not valid JSON: [json.exception.parse_error.101] parse error at line 2, column 1: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal" "$BIN" info "$WORK/files/tok/tokenizer.json"
mkdir -p "$WORK/files/vm" && echo '{"a": 0}' > "$WORK/files/vm/vocab.json"
expect 3 "saetraj: error: $WORK/files/vm/vocab.json: a byte-level BPE tokenizer needs vocab.json and merges.txt side by side; $WORK/files/vm/merges.txt is missing" \
  "$BIN" info "$WORK/files/vm/vocab.json"
echo "random bytes" > "$WORK/files/data.bin"
expect 2 "saetraj: error: saetraj info: $WORK/files/data.bin is none of the files info reads: a sweep file (HDF5), a .safetensors file, an .npz archive, or a tokenizer file (tokenizer.json, vocab.json, merges.txt, tokenizer.model)" \
  "$BIN" info "$WORK/files/data.bin"
expect 4 "saetraj: error: saetraj info: $WORK/files/nothing: no such file or folder; check the path" \
  "$BIN" info "$WORK/files/nothing"
# The good files are described (exit 0) by the same readers.
"$BIN" info "$WORK/fx/model/model.safetensors" > "$WORK/info.txt" && grep -q "^safetensors:" "$WORK/info.txt"
"$BIN" info "$WORK/fx/model/tokenizer.json" > "$WORK/info.txt" && grep -q "^kind: *byte-level-bpe" "$WORK/info.txt"

echo "== demo and synth: --out a file, options checked before anything is written"
echo "a file" > "$WORK/afile"
expect 2 "saetraj: error: --out $WORK/afile is a file, not a folder; the demo writes a folder of files: choose a folder for --out (it is created if missing)" \
  "$BIN" demo --out "$WORK/afile" --no-render
expect 2 "saetraj: error: --out $WORK/afile/sub: $WORK/afile is a file, not a folder; the demo writes a folder of files: choose a folder for --out (it is created if missing)" \
  "$BIN" demo --out "$WORK/afile/sub" --no-render
expect 2 "saetraj: error: --out $WORK/afile is a file, not a folder; choose a folder for --out (it is created if missing)" \
  "$BIN" synth --out "$WORK/afile"
expect 2 "saetraj: error: synth: --layers must be at least 1, got 0" "$BIN" synth --out "$WORK/zero" --layers 0
[ ! -e "$WORK/zero" ] || { echo "FAIL: synth --layers 0 wrote $WORK/zero"; failed=$((failed + 1)); }
expect 2 "saetraj: error: synth: --d-sae must be at least 1, got -3" "$BIN" synth --out "$WORK/neg" --d-sae -3
[ ! -e "$WORK/neg" ] || { echo "FAIL: synth --d-sae -3 wrote $WORK/neg"; failed=$((failed + 1)); }

echo "== a JSONL corpus with malformed lines"
{
  echo '{"id": "a", "text": "Anna gave the book to Ben."}'
  echo '{"id": "b", "text": "Smith left the room"'
  printf '{"id": "c", "text": "bad \xff byte"}\n'
  echo '{"id": "d", "txt": "no text field"}'
  echo ''
  echo '{"id": "e", "text": "Mark gave the flashlight to Max."}'
} > "$WORK/corpus.jsonl"
sweep_args "$WORK/corpus.jsonl" --k 8 --top-t 4 --no-graphs
"$BIN" "${common[@]}" --out "$WORK/jsonl.h5" > "$WORK/stdout" 2> "$WORK/stderr"
cat > "$WORK/expected_stderr" <<TXT
saetraj: skipping prompt 1 (id 2): line 2: not valid JSON (parse error at column 42: syntax error while parsing object - unexpected end of input; expected '}')
saetraj: skipping prompt 2 (id 3): line 3: not valid UTF-8 (byte offset 25 of the line)
saetraj: skipping prompt 3 (id 4): line 4: expected an object with a string "text"
TXT
if diff "$WORK/expected_stderr" <(grep '^saetraj: skipping' "$WORK/stderr"); then
  passed=$((passed + 1)); echo "ok:   malformed lines are skipped with their line and reason"
else
  failed=$((failed + 1)); echo "FAIL: malformed lines are skipped with their line and reason"; cat "$WORK/stderr"
fi
if $PY - "$WORK/jsonl.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
ids = [s.decode() for s in f["prompts/id"][()]]
assert ids == ["a", "e"], ids
assert f.attrs["complete"] == 1
assert list(f["skipped/line"][()]) == [1, 2, 3], list(f["skipped/line"][()])
assert [s.decode() for s in f["skipped/id"][()]] == ["2", "3", "4"]
reasons = [s.decode() for s in f["skipped/reason"][()]]
assert reasons[0].startswith("line 2: not valid JSON ("), reasons
assert reasons[1] == "line 3: not valid UTF-8 (byte offset 25 of the line)", reasons
assert reasons[2] == 'line 4: expected an object with a string "text"', reasons
assert [s.decode() for s in f["skipped/text"][()]][1] == '{"id": "c", "text": "bad \ufffd byte"}'
assert '"strict_input": false' in f.attrs["config"].replace('":false', '": false')
PY
then
  passed=$((passed + 1)); echo "ok:   /skipped lists the malformed lines"
else
  failed=$((failed + 1)); echo "FAIL: /skipped lists the malformed lines"
fi
expect 3 "saetraj: error: $WORK/corpus.jsonl:2: not valid JSON (parse error at column 42: syntax error while parsing object - unexpected end of input; expected '}'); fix the line, or run without --strict-input to skip such lines" \
  "$BIN" "${common[@]}" --out "$WORK/strict.h5" --strict-input
[ ! -e "$WORK/strict.h5" ] || { echo "FAIL: --strict-input wrote $WORK/strict.h5"; failed=$((failed + 1)); }

echo "== --mlp-transcoder: a layer that is not analysed; bench --mlp-transcoder without its demo; demo --mlp-transcoder of a real model"
expect 2 "saetraj: error: --mlp-transcoder 3=$WORK/tc: layer 3 is not among the analysed layers (--layers)" \
  "$BIN" "${common[@]}" --out "$WORK/mlp.h5" --mlp-transcoder "3=$WORK/tc"
expect 2 "saetraj: error: bench --orders, --head-split and --mlp-transcoder time the demo sweep; they cannot go with --no-demo" \
  "$BIN" bench --no-demo --no-kernel --mlp-transcoder
expect 2 "saetraj: error: --mlp-transcoder writes random transcoders for the synthetic models only, not for --real-model; sweep the real model with \`saetraj sweep --mlp-transcoder\` and real transcoders" \
  "$BIN" demo --arch gemma3 --real-model "$WORK/nomodel" --mlp-transcoder --no-render --out "$WORK/demo_mlp"
[ ! -e "$WORK/demo_mlp" ] || { echo "FAIL: a refused demo --mlp-transcoder wrote $WORK/demo_mlp"; failed=$((failed + 1)); }
[ ! -e "$WORK/mlp.h5" ] || { echo "FAIL: a refused --mlp-transcoder wrote $WORK/mlp.h5"; failed=$((failed + 1)); }

echo "user errors: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
