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
echo "slurm scripts and job config: 2 passed, 0 failed"
