#!/bin/sh
# Language conformance driver.
#
# Each case is tests/lang/NAME.sgl with expectations beside it:
#   NAME.out     expected stdout (required)
#   NAME.args    command-line arguments after the file (optional, one line)
#   NAME.status  expected exit status (optional, default 0)
#   NAME.err     lines that must each appear in stderr (optional; fixed strings)
# Prints one line per failure and the closing line "N passed, N failed".
SGL=${SGL:-build/sgl}
case $SGL in /*) ;; *) SGL=$(pwd)/$SGL ;; esac
dir=$(dirname "$0")
tmp=${TMPDIR:-/tmp}/sgl-lang.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
for src in "$dir"/*.sgl; do
    name=${src%.sgl}
    base=$(basename "$name")
    [ -f "$name.out" ] || continue
    args=""; [ -f "$name.args" ] && args=$(cat "$name.args")
    want_status=0; [ -f "$name.status" ] && want_status=$(cat "$name.status")
    # shellcheck disable=SC2086
    (cd "$dir" && eval "\"$SGL\" run \"$base.sgl\" $args") >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    ok=1
    if [ "$status" != "$want_status" ]; then
        echo "FAIL $base: exit status $status, expected $want_status"; ok=0
    fi
    if ! cmp -s "$tmp/out" "$name.out"; then
        echo "FAIL $base: stdout differs"; diff "$name.out" "$tmp/out" | head -20; ok=0
    fi
    if [ -f "$name.err" ]; then
        while IFS= read -r line; do
            grep -qF -- "$line" "$tmp/err" || { echo "FAIL $base: stderr lacks: $line"; ok=0; }
        done < "$name.err"
    fi
    if [ $ok = 1 ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); [ -s "$tmp/err" ] && { echo "  stderr:"; head -5 "$tmp/err"; }
    fi
done
# Programs that need a model: they must parse and compile (tests/lang/compile/).
for src in "$dir"/compile/*.sgl; do
    [ -f "$src" ] || continue
    if "$SGL" compile "$src" -o "$tmp/prog.sglc" >"$tmp/out" 2>"$tmp/err"; then pass=$((pass + 1))
    else fail=$((fail + 1)); echo "FAIL compile/$(basename "$src")"; head -5 "$tmp/err"; fi
done
root=$(cd "$dir/../.." && pwd)
if [ -f "$dir/compile/extra.list" ]; then
    for rel in $(grep -v '^#' "$dir/compile/extra.list"); do
        if "$SGL" compile "$root/$rel" -o "$tmp/prog.sglc" >"$tmp/out" 2>"$tmp/err"; then pass=$((pass + 1))
        else fail=$((fail + 1)); echo "FAIL compile $rel"; head -5 "$tmp/err"; fi
    done
fi
echo "lang: $pass passed, $fail failed"
[ "$fail" = 0 ]
