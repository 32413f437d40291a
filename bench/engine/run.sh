#!/bin/sh
# bench/engine/run.sh [BUILD_DIR] — sgl's CPU forward pass vs llama.cpp, tok/s,
# same GGUF, same token ids, same thread counts. Not part of `make test`.
#
#   BUILD_DIR   where libsgl.a is (default: build)
#   THREADS     thread counts to try (default: "1 <all cores>")
#   MODEL       GGUF file (default: the project's default model)
#   PYTHON      a Python with llama-cpp-python (default: .dev/venv/bin/python);
#               without it only sgl's figures are printed
#   ARGS        extra arguments for both, e.g. ARGS="--prompt 512 --gen 32"
#   CTX         context lengths for sgl's decode-by-context row (default
#               64,512,1536,4096: ms a token and the attention op's share)
set -e
BUILD=${1:-build}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PYTHON=${PYTHON:-.dev/venv/bin/python}
THREADS=${THREADS:-"1 $(nproc)"}
[ -f "$BUILD/libsgl.a" ] || { echo "bench/engine: $BUILD/libsgl.a missing (run make first)"; exit 1; }
[ -f "$MODEL" ] || { echo "bench/engine: $MODEL missing (run make model)"; exit 1; }
${CC:-cc} -std=c11 -O2 -I. -Iinclude -D_GNU_SOURCE -o "$BUILD/engine_bench" bench/engine/engine_bench.c \
    "$BUILD/libsgl.a" -lpcre2-8 -luv -ljansson -ledit -lhttp_parser -lopenblas -lm -lpthread -ldl
have_llama=0
"$PYTHON" -c "import llama_cpp" 2>/dev/null && have_llama=1
for t in $THREADS; do
    # sgl's default (batch-invariant: quantized dots for every batch) and
    # --blas-prefill (OpenBLAS sgemm for prefill)
    "$BUILD/engine_bench" --model "$MODEL" --threads "$t" --no-blas $ARGS
    "$BUILD/engine_bench" --model "$MODEL" --threads "$t" $ARGS
    if [ $have_llama = 1 ]; then
        "$PYTHON" bench/engine/llama_bench.py --model "$MODEL" --threads "$t" $ARGS
    else
        echo "llama.cpp  (no llama-cpp-python at $PYTHON: skipped)"
    fi
done
"$BUILD/engine_bench" --model "$MODEL" --threads "$(nproc)" --no-blas --ctx "${CTX:-64,512,1536,4096}" --gen 16
