#!/bin/sh
# bench/gpu/run.sh [BINDIR] — issue 11's GPU figures on the GPU machine, with the
# PyTorch peer (shared/tools/gpu_peer_fast.py, or $PEER) in the same run.
B=${1:-build/gpu}
PEER=${PEER:-../shared/tools/gpu_peer_fast.py}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv
"$B/bench_gpu"
echo "--- peer: $PEER"
PYTHONUNBUFFERED=1 python3 "$PEER"
