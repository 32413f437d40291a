#!/usr/bin/env python3
"""bench/serving load generator: OpenAI-style streaming /v1/completions
against one or more servers, the same requests to each, one after another.

    loadgen.py --server NAME=URL [--server NAME=URL ...] [--workload random|shared]
               [--concurrency 1,8,32] [--requests-per-level 8,32,64] [--json OUT]

    workload  ──seeded prompts──►  per level c: N requests, c in flight at once
                                   (asyncio; a new request starts when one ends)
                                           │ each request: streamed chunks timed
                                           ▼
              per server × workload × c: req/s, output tok/s, TTFT p50/p99,
              inter-token latency p50/p99  ──► one table, servers side by side

Workloads (prompts are generated from a fixed seed, so every server gets the
same text; the tokenizer is the same GGUF's):
- random: prompts of 48..384 random words, each request distinct, so no
  prefix is shared between requests.
- shared: few-shot. One long prefix (40 worked examples, about 1.5k tokens)
  and many short questions after it, as a server sees with one system
  prompt and many users: a prefix cache computes the prefix once.

Every request asks for exactly --output-tokens tokens (ignore_eos), greedy,
so servers produce the same number of tokens and throughput compares work
done. TTFT is the time to the first chunk carrying text; inter-token latency
is the gap between consecutive text chunks (as SGLang's bench_serving
counts it); output tokens are counted from the final usage when the server
sends one, else from max_tokens (every request runs to it).
"""
import argparse
import asyncio
import json
import random
import statistics
import sys
import time

import aiohttp

WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city community name "
         "president team minute idea kid body information back parent face others level office door health person "
         "art war history party result change morning reason research girl guy moment air teacher force education "
         "river mountain bread garden music window paper table engine signal forest letter market bridge winter").split()


def random_prompts(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(48, 384))) for _ in range(n)]


def shared_prefix():
    rng = random.Random(1234)
    lines = ["Answer each arithmetic question with the number only.\n"]
    for _ in range(40):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        op = rng.choice(["plus", "minus", "times"])
        v = a + b if op == "plus" else a - b if op == "minus" else a * b
        lines.append(f"Question: What is {a} {op} {b}? Think about it briefly.\nAnswer: {v}\n")
    return "".join(lines)


def shared_prompts(n, seed):
    rng = random.Random(seed)
    pre = shared_prefix()
    return [pre + f"Question: What is {rng.randint(10, 999)} {rng.choice(['plus', 'minus', 'times'])} "
                  f"{rng.randint(10, 999)}? Think about it briefly.\nAnswer:" for _ in range(n)]


async def one_request(session, url, prompt, out_tokens):
    body = {"model": "default", "prompt": prompt, "max_tokens": out_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    stamps = []
    usage = None
    async with session.post(url + "/v1/completions", json=body) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")
        async for raw in r.content:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            ev = json.loads(payload)
            if ev.get("usage"):
                usage = ev["usage"]
            ch = ev.get("choices") or []
            if ch and ch[0].get("text"):
                stamps.append(time.perf_counter())
    t1 = time.perf_counter()
    if not stamps:
        raise RuntimeError(f"{url}: a stream with no text")
    n_out = usage["completion_tokens"] if usage and usage.get("completion_tokens") else out_tokens
    return {"ttft": stamps[0] - t0, "itl": [b - a for a, b in zip(stamps, stamps[1:])], "e2e": t1 - t0,
            "out": n_out}


async def run_level(url, prompts, concurrency, out_tokens):
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=True)  # one connection a request, as a fresh client
    timeout = aiohttp.ClientTimeout(total=1800)
    queue = list(reversed(prompts))
    results = []

    async def worker(session):
        while queue:
            p = queue.pop()
            results.append(await one_request(session, url, p, out_tokens))

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(s) for _ in range(concurrency)])
        wall = time.perf_counter() - t0
    return results, wall


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(results, wall):
    itl = [g for r in results for g in r["itl"]]
    ttft = [r["ttft"] for r in results]
    out = sum(r["out"] for r in results)
    return {"requests": len(results), "wall_s": wall, "req_s": len(results) / wall, "out_tok_s": out / wall,
            "ttft_p50_ms": 1e3 * pct(ttft, 50), "ttft_p99_ms": 1e3 * pct(ttft, 99),
            "itl_p50_ms": 1e3 * pct(itl, 50), "itl_p99_ms": 1e3 * pct(itl, 99),
            "e2e_mean_s": statistics.mean(r["e2e"] for r in results)}


COLS = [("req/s", "req_s", "{:.2f}"), ("out tok/s", "out_tok_s", "{:.1f}"),
        ("TTFT p50 ms", "ttft_p50_ms", "{:.0f}"), ("TTFT p99 ms", "ttft_p99_ms", "{:.0f}"),
        ("ITL p50 ms", "itl_p50_ms", "{:.1f}"), ("ITL p99 ms", "itl_p99_ms", "{:.1f}")]


def table(rows, names):
    head = ["workload", "conc", "reqs"] + [f"{c} {n}" for c, _, _ in COLS for n in names]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (wl, c), per in rows.items():
        cells = [wl, str(c), str(per[names[0]]["requests"])]
        for _, key, fmt in COLS:
            for n in names:
                cells.append(fmt.format(per[n][key]) if n in per else "-")
        out.append("| " + " | ".join(cells) + " |")
    # the headline ratios: throughput of the first server over each other one
    first = names[0]
    for n in names[1:]:
        ratios = [f"{wl}/c{c} {per[first]['out_tok_s'] / per[n]['out_tok_s']:.2f}x"
                  for (wl, c), per in rows.items() if n in per and per[n]["out_tok_s"] > 0]
        out.append(f"\n{first} / {n} output tok/s: " + ", ".join(ratios))
    return "\n".join(out)


async def warm(url):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        await one_request(s, url, "Warm up.", 4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", action="append", required=True, help="NAME=URL (repeatable)")
    ap.add_argument("--workload", action="append", choices=["random", "shared"])
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests-per-level", default="8,32,64")
    ap.add_argument("--output-tokens", type=int, default=32)
    ap.add_argument("--json", help="write every figure here too")
    a = ap.parse_args()
    servers = [s.split("=", 1) for s in a.server]
    names = [n for n, _ in servers]
    levels = [int(x) for x in a.concurrency.split(",")]
    counts = [int(x) for x in a.requests_per_level.split(",")]
    assert len(levels) == len(counts), "--concurrency and --requests-per-level differ in length"
    workloads = a.workload or ["random", "shared"]
    for _, url in servers:
        asyncio.run(warm(url))
    rows = {}
    for wl in workloads:
        for li, (c, n) in enumerate(zip(levels, counts)):
            prompts = (random_prompts if wl == "random" else shared_prompts)(n, seed=1000 + li)
            per = {}
            # alternate which server goes first, so neither always meets a cold machine
            order = servers if li % 2 == 0 else list(reversed(servers))
            for name, url in order:
                res, wall = asyncio.run(run_level(url, prompts, c, a.output_tokens))
                per[name] = summarize(res, wall)
                print(f"{wl:7s} c={c:<3d} {name:14s} {per[name]['req_s']:7.2f} req/s "
                      f"{per[name]['out_tok_s']:8.1f} tok/s ttft p50 {per[name]['ttft_p50_ms']:7.0f} ms",
                      file=sys.stderr, flush=True)
            rows[(wl, c)] = per
    print(table(rows, names))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({f"{wl}/c{c}": per for (wl, c), per in rows.items()}, f, indent=1)


if __name__ == "__main__":
    main()
