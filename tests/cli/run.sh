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

# make install puts the page and the completions under the prefix
prefix=$(mktemp -d)
if make --no-print-directory -s install PREFIX="$prefix" >/dev/null 2>&1 &&
   [ -f "$prefix/share/bash-completion/completions/sgl" ] && [ -f "$prefix/share/zsh/site-functions/_sgl" ] &&
   MANWIDTH=80 man -l "$prefix/share/man/man1/sgl.1" 2>/dev/null | grep -q "SGL(1)"; then ok
else bad install "man page or completions missing under $prefix"; fi
rm -rf "$prefix"

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
check --tp-comm sgl generate --tp-c
check nccl sgl serve --tp-comm n
check run sgl help r
rm -rf "$bindir"

# the errors a new user meets first, word for word (stderr and exit status)
work=$(mktemp -d)
expect() {   # expect STATUS FILE-CONTENT ARGS... ; the wanted stderr on stdin
    status=$1; src=$2; shift 2
    printf '%b' "$src" > "$work/prog.sgl"
    cat > "$work/want"
    (cd "$work" && SGL_MODEL=/nonexistent/model.gguf "$SGL" "$@" >/dev/null 2>"$work/got" </dev/null)
    st=$?
    if [ "$st" != "$status" ]; then bad "error $*" "exit status $st, expected $status: $(cat "$work/got")"
    elif ! cmp -s "$work/want" "$work/got"; then bad "error $*" "$(diff "$work/want" "$work/got")"
    else ok; fi
}
expect 1 'fn main() {\n    let = 3\n}\n' run prog.sgl <<'EOM'
prog.sgl:2:9: error: unexpected '='
    let = 3
        ^
EOM
expect 1 'fn main() {\n    let count = 1\n    print(cuont)\n}\n' run prog.sgl <<'EOM'
prog.sgl:3:11: error: undefined name 'cuont' (did you mean 'count'?)
    print(cuont)
          ^
EOM
expect 2 'fn main() {\n    "Q: "\n    gen(max_token: 8)\n}\n' run prog.sgl <<'EOM'
prog.sgl:3:8: error: gen() has no option 'max_token' (did you mean 'max_tokens'?)
  at main (prog.sgl:3:8)
EOM
expect 2 'fn main() {\n    "The capital of France is"\n    gen(max_tokens: 4)\n}\n' run prog.sgl <<'EOM'
prog.sgl:3:8: error: gen(): the model refused the request: no model at /nonexistent/model.gguf: pass --model or run make model
  at main (prog.sgl:3:8)
EOM
expect 2 'fn main() {\n    let xs = [1, 2]\n    print(xs[5])\n}\n' run prog.sgl <<'EOM'
prog.sgl:3:11: error: list index 5 out of range (length 2)
  at main (prog.sgl:3:11)
EOM
expect 64 'fn main() {}\n' run prog.sgl oops <<'EOM'
sgl run: argument 'oops' is not name=value
EOM
expect 64 'fn main() {}\n' rn prog.sgl <<'EOM'
sgl: unknown command 'rn' (did you mean 'run'?)
EOM
expect 64 'fn main() {}\n' run prog.sgl --stat <<'EOM'
sgl run: unknown option --stat (did you mean '--stats'?)
EOM
expect 64 'fn main() {}\n' generate --temprature 0.5 hi <<'EOM'
sgl generate: unknown option --temprature (did you mean '--temperature'?)
EOM
expect 64 'fn main() {}\n' help srve <<'EOM'
sgl help: no topic 'srve' (did you mean 'serve'?) (topics: the commands, gen, exit)
EOM
if "$SGL" help gen | grep -q "^  max_tokens  *max_tokens  *max_new_tokens$" && "$SGL" help run | grep -q "^usage: sgl run"; then ok
else bad help "sgl help gen / sgl help run"; fi
# --batch lines get the command-line arguments: name=value over the line's
# own, the line's over --args (no model call: no model is loaded)
printf '{"a":1}\n{"a":2,"b":5}\n' > "$work/b.jsonl"
echo '{"b":100,"c":7}' > "$work/a.json"
prog='fn main(a, b = 1, c = 0) { return a * 1000 + b * 10 + c }'
got=$("$SGL" -e "$prog" --batch "$work/b.jsonl" --args "$work/a.json" c=3 2>&1 | tr -d '\n')
want='{"text":"","vars":{},"value":2003}{"text":"","vars":{},"value":2053}'
if [ "$got" = "$want" ]; then ok; else bad batch-args "got $got"; fi
# sgl check --any-whitespace: a pretty-printed object is refused without it,
# accepted with it (the default model's tokenizer; skipped without the model)
if [ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    echo '{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}' > "$work/s.json"
    pretty=$(printf '{\n  "a": 1\n}')
    a=$("$SGL" check --model models/SmolLM2-135M-Instruct.Q4_1.gguf --json-schema "$work/s.json" "$pretty"); sa=$?
    b=$("$SGL" check --model models/SmolLM2-135M-Instruct.Q4_1.gguf --json-schema "$work/s.json" --any-whitespace \
        "$pretty"); sb=$?
    if [ "$a $sa" = "reject at 1 1" ] && [ "$b $sb" = "accept 0" ]; then ok; else bad any-whitespace "got '$a' $sa / '$b' $sb"; fi
fi
rm -rf "$work"

# zsh completion parses
if command -v zsh >/dev/null 2>&1; then
    if zsh -n cli/completions/_sgl; then ok; else bad zsh "syntax"; fi
fi
echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
