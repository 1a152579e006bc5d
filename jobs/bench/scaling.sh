#!/usr/bin/env bash
# Scaling benchmark (not a test): the same encoding-dominated sweep with 1 rank x 1 thread, 1 rank x 2
# threads and 2 ranks x 1 thread, timed in one run of this script, plus each rank's peak memory against
# the SAE encoders it holds.
#   usage: jobs/bench/scaling.sh [SAETRAJ_BINARY] [WORK_DIR]
# The fixture: 4 layers, d_model 512, SAE width 16384, five prompts of 20-60 tokens.
set -euo pipefail
BIN=$(realpath "${1:-build/saetraj}")
WORK=${2:-bench-scaling}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$WORK"
if [ ! -f "$WORK/fx/model/config.json" ]; then
  "$BIN" synth --out "$WORK/fx" --layers 4 --d-model 512 --heads 8 --d-mlp 1024 --vocab 512 --context 128 \
      --d-sae 16384 > /dev/null
fi
cat > "$WORK/prompts.txt" <<'TXT'
The final correct answer: Max, Mark and Smith are in the empty dark room. Smith left. Mark gave flashlight to
Max, Mark and Smith walked into the old house. The room was dark and empty. Mark found a flashlight on the table and gave it to Smith. Smith gave the flashlight to
In the morning the room was not dark. Smith left the house early. Mark and Max stayed in the room and talked about the answer to the final question.
The teacher asked for the correct answer. Max gave the answer first.
A river runs through the valley, and the village by the river has a small school, a market and a library where people read books in the evening.
TXT
# The direct method keeps the sweep dominated by SAE encoding, which is what this benchmark measures
# (METHOD=auto or factored times the faster method instead).
sweep=(sweep --model "$WORK/fx/model" --sae "$WORK/fx/saes/layer_{layer}" --prompt-file "$WORK/prompts.txt"
       --k 400 --no-graphs --overwrite --method "${METHOD:-direct}")
run() {  # label ranks threads
  local start end
  start=$(date +%s.%N)
  OMP_NUM_THREADS=$3 mpirun -n "$2" --oversubscribe --bind-to none "$BIN" "${sweep[@]}" --out "$WORK/$1.h5" \
      2> "$WORK/$1.log" > /dev/null
  end=$(date +%s.%N)
  /usr/bin/python3 -c "print($end - $start)"
}
t11=$(run r1t1 1 1)
t12=$(run r1t2 1 2)
t21=$(run r2t1 2 1)
rows=$(grep -o "[0-9]* rows per layer" "$WORK/r1t1.log" | head -1)
echo "scaling benchmark: $(nproc --all) cores, 4 layers x 16384 features, d_model 512, $rows, method ${METHOD:-direct}"
printf "%-22s %10s %10s\n" "configuration" "seconds" "speed-up"
printf "%-22s %10.2f %10.2f\n" "1 rank x 1 thread" "$t11" 1
printf "%-22s %10.2f %10.2f\n" "1 rank x 2 threads" "$t12" "$(/usr/bin/python3 -c "print($t11 / $t12)")"
printf "%-22s %10.2f %10.2f\n" "2 ranks x 1 thread" "$t21" "$(/usr/bin/python3 -c "print($t11 / $t21)")"
echo "memory (2 ranks):"
grep "peak memory" "$WORK/r2t1.log" | sed 's/^saetraj: /  /'
echo "plan (2 ranks):"
grep -E "holds layers" "$WORK/r2t1.log" | sed 's/^saetraj: /  /'
echo "time per rank inside the sweep:"
for label in r1t1 r2t1; do
  grep " time: start-up" "$WORK/$label.log" | sed "s/^saetraj: /  $label /"
done
/usr/bin/python3 "$(dirname "$0")/../../tests/mpi/compare_sweeps.py" "$WORK/r1t1.h5" "$WORK/r2t1.h5" | tail -1
