# The set-up the MPI tests share, sourced after BIN (the saetraj binary) and WORK (the test's folder) are set.
#   make_fixture LAYERS [OPTS]  a small synthetic GPT-2 and its SAEs in $WORK/fx (OPTS: more synth options,
#                               e.g. --transcoders for $WORK/fx/transcoders/layer_{layer})
#   write_corpus                four short prompts in $WORK/corpus.txt
#   sweep_args CORPUS OPTIONS   sets common=(sweep ...) for that fixture and corpus, plus OPTIONS

make_fixture() {
  "$BIN" synth --out "$WORK/fx" --layers "$1" --d-model 32 --d-mlp 64 --vocab 320 --context 48 --d-sae 96 "${@:2}" > /dev/null
}

write_corpus() {
  cat > "$WORK/corpus.txt" <<'TXT'
The final correct answer: Max, Mark and Smith are in the empty dark room.
Anna gave the book to Ben.
Numbers like 2024 and 42 are written with digits.
Smith left.
TXT
}

sweep_args() {
  common=(sweep --model "$WORK/fx/model" --sae "$WORK/fx/saes/layer_{layer}" --prompt-file "$1" "${@:2}")
}
