#!/bin/sh
# bench/programs/run.sh — SGLang's benchmark programs ported to SGL, each run
# over its data twice in one go: with the radix prefix cache on, then with
# --no-prefix-cache. Prints per program, side by side: programs/s, generated
# tokens/s and the cache hit rate, the speedup from the cache, the programs'
# accuracy (where they report one) and whether the two runs' outputs agree.
#
#   bench/programs/run.sh                       # every program
#   bench/programs/run.sh few_shot_gsm hellaswag
#
# Environment:
#   SGL        the sgl binary (default build/sgl)
#   MODEL      model path (default models/SmolLM2-135M-Instruct.Q4_1.gguf when
#              it exists, else sgl's own default)
#   N          instances per program (default: per program, below; sized so a
#              run generates a few hundred tokens with the default model on CPU)
#   SGL_FLAGS  extra flags for `sgl run` (e.g. --chunk-size 256)
#   KEEP       a directory to keep each run's stdout/stderr in
#
# Figures come from `sgl run --batch DATA --stats`: programs/s and tokens/s
# are measured here over the whole command (instances / wall seconds,
# generated tokens / wall seconds); the token counts and the hit rate come
# from the --stats report on stderr, read as the first number after
# "prompt tokens", "cached tokens", "generated tokens" and "hit rate" (any
# case, space or underscore); hit rate = cached / prompt when both are there.
# Data: bench/programs/data/*.jsonl, made by data/make_data.py.

SGL=${SGL:-build/sgl}
dir=$(dirname "$0")
data=$dir/data
if [ -z "${MODEL+x}" ] && [ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
fi
[ -x "$SGL" ] || { echo "bench/programs: $SGL not found (make)"; exit 1; }

# program      data        instances
table="few_shot_gsm    gsm         16
hellaswag       hellaswag   16
tree_of_thought gsm         2
multi_chain     gsm         4
multi_turn_chat chat        6
json_extract    cities      8"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sgl-bench-programs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# num FILE PATTERN: the first number after PATTERN (an awk ERE, lower case)
# on the first line of FILE that has both; empty if none.
num() {
    awk -v pat="$2" '{
        l = tolower($0)
        if (match(l, pat)) {
            rest = substr(l, RSTART + RLENGTH)
            if (match(rest, /[0-9]+(\.[0-9]+)?/)) { print substr(rest, RSTART, RLENGTH); exit }
        }
    }' "$1"
}

# ratio A B [SCALE]: SCALE * A / B with two decimals; "-" when A or B is
# not a number or B is zero.
ratio() {
    for x in "$1" "$2"; do
        case "$x" in ""|*[!0-9.]*) echo "-"; return ;; esac
    done
    awk -v a="$1" -v b="$2" -v k="${3:-1}" 'BEGIN {
        if (b + 0 == 0) print "-"; else printf "%.2f\n", k * a / b }'
}

now() { date +%s.%N; }

# run PROG DATAFILE MODE(on|off): leaves $tmp/PROG.MODE.{out,err,wall,status}
run() {
    p=$1; in=$2; mode=$3
    set -- run "$dir/$p.sgl" --batch "$in" --stats
    [ -n "$MODEL" ] && set -- "$@" --model "$MODEL"
    [ "$mode" = off ] && set -- "$@" --no-prefix-cache
    s=$(now)
    # shellcheck disable=SC2086  # SGL_FLAGS is a list of flags
    "$SGL" "$@" $SGL_FLAGS >"$tmp/$p.$mode.out" 2>"$tmp/$p.$mode.err" </dev/null
    echo $? >"$tmp/$p.$mode.status"; e=$(now)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", e - s }' >"$tmp/$p.$mode.wall"
    if [ -n "$KEEP" ]; then
        mkdir -p "$KEEP"; cp "$tmp/$p.$mode.out" "$tmp/$p.$mode.err" "$KEEP/"
    fi
}

# figures PROG MODE N: prints "prog/s tok/s hit%" for one run (or FAILED)
figures() {
    f=$tmp/$1.$2
    if [ "$(cat "$f.status")" != 0 ]; then echo "failed:$(cat "$f.status") - -"; return; fi
    wall=$(cat "$f.wall")
    prompt=$(num "$f.err" "prompt[ _]tokens")
    cached=$(num "$f.err" "cached[ _]tokens")
    gen=$(num "$f.err" "generated[ _]tokens")
    hit=$(num "$f.err" "hit[ _]rate")
    if [ -n "$prompt" ] && [ -n "$cached" ] && [ "$prompt" != 0 ]; then
        hit=$(ratio "$cached" "$prompt" 100)
    fi
    [ -n "$hit" ] || hit="-"
    echo "$(ratio "$3" "$wall") $(ratio "$gen" "$wall") $hit"
}

# accuracy PROG MODE N: share of result lines whose value says "correct": true
accuracy() {
    f=$tmp/$1.$2.out
    grep -q '"correct"' "$f" 2>/dev/null || { echo "-"; return; }
    ok=$(grep -c '"correct": *true' "$f")
    ratio "$ok" "$3"
}

want=$*
printf '%-16s %3s | %-26s | %-26s | %7s %5s %s\n' "" "" "cache on" "cache off" "" "" ""
printf '%-16s %3s | %8s %8s %8s | %8s %8s %8s | %7s %5s %s\n' \
    program n prog/s tok/s hit% prog/s tok/s hit% speedup acc outputs
echo "$table" | while read -r p d n0; do
    if [ -n "$want" ]; then
        case " $want " in *" $p "*) ;; *) continue ;; esac
    fi
    n=${N:-$n0}
    head -n "$n" "$data/$d.jsonl" >"$tmp/$p.in"
    n=$(wc -l <"$tmp/$p.in" | tr -d ' ')
    run "$p" "$tmp/$p.in" on
    run "$p" "$tmp/$p.in" off
    # shellcheck disable=SC2046  # three words
    set -- $(figures "$p" on "$n"); on_ps=$1; on_ts=$2; on_hit=$3
    # shellcheck disable=SC2046
    set -- $(figures "$p" off "$n"); off_ps=$1; off_ts=$2; off_hit=$3
    speed=$(ratio "$on_ps" "$off_ps")
    [ "$speed" = - ] || speed="${speed}x"
    if cmp -s "$tmp/$p.on.out" "$tmp/$p.off.out"; then same=same; else same=differ; fi
    printf '%-16s %3s | %8s %8s %8s | %8s %8s %8s | %7s %5s %s\n' "$p" "$n" \
        "$on_ps" "$on_ts" "$on_hit" "$off_ps" "$off_ts" "$off_hit" "$speed" \
        "$(accuracy "$p" on "$n")" "$same"
    for m in on off; do
        if [ "$(cat "$tmp/$p.$m.status")" != 0 ]; then
            echo "  $p (cache $m) stderr:"; head -n 5 "$tmp/$p.$m.err" | sed 's/^/    /'
        fi
    done
done
