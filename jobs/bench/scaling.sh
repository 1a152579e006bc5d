#!/usr/bin/env bash
# Scaling benchmark (not a test): the same encoding-dominated sweep with 1 rank x 1 thread, 1 rank x 2
# threads and 2 ranks x 1 thread, timed in one run of this script, plus each rank's peak memory against
# the SAE encoders it holds.
#   usage: [ROUNDS=3] [METHOD=direct] jobs/bench/scaling.sh [SAETRAJ_BINARY] [WORK_DIR]
# The fixture: 8 layers, d_model 512, SAE width 16384, three prompts of 130-138 tokens (27820 rows per
# layer), so that encoding is ~95% of a 1-rank run; the rest (starting the processes and loading LibTorch,
# about 1.5 s, the forward passes on rank 0, HDF5 writes) does not shrink with more ranks.
set -euo pipefail
BIN=$(realpath "${1:-build/saetraj}")
WORK=${2:-bench-scaling}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$WORK"
if ! grep -qs '"n_positions": 256' "$WORK/fx/model/config.json" || [ ! -d "$WORK/fx/saes/layer_7" ]; then
  rm -rf "$WORK/fx"
  "$BIN" synth --out "$WORK/fx" --layers 8 --d-model 512 --heads 8 --d-mlp 1024 --vocab 512 --context 256 \
      --d-sae 16384 > /dev/null
fi
cat > "$WORK/prompts.txt" <<'TXT'
Max, Mark and Smith walked into the old house at the end of the village road. The room was dark and empty, and the floor was cold. Mark found a flashlight on the table near the window and gave it to Smith. Smith turned it on, looked around the room, and then gave the flashlight to Max, who walked to the door and opened it. Outside, the morning was bright and the river ran past the school.
The teacher asked the class for the correct answer to the final question of the day. Max gave his answer first, then Mark, and then Smith, who had read the book in the library the evening before. The teacher wrote the three answers on the board and asked the class which one was right. Nobody spoke for a long time, and then the room was full of voices.
A river runs through the valley, and the village by the river has a small school, a market and a library where people read books in the evening. In the morning the market is busy and the school is loud; in the evening the library is quiet and the river is dark. People walk along the river to the old house at the end of the road and talk about the day.
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
  /usr/bin/python3 -c "print(f'{$end - $start:.2f}')"
}
# Rounds interleave the three configurations, so that a noisy spell on a shared machine hits all of them;
# each configuration's best round is reported, with every round listed.
declare -A times
for round in $(seq "${ROUNDS:-3}"); do
  times[r1t1]+=" $(run r1t1 1 1)"
  times[r1t2]+=" $(run r1t2 1 2)"
  times[r2t1]+=" $(run r2t1 2 1)"
done
best() { /usr/bin/python3 -c "print(min(float(x) for x in '$1'.split()))"; }
t11=$(best "${times[r1t1]}")
t12=$(best "${times[r1t2]}")
t21=$(best "${times[r2t1]}")
rows=$(grep -o "[0-9]* rows per layer" "$WORK/r1t1.log" | head -1)
echo "scaling benchmark: $(nproc --all) cores, 8 layers x 16384 features, d_model 512, $rows, method ${METHOD:-direct}"
echo "best of ${ROUNDS:-3} rounds (every round's seconds in the last column)"
printf "%-22s %10s %10s   %s\n" "configuration" "seconds" "speed-up" "rounds"
printf "%-22s %10.2f %10.2f  %s\n" "1 rank x 1 thread" "$t11" 1 "${times[r1t1]}"
printf "%-22s %10.2f %10.2f  %s\n" "1 rank x 2 threads" "$t12" "$(/usr/bin/python3 -c "print($t11 / $t12)")" "${times[r1t2]}"
printf "%-22s %10.2f %10.2f  %s\n" "2 ranks x 1 thread" "$t21" "$(/usr/bin/python3 -c "print($t11 / $t21)")" "${times[r2t1]}"
echo "(the lines below are from the last round)"
echo "memory (2 ranks):"
grep "peak memory" "$WORK/r2t1.log" | sed 's/^saetraj: /  /'
echo "plan (2 ranks):"
grep -E "holds layers" "$WORK/r2t1.log" | sed 's/^saetraj: /  /'
echo "time per rank inside the sweep:"
for label in r1t1 r2t1; do
  grep " time: start-up" "$WORK/$label.log" | sed "s/^saetraj: /  $label /"
done
/usr/bin/python3 - "$WORK/r1t1.log" "$WORK/r2t1.log" <<'PY'
import re, sys
def encoding(path):  # the slowest rank's decomposition + encoding + top-k seconds
    phases = re.findall(r" time: .*?decomposition ([0-9.]+) s, encoding ([0-9.]+) s, top-k ([0-9.]+) s",
                        open(path).read())
    return max(sum(float(x) for x in p) for p in phases)
one, two = encoding(sys.argv[1]), encoding(sys.argv[2])
print(f"encoding phase alone: 1 rank {one:.2f} s, 2 ranks {two:.2f} s (slowest rank): {one / two:.2f}x")
PY
/usr/bin/python3 "$(dirname "$0")/../../tests/mpi/compare_sweeps.py" "$WORK/r1t1.h5" "$WORK/r2t1.h5" | tail -1
