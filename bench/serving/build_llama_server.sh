#!/bin/sh
# Builds llama.cpp's llama-server, the peer of bench/serving, from the
# llama.cpp sources vendored in the pinned llama-cpp-python sdist (the same
# pin as tests/tools/make_tok_refs.py). Everything lands under build/; the
# tree never holds it.
#
#   sh bench/serving/build_llama_server.sh [BUILD_DIR]   -> BUILD_DIR/llama-server/bin/llama-server
#
# cmake configures the whole llama.cpp project but builds only the
# `llama-server` target (tools/server): Release, -DGGML_NATIVE=ON, static,
# no curl. JOBS (default 1) bounds the compile jobs: the dev box has 2 cores.
set -eu
PIN=0.3.36
BUILD=${1:-build}
TOP=$BUILD/llama-server
BIN=$TOP/bin/llama-server
JOBS=${JOBS:-1}
[ -x "$BIN" ] && { echo "$BIN"; exit 0; }
command -v cmake >/dev/null || { echo "build_llama_server: cmake missing (make deps)" >&2; exit 1; }
command -v c++ >/dev/null || { echo "build_llama_server: a C++ compiler is missing (make deps)" >&2; exit 1; }
mkdir -p "$TOP/dl"
SDIST=$(ls "$TOP"/dl/llama_cpp_python-$PIN.tar.gz 2>/dev/null || true)
if [ -z "$SDIST" ]; then
  python3 -m pip download --no-deps --no-binary :all: -q -d "$TOP/dl" "llama-cpp-python==$PIN"
  SDIST=$TOP/dl/llama_cpp_python-$PIN.tar.gz
fi
SRC=$TOP/llama_cpp_python-$PIN/vendor/llama.cpp
[ -f "$SRC/CMakeLists.txt" ] || tar xzf "$SDIST" -C "$TOP"
cmake -S "$SRC" -B "$TOP/cmake" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >"$TOP/cmake.log" 2>&1 \
  || { tail -30 "$TOP/cmake.log" >&2; exit 1; }
cmake --build "$TOP/cmake" --target llama-server -j "$JOBS" >"$TOP/build.log" 2>&1 \
  || { tail -30 "$TOP/build.log" >&2; exit 1; }
mkdir -p "$TOP/bin"
cp "$TOP/cmake/bin/llama-server" "$BIN"
echo "$BIN"
