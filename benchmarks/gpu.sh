#!/usr/bin/env bash
# One prepared GPU benchmark run (device machine): projector throughput at 256³ and 512³, figures under $OUT.
# Usage on the device: OUT=/some/dir bash benchmarks/gpu.sh
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/lamino-gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import jax; print(jax.__version__, jax.devices())" >> "$OUT/gpu.txt" 2>&1
run() { timeout "$1" python3 benchmarks/projector.py "${@:2}" 2>&1 | tee -a "$OUT/bench.txt"; }
run 150 --sizes 256 --views 256 --repeats 3 --beams parallel --json "$OUT/par256.json"
run 200 --sizes 512 --views 512 --repeats 2 --beams parallel --json "$OUT/par512.json"
run 150 --sizes 256 --views 256 --repeats 2 --beams cone --tilts 30 --json "$OUT/cone256.json"
