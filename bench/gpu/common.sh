# bench/gpu/common.sh — the workloads device.sh bench and short.sh both run
# (sourced; B = the folder of the packed programs).

# sglang_lens FILE: SGLang's offline CI workload as "IN OUT" lines: 500
# prompts, bench_serving's random lengths (seed 0, range ratio 0: in
# U[1,4096], out U[0,2048]).
sglang_lens() {
    python3 -c "
import numpy as np
np.random.seed(0)
i = np.random.randint(1, 4096 + 1, size=500); o = np.random.randint(0, 2048 + 1, size=500)
print('\n'.join('%d %d' % t for t in zip(i, o)))" > "$1"
}

# program_bench MODEL N TIMEOUT [ARG...]: bench/gpu/fewshot_fork.sgl over the
# first N gsm questions with the prefix cache on, then off; one JSON line
# each (programs/s, generated tok/s over the wall time, sgl's --stats line).
program_bench() {
    local model=$1 n=$2 limit=$3 cache fl s ms st gen
    shift 3
    head -"$n" bench/programs/data/gsm.jsonl > /tmp/prog.jsonl
    n=$(wc -l < /tmp/prog.jsonl)
    for cache in on off; do
        fl=; [ $cache = off ] && fl=--no-prefix-cache
        s=$(date +%s%N)
        timeout "$limit" "$B/sgl" run bench/gpu/fewshot_fork.sgl --model "$model" --device cuda \
            --batch /tmp/prog.jsonl "$@" --stats $fl > /dev/null 2> /tmp/prog.err
        ms=$(( ($(date +%s%N) - s) / 1000000 ))
        st=$(grep -i "generated tokens" /tmp/prog.err | tail -1)
        gen=$(echo "$st" | sed -n 's/.*generated tokens \([0-9]*\).*/\1/p')
        awk -v c=$cache -v n="$n" -v ms=$ms -v g="${gen:-0}" -v st="$st" 'BEGIN { printf "{\"bench\": \"program\", \"cache\": \"%s\", \"programs\": %d, \"wall_ms\": %d, \"programs_s\": %.3f, \"gen_tok_s\": %.1f, \"stats\": \"%s\"}\n", c, n, ms, n * 1000 / ms, g * 1000 / ms, st }'
    done
}
