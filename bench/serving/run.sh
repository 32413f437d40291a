#!/bin/sh
# bench/serving: `sgl serve` beside llama.cpp's llama-server in the same run,
# on the same GGUF with the same threads, both driven by loadgen.py (the
# same seeded requests, streamed) at concurrency 1, 8 and 32 on a random and
# a shared-prefix workload; prints one table with both side by side.
#
#   sh bench/serving/run.sh            (make bench-serving)
#   env: BUILD (build), MODEL (models/SmolLM2-135M-Instruct.Q4_1.gguf),
#        THREADS (2), CONCURRENCY (1,8,32), REQUESTS (8,32,64 per level),
#        OUTPUT_TOKENS (32), WORKLOADS ("random shared"), PYTHON (build/venv/bin/python),
#        SGL_ARGS (more `sgl serve` options; default none: the server's own
#        defaults, batch-invariant; e.g. SGL_ARGS=--blas-prefill)
#
# llama-server (built into $BUILD/llama-server on first use by
# build_llama_server.sh from the pinned llama-cpp-python sdist) runs with
# its prompt cache on: --cache-prompt (per-slot prefix reuse), --cache-reuse
# 256 (reuse of shifted chunks), --cache-ram (the host-memory prompt cache
# that restores a prefix into any slot), one unified KV buffer, 32 slots so
# that concurrency 32 is batched rather than queued. `sgl serve` gets
# --max-running 32. Both log to $BUILD/bench-serving/*.log.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
CONCURRENCY=${CONCURRENCY:-1,8,32}
REQUESTS=${REQUESTS:-8,32,64}
OUTPUT_TOKENS=${OUTPUT_TOKENS:-32}
WORKLOADS=${WORKLOADS:-random shared}
PYTHON=${PYTHON:-$BUILD/venv/bin/python}
SLOTS=32
OUT=$BUILD/bench-serving
mkdir -p "$OUT"
[ -f "$MODEL" ] || { echo "bench-serving: no model at $MODEL (make model)" >&2; exit 1; }
[ -x "$BUILD/sgl" ] || { echo "bench-serving: no $BUILD/sgl (make)" >&2; exit 1; }
LLAMA=$(nice -n 10 sh bench/serving/build_llama_server.sh "$BUILD")

port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SGL_PORT=$(port)
LLAMA_PORT=$(port)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BUILD/sgl" serve --model "$MODEL" --host 127.0.0.1 --port "$SGL_PORT" --threads "$THREADS" \
    --max-running "$SLOTS" --quiet ${SGL_ARGS-} >"$OUT/sgl.log" 2>&1 &
pids="$pids $!"
"$LLAMA" -m "$MODEL" --host 127.0.0.1 --port "$LLAMA_PORT" -t "$THREADS" -tb "$THREADS" \
    -np "$SLOTS" -c $((SLOTS * 2048)) --kv-unified --cache-prompt --cache-reuse 256 --cache-ram 4096 \
    >"$OUT/llama-server.log" 2>&1 &
pids="$pids $!"

wait_up() {
    i=0
    until "$PYTHON" -c "import sys,urllib.request; sys.exit(0 if urllib.request.urlopen('$1/health', timeout=2).status == 200 else 1)" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "bench-serving: $1 never became healthy; see $OUT/*.log" >&2; exit 1; }
        sleep 0.2
    done
}
wait_up "http://127.0.0.1:$SGL_PORT"
wait_up "http://127.0.0.1:$LLAMA_PORT"

echo "bench-serving: $(uname -m), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model $MODEL, $THREADS threads each, $OUTPUT_TOKENS output tokens a request (ignore_eos, greedy), streamed"
echo "llama-server: $LLAMA (llama-cpp-python 0.3.36's llama.cpp), -np $SLOTS --kv-unified --cache-prompt --cache-reuse 256 --cache-ram 4096"
wl_args=""
for w in $WORKLOADS; do wl_args="$wl_args --workload $w"; done
"$PYTHON" bench/serving/loadgen.py --server "sgl=http://127.0.0.1:$SGL_PORT" \
    --server "llama-server=http://127.0.0.1:$LLAMA_PORT" $wl_args \
    --concurrency "$CONCURRENCY" --requests-per-level "$REQUESTS" --output-tokens "$OUTPUT_TOKENS" \
    --json "$OUT/results.json"
