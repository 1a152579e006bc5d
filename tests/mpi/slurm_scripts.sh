#!/usr/bin/env bash
# The SLURM scripts parse, and the demo config runs through the same entry point they use
# (`saetraj sweep --config FILE`), here under mpirun instead of srun.
set -euo pipefail
BIN=$1 WORK=$2 SRC=$3
for s in "$SRC"/slurm/*.sbatch; do bash -n "$s"; done
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
"$BIN" synth --out demo-out/fixtures > /dev/null
mpirun -n 2 --oversubscribe "$BIN" sweep --config "$SRC/jobs/demo.cfg"
/usr/bin/python3 -c "import h5py; f = h5py.File('demo-out/demo_sweep.h5'); assert f.attrs['complete'] == 1; print('config sweep complete')"
# The array script's entry point: two shards cover the prompts exactly once, with their input ids.
printf 'first prompt here\nsecond prompt here\nthird prompt here\n' > prompts.txt
for i in 0 1; do
  "$BIN" sweep --config "$SRC/jobs/demo.cfg" --prompt-file prompts.txt --shard "$i/2" --out "shards/shard_${i}_of_2.h5" \
      --no-graphs > /dev/null 2>&1
done
/usr/bin/python3 - <<'PY'
import h5py
# jobs/demo.cfg's prompt has id 0, the file's lines ids 1-3; shard 0 takes positions 0 and 2.
ids = {}
for i in (0, 1):
    with h5py.File(f"shards/shard_{i}_of_2.h5", "r") as f:
        ids[i] = [x.decode() for x in f["prompts/id"][()]]
assert ids == {0: ["0", "2"], 1: ["1", "3"]}, ids
print("shards cover the prompts once:", ids)
PY
echo "slurm scripts and job config: 3 passed, 0 failed"
