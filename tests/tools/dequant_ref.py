#!/usr/bin/env python3
"""Write tests/data/dequant_ref.bin: random blocks of every weight dtype sgl
reads, with their dequantization by the gguf Python package (ggml's reference
definitions). test_kernels checks cpu_dequant_row against it.

Usage: .dev/venv/bin/python tests/tools/dequant_ref.py tests/data/dequant_ref.bin

Record: u32 ggml_type, u32 n_elements, u32 n_bytes, bytes, n_elements f32.
"""
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

rng = np.random.default_rng(1234)

# (type, elements per block, bytes per block, byte offsets of f16 scale fields)
TYPES = [
    (T.F16, 1, 2, None),
    (T.BF16, 1, 2, None),
    (T.Q4_0, 32, 18, [0]),
    (T.Q4_1, 32, 20, [0, 2]),
    (T.Q5_0, 32, 22, [0]),
    (T.Q5_1, 32, 24, [0, 2]),
    (T.Q8_0, 32, 34, [0]),
    (T.Q4_K, 256, 144, [0, 2]),
    (T.Q5_K, 256, 176, [0, 2]),
    (T.Q6_K, 256, 210, [208]),
]


def main():
    out = open(sys.argv[1], "wb")
    for qt, blk, nb, scales in TYPES:
        nblocks = 64 if blk == 1 else 3
        n = nblocks * blk
        if qt == T.F16:
            raw = rng.normal(0, 2, n).astype(np.float16).tobytes()
        elif qt == T.BF16:
            f = rng.normal(0, 2, n).astype(np.float32)
            raw = (f.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            b = bytearray(rng.integers(0, 256, nblocks * nb, dtype=np.uint8).tobytes())
            for i in range(nblocks):
                for off in scales:
                    v = np.float16(rng.uniform(-0.05, 0.05))
                    b[i * nb + off: i * nb + off + 2] = v.tobytes()
            raw = bytes(b)
        y = dequantize(np.frombuffer(raw, dtype=np.uint8), qt).astype(np.float32).reshape(-1)
        assert y.size == n, (qt, y.size, n)
        out.write(struct.pack("<III", int(qt), n, len(raw)))
        out.write(raw)
        out.write(y.tobytes())
    out.close()


if __name__ == "__main__":
    main()
