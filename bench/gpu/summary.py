#!/usr/bin/env python3
"""bench/gpu/summary.py LOG — issue 11's figures from one `device.sh bench`
log (the JSON lines its programs print), beside each goal.

Prefill FLOPs for the Llama-3-8B shape (32 layers, d 4096, 32 heads, 8 kv
heads of 128, ff 14336): 2 * N * 6.98e9 (the layers' matrices; the lm head
runs for one row) + causal attention 2 * N^2 * 128 * 32 per layer.
"""
import json
import sys

LAYER_PARAMS = 32 * (4096 * 4096 * 2 + 2 * 4096 * 1024 + 3 * 4096 * 14336)


def prefill_flops(n):
    return 2.0 * n * LAYER_PARAMS + 32 * 2.0 * n * n * 128 * 32


def main():
    rows = []
    for line in open(sys.argv[1], errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    peaks = next((r for r in rows if "copy_TBps" in r), {})
    b1 = next((r for r in rows if r.get("bench") == "batch-1" and "peer" not in r), {})
    pre = [r for r in rows if r.get("bench") == "forward prefill"]
    off = next((r for r in rows if r.get("bench") == "offline-lens"), {})
    hf = {r.get("bench"): r for r in rows if r.get("peer") == "transformers generate"}
    prog = {r.get("cache"): r for r in rows if r.get("bench") == "program"}
    out = []
    tb = peaks.get("copy_TBps")
    roof = tb * 1e12 / 15.01e9 if tb else None
    out.append(("device", peaks.get("device", "?"), ""))
    if tb:
        out.append(("HBM roofline (2 GiB copy)", "%.3f TB/s = %.1f tok/s at 15.01 GB/token" % (tb, roof), ""))
    if peaks.get("gemm_bf16_TFLOPs"):
        out.append(("bf16 GEMM peak (cuBLASLt 8192^3)", "%.1f TFLOP/s" % peaks["gemm_bf16_TFLOPs"], ""))
    if b1 and roof:
        f = b1["decode_tok_s"] / roof
        out.append(("batch-1 decode %d in / %d out (engine)" % (b1["in"], b1["out"]),
                    "%.1f tok/s = %.1f%% of roofline" % (b1["decode_tok_s"], 100 * f),
                    "goal >= 90%%: %s" % ("met" if f >= 0.9 else "not met")))
    for p in pre:
        if p["tokens"] >= 2048 and peaks.get("gemm_bf16_TFLOPs"):
            tf = prefill_flops(p["tokens"]) / (p["ms"] * 1e-3) / 1e12
            mfu = tf / peaks["gemm_bf16_TFLOPs"]
            out.append(("prefill %d tokens (engine forward)" % p["tokens"],
                        "%.1f ms, %.0f TFLOP/s = MFU %.1f%%" % (p["ms"], tf, 100 * mfu),
                        "goal >= 60%%: %s" % ("met" if mfu >= 0.6 else "not met")))
    if off:
        out.append(("offline, SGLang's CI workload (%d prompts, in U[1,4096], out U[0,2048], seed 0)" % off["requests"],
                    "%.1f output tok/s (%.1f s, %d in / %d out tokens)" % (off["output_tok_s"], off["wall_s"],
                                                                          off["sum_in"], off["sum_out"]),
                    "goal >= 3800: %s" % ("met" if off["output_tok_s"] >= 3800 else "not met")))
    for k, r in hf.items():
        if k == "batch-1":
            out.append(("peer: transformers generate, batch-1 %d in / %d out" % (r["in"], r["out"]),
                        "%.1f tok/s" % r["decode_tok_s"], "transformers " + r.get("version", "")))
        else:
            out.append(("peer: transformers generate, %d x %d in / %d out" % (r["requests"], r["in"], r["out"]),
                        "%.1f output tok/s" % r["output_tok_s"], ""))
    if "on" in prog and "off" in prog:
        on, offp = prog["on"], prog["off"]
        out.append(("program: few-shot prefix + fork 8, cache on / off",
                    "%.2f / %.2f programs/s, %.0f / %.0f gen tok/s (x%.2f)" % (
                        on["programs_s"], offp["programs_s"], on["gen_tok_s"], offp["gen_tok_s"],
                        on["programs_s"] / offp["programs_s"] if offp["programs_s"] else 0), on.get("stats", "")))
    eng_off = next((r for r in rows if r.get("bench") == "offline"), {})
    if eng_off:
        out.append(("offline %d x %d in / %d out (engine)" % (eng_off["requests"], eng_off["in"], eng_off["out"]),
                    "%.1f output tok/s" % eng_off["output_tok_s"], ""))
    fast = next((r for r in rows if "b1_decode_tok_s" in r), {})
    if fast:
        out.append(("peer: gpu_peer_fast.py (same call), batch-1 decode",
                    "%.1f tok/s = %.1f%% of its roofline" % (fast["b1_decode_tok_s"],
                                                             100 * fast.get("b1_decode_frac_roofline", 0)), ""))
        if fast.get("b64_1024in_decode_out_tok_s"):
            out.append(("peer: gpu_peer_fast.py, 64 x 1024 in decode", "%.1f output tok/s" % fast["b64_1024in_decode_out_tok_s"], ""))
    w = max(len(a) for a, _, _ in out)
    print("== issue 11 figures ==")
    for a, b, c in out:
        print("%-*s  %s%s" % (w, a, b, ("   [" + c + "]") if c else ""))


if __name__ == "__main__":
    main()
