#!/bin/sh
# tests/gpu/run.sh [BINDIR] — the CUDA backend's correctness on the GPU machine:
# every CUDA op against the CPU reference (test_cuda_ops), then end-to-end logits
# of random-weight Llama-shaped checkpoints against transformers (e2e_logits.py).
# BINDIR holds test_cuda_ops and bench_gpu (default build/gpu). Exit 1 if any fails.
B=${1:-build/gpu}
here=$(dirname "$0")
fail=0
"$B/test_cuda_ops" || fail=1
for shape in llama-3-8b-2l llama-3.2-1b-4l; do
    d=$(mktemp -d)
    if "$B/bench_gpu" --e2e "$d" "$shape"; then
        python3 "$here/e2e_logits.py" "$d" 2>&1 | grep -v -i warn || fail=1
    else
        fail=1
    fi
    rm -rf "$d"
done
[ $fail = 0 ] && echo "tests/gpu: all passed" || echo "tests/gpu: FAILED"
exit $fail
