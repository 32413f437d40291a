#!/bin/sh
# bench/gpu/pack.sh [DIR] — builds the GPU programs with the libraries the GPU
# machine lacks linked in, and puts what a device call needs into DIR (default
# .dev/gpu, ignored by git; name it in the call's `carry`):
#   DIR/bin.tar.xz  sgl, engine_gpu, test_cuda_ops, bench_gpu, tp_gpu, bench_kernels, bench_decode (stripped; the
#                   static OpenBLAS makes them large: unpack with
#                   `tar xJf DIR/bin.tar.xz -C DIR` there)
#   DIR/lib/        shared libraries the GPU machine lacks (LD_LIBRARY_PATH)
#   DIR/            tests/gpu/*.py, tests-run.sh, bench-run.sh, device.sh, tp.sh, final.sh, lens.sh, the peer
set -e
D=${1:-.dev/gpu}
make -j2 build/gpu-static/sgl build/gpu-static/engine_gpu build/gpu-static/test_cuda_ops build/gpu-static/bench_gpu \
    build/gpu-static/tp_gpu build/gpu-static/bench_kernels build/gpu-static/bench_decode >/dev/null
rm -rf "$D"
mkdir -p "$D/bin" "$D/lib"
for b in sgl engine_gpu test_cuda_ops bench_gpu tp_gpu bench_kernels bench_decode; do strip -o "$D/bin/$b" "build/gpu-static/$b"; done
(cd "$D" && tar cJf bin.tar.xz bin && rm -rf bin)
cp -L /usr/lib/x86_64-linux-gnu/libjansson.so.4 "$D/lib/"
cp tests/gpu/*.py tests/gpu/*.sgl bench/gpu/*.py bench/gpu/device.sh bench/gpu/tp.sh bench/gpu/pre.sh bench/gpu/decode.sh bench/gpu/short.sh bench/gpu/common.sh bench/gpu/fp8.sh bench/gpu/gemv.sh bench/gpu/final.sh bench/gpu/lens.sh "$D/"
cp tests/gpu/run.sh "$D/tests-run.sh"
cp bench/gpu/run.sh "$D/bench-run.sh"
PEER=${PEER:-../shared/tools/gpu_peer_fast.py}
[ -f "$PEER" ] && cp "$PEER" "$D/"
du -sh "$D"
