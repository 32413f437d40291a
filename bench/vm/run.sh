#!/bin/sh
# bench/vm: CPU-bound programs timed in sgl and in Lua 5.4, side by side.
# Prints wall seconds (best of 3) per program and the ratio sgl/lua
# (below 1.00 means sgl is faster). Outputs of the two must agree.
SGL=${1:-build/sgl}
dir=$(dirname "$0")
LUA=$(command -v lua5.4 || command -v lua)
[ -n "$LUA" ] || { echo "bench/vm: lua5.4 not found (make deps)"; exit 1; }
best() {  # best wall time of 3 runs of "$@", in seconds
    b=""
    for _ in 1 2 3; do
        s=$(date +%s.%N); "$@" > /tmp/sgl-bench-out.$$ 2>&1; e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    echo "$b"
}
printf '%-10s %10s %10s %8s\n' program sgl_s lua_s ratio
for p in fib lists maps strings; do
    so=$("$SGL" run "$dir/$p.sgl" 2>&1); lo=$("$LUA" "$dir/$p.lua" 2>&1)
    [ "$so" = "$lo" ] || echo "  note: outputs differ for $p: sgl='$so' lua='$lo'"
    ts=$(best "$SGL" run "$dir/$p.sgl"); tl=$(best "$LUA" "$dir/$p.lua")
    printf '%-10s %10.3f %10.3f %8.2f\n' "$p" "$ts" "$tl" "$(echo "$ts / $tl" | bc -l)"
done
rm -f /tmp/sgl-bench-out.$$
