#!/bin/sh
# bench/structured: token-mask cost of structured generation (issue 8):
# compile time, first mask, per-token mask p50/p99/max, single-threaded, for
# the default model's vocabulary and Llama 3's 128k one.
# Usage: sh bench/structured/run.sh [BUILD_DIR] [NAME-SUBSTRING]  (from the
# repo root). SGL_TOK_VOCAB_DIR: folder of llama.cpp's ggml-vocab-*.gguf
# (default build/vocab; `make vocab` fetches them). SGL_MASKBENCH_DIR: a
# folder of unpacked MaskBench *.json schemas, to include them.
set -e
BUILD=${1:-build}
out="$BUILD/bench/bench_structured"
mkdir -p "$BUILD/bench"
${CC:-cc} -std=c11 -O2 -g -I. -Iinclude -D_GNU_SOURCE -o "$out" bench/structured/bench_structured.c "$BUILD/libsgl.a" \
   -lpcre2-8 -luv -ljansson -ledit -lhttp_parser -lopenblas -lm -lpthread -ldl
[ -z "$SGL_MASKBENCH_DIR" ] && [ -d "$BUILD/maskbench/data" ] && export SGL_MASKBENCH_DIR="$BUILD/maskbench/data"
"$out" $2
# the end-to-end cost on the default model (constrained vs unconstrained tok/s)
gen="$BUILD/bench/bench_gen"
${CC:-cc} -std=c11 -O2 -g -I. -Iinclude -D_GNU_SOURCE -o "$gen" bench/structured/bench_gen.c "$BUILD/libsgl.a" \
   ${LIBS:--lpcre2-8 -luv -ljansson -ledit -lhttp_parser -lopenblas -lm -lpthread -ldl}
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] && "$gen"
