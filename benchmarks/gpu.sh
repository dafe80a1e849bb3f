#!/usr/bin/env bash
# One prepared GPU benchmark run (device machine): projector throughput, figures under $OUT.
# Usage on the device: OUT=/some/dir bash benchmarks/gpu.sh
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/lamino-gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import jax; print(jax.__version__, jax.devices())" >> "$OUT/gpu.txt" 2>&1
run() { timeout "$1" python3 benchmarks/projector.py "${@:2}" 2>&1 | tee -a "$OUT/bench.txt"; }
run 150 --sizes 512 --views 512 --repeats 2 --beams parallel --tilts 30 --batch 16 --json "$OUT/par512_b16.json"
run 150 --sizes 512 --views 512 --repeats 2 --beams parallel --tilts 0 30 --batch 64 --json "$OUT/par512_b64.json"
run 120 --sizes 256 --views 256 --repeats 2 --beams cone --tilts 30 --batch 16 --json "$OUT/cone256_b16.json"
