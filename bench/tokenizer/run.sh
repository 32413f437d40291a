#!/bin/sh
# bench/tokenizer: tok_encode throughput (MB/s) on ~4 MB of mixed text.
# Usage: sh bench/tokenizer/run.sh [BUILD_DIR] [MB]   (from the repo root;
# BUILD_DIR holds libsgl.a, default build). Set SGL_TOK_VOCAB_DIR to a
# folder of llama.cpp's ggml-vocab-*.gguf files to include Llama 2/3
# (tests/tools/make_tok_refs.py fetch-vocab DIR fetches them).
set -e
BUILD=${1:-build}
MB=${2:-4}
out="$BUILD/bench/bench_tok"
mkdir -p "$BUILD/bench"
cc -std=c11 -O2 -I. -Iinclude -D_GNU_SOURCE -o "$out" bench/tokenizer/bench_tok.c "$BUILD/libsgl.a" \
   -lpcre2-8 -luv -ljansson -ledit -lhttp_parser -lopenblas -lm -lpthread -ldl
"$out" "$MB"
