#!/bin/sh
# tests/cli/run.sh — the command line's extras: the man page renders without
# warnings, the bash completion completes commands, flags and option values
# from sgl's own help, and the zsh completion parses (zsh -n) when zsh is
# installed. Usage: SGL=build/sgl sh tests/cli/run.sh
SGL=${SGL:-build/sgl}
case $SGL in /*) ;; *) SGL=$(pwd)/$SGL ;; esac
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $1: $2"; }

# the man page
out=$(MANWIDTH=80 man --warnings=w -l cli/sgl.1 2>&1 >/dev/null)
if [ -n "$out" ]; then bad man "warnings: $out"
elif MANWIDTH=80 man -l cli/sgl.1 2>/dev/null | grep -q "sgl - compile, run and serve"; then ok
else bad man "does not render"; fi

# bash completion, driven as bash's completer would
bindir=$(mktemp -d)
ln -s "$SGL" "$bindir/sgl"
complete() {   # complete WORD... : prints COMPREPLY for the last word
    PATH="$bindir:$PATH" bash -c '. cli/completions/sgl.bash; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _sgl; echo "${COMPREPLY[*]}"' sgl "$@"
}
check() {      # check WANT WORD... : WANT is among the completions
    want=$1; shift
    got=$(complete "$@")
    case " $got " in *" $want "*) ok ;; *) bad completion "sgl $* -> '$got' lacks $want" ;; esac
}
check run sgl r
check compile sgl co
check --stats sgl run --st
check --max-tokens sgl generate --max
check --regex sgl check --re
check llama3 sgl run --chat-template ll
check run sgl help r
rm -rf "$bindir"

# zsh completion parses
if command -v zsh >/dev/null 2>&1; then
    if zsh -n cli/completions/_sgl; then ok; else bad zsh "syntax"; fi
fi
echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
