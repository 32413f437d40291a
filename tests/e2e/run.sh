#!/bin/sh
# End-to-end tests: `sgl run` on the real default model
# (models/SmolLM2-135M-Instruct.Q4_1.gguf, `make model`). `make e2e-test`
# runs them; they skip, with a message, when the model is absent.
#
#   a  fork over a long shared prompt: --stats shows the prompt computed once
#   c  greedy gen: the same output with the prefix cache off and with
#      --chunk-size 7
#   d  --batch: results in input order (an error in its place)
#   e  examples/*.sgl run to completion; their structure is checked (the
#      content is the model's)
#   f  sgl generate refuses bad option values with status 64, and streams a
#      greedy continuation that stops at --stop, with its --stats line
#   g  sgl check: accept / reject at BYTE / exit 2 for a refused feature,
#      --jsonl, --segment random, a vocabulary-only GGUF
#   h  constrained gen in a program: regex, type, json and grammar outputs
#      have their shape; a bad constraint is a runtime error with its line
#      while the other instances of the batch still finish
# (b, select against scoring each choice alone, is tests/unit/test_select_e2e.c.)
#
# Each case prints "ok NAME (seconds)" or "FAIL NAME: why"; the last line is
# "e2e: N passed, N failed". JSON is read with python3.
SGL=${SGL:-build/sgl}
case $SGL in /*) ;; *) SGL=$(pwd)/$SGL ;; esac
dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$dir/../.." && pwd)
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$model" ]; then
    echo "e2e: skipped: no model at models/SmolLM2-135M-Instruct.Q4_1.gguf (run make model)"
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "e2e: skipped: python3 is needed to read the JSON results"
    exit 0
fi
tmp=${TMPDIR:-/tmp}/sgl-e2e.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$root" || exit 1
pass=0; fail=0
t0=0

now() { date +%s.%N; }
start() { t0=$(now); }
ok() { pass=$((pass + 1)); echo "ok $1 ($(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1fs", a - b }'))"; }
bad() { fail=$((fail + 1)); echo "FAIL $1: $2"; [ -s "$tmp/err" ] && { echo "  stderr:"; tail -5 "$tmp/err"; }; }

# stat NAME FILE: a number from the --stats line ("cached tokens" -> N)
stat() { sed -n "s/^stats: .*$1 \([0-9][0-9]*\).*/\1/p" "$2" | tail -1; }

# py FILE CODE: runs CODE with `lines` = FILE's lines, `js` = the JSON lines
# parsed; exits non-zero (printing why) when an assert fails.
py() {
    python3 - "$1" "$2" <<'EOF'
import json, re, sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
if lines and lines[-1] == "": lines.pop()
js = []
for l in lines:
    try: js.append(json.loads(l))
    except ValueError: js.append(None)
try:
    exec(sys.argv[2])
except AssertionError as e:
    print(e); sys.exit(1)
EOF
}

# ---- a: a fork's shared prompt is computed once ----------------------------
case_fork_shared() {
    start
    n=4
    "$SGL" run tests/e2e/fork_shared.sgl --fn shared --json >"$tmp/shared.json" 2>"$tmp/err" || { bad fork_shared "--fn shared failed"; return; }
    text=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["value"], end="")' "$tmp/shared.json")
    P=$("$SGL" tokenize "$text" 2>"$tmp/err" | wc -w)
    [ "$P" -gt 200 ] || { bad fork_shared "the shared prompt has only $P tokens"; return; }
    "$SGL" run tests/e2e/fork_shared.sgl n=$n --stats >"$tmp/out" 2>"$tmp/err" || { bad fork_shared "exit status $?"; return; }
    "$SGL" run tests/e2e/fork_shared.sgl n=$n --stats --no-prefix-cache >"$tmp/out2" 2>"$tmp/err2" || { bad fork_shared "--no-prefix-cache: exit status $?"; return; }
    prompt=$(stat "prompt tokens" "$tmp/err"); cached=$(stat "cached tokens" "$tmp/err"); computed=$(stat "computed tokens" "$tmp/err")
    cached_off=$(stat "cached tokens" "$tmp/err2"); computed_off=$(stat "computed tokens" "$tmp/err2")
    [ -n "$cached" ] && [ -n "$computed_off" ] || { bad fork_shared "no stats line"; return; }
    why=""
    # every branch's prompt is the shared P tokens and a short question;
    # n-1 of them find the P tokens cached (a token at the boundary may
    # tokenize differently inside the whole prompt: slack of 2)
    [ "$prompt" -ge $((n * P)) ] || why="$why prompt tokens $prompt < n*P = $((n * P));"
    [ "$cached" -ge $(((n - 1) * (P - 2))) ] || why="$why cached tokens $cached < (n-1)*(P-2) = $(((n - 1) * (P - 2)));"
    [ "$cached" -le $(((n - 1) * (P + 20))) ] || why="$why cached tokens $cached > (n-1)*(P+20);"
    # so the prompt was run through the model once: P plus n short suffixes
    [ "$computed" -lt $((P + n * 40)) ] || why="$why computed tokens $computed >= P + n*40 = $((P + n * 40));"
    # without the cache every branch computes it
    [ "$cached_off" -eq 0 ] || why="$why cached tokens $cached_off with --no-prefix-cache;"
    [ "$computed_off" -ge $((n * P)) ] || why="$why computed tokens $computed_off < n*P with --no-prefix-cache;"
    if [ -n "$why" ]; then bad fork_shared "P=$P n=$n:$why"; else
        ok "fork_shared (P=$P n=$n: cached $cached, computed $computed; without the cache computed $computed_off)"; fi
}

# ---- c: greedy output does not depend on the cache or the chunk size -------
case_greedy() {
    start
    "$SGL" run tests/e2e/greedy.sgl >"$tmp/g1" 2>"$tmp/err" || { bad greedy "exit status $?"; return; }
    py "$tmp/g1" 'assert js[0] and len(js[0]) == 4 and len(js[0][0]) > 0, "no output: %r" % lines[:1]' >"$tmp/why" ||
        { bad greedy "$(cat "$tmp/why")"; return; }
    for opts in "--no-prefix-cache" "--chunk-size 7"; do
        # shellcheck disable=SC2086
        "$SGL" run tests/e2e/greedy.sgl $opts >"$tmp/g2" 2>"$tmp/err" || { bad greedy "$opts: exit status $?"; return; }
        if ! cmp -s "$tmp/g1" "$tmp/g2"; then
            bad greedy "$opts changes the output"; diff "$tmp/g1" "$tmp/g2" | head -6; return
        fi
    done
    ok greedy
}

# ---- d: --batch keeps input order -------------------------------------------
case_batch() {
    start
    "$SGL" run tests/e2e/batch.sgl --batch tests/e2e/batch.jsonl >"$tmp/out" 2>"$tmp/err"
    st=$?
    [ $st = 2 ] || { bad batch "exit status $st, expected 2 (line 3 is an error)"; return; }
    py "$tmp/out" '
inputs = [json.loads(l) for l in open("tests/e2e/batch.jsonl")]
assert len(js) == len(inputs), "%d result lines for %d inputs" % (len(js), len(inputs))
for k, (inp, res) in enumerate(zip(inputs, js)):
    assert res is not None, "line %d is not JSON: %r" % (k + 1, lines[k])
    if "i" not in inp:
        assert "no parameter" in res.get("error", ""), "line %d: %r" % (k + 1, res)
        continue
    assert res.get("value") == k, "line %d holds value %r" % (k + 1, res.get("value"))
    assert res["text"].startswith("Say the word %s a few times: " % inp["word"]), "line %d: %r" % (k + 1, res["text"])
    assert res["text"].endswith(res["vars"]["echo"]), "line %d: echo not at the end" % (k + 1)
' >"$tmp/why" || { bad batch "$(cat "$tmp/why")"; return; }
    ok batch
}

# ---- e: the examples run to completion ----------------------------------------
# example NAME CHECK [ARGS]: runs examples/NAME.sgl --json, then CHECK (python;
# `res` = the result object, `printed` = the lines printed before it)
example() {
    start
    name=$1; check=$2; shift 2
    "$SGL" run "examples/$name.sgl" --json "$@" >"$tmp/out" 2>"$tmp/err"
    st=$?
    [ $st = 0 ] || { bad "example $name" "exit status $st"; return; }
    py "$tmp/out" "res = js[-1]
assert isinstance(res, dict) and 'text' in res, 'no result object: %r' % lines[-1:]
printed = lines[:-1]
$check" >"$tmp/why" || { bad "example $name" "$(cat "$tmp/why")"; return; }
    ok "example $name"
}

# ---- the agent's other header questions, in one --batch run ----------------------
case_agent_questions() {
    start
    printf '%s\n' '{"question": "How high is Mount Everest in km?"}' \
        '{"question": "What is the population of France in millions, times 3?"}' \
        '{"question": "What is the population of Kenya in millions, times 2?"}' >"$tmp/q.jsonl"
    "$SGL" run examples/agent.sgl --batch "$tmp/q.jsonl" >"$tmp/out" 2>"$tmp/err" ||
        { bad agent_questions "exit status $?: $(cat "$tmp/err")"; return; }
    py "$tmp/out" 'vals = [j["value"] for j in js if isinstance(j, dict) and "value" in j]
assert vals == ["8.849", "204", "110"], "answers: %r" % vals' >"$tmp/why" ||
        { bad agent_questions "$(cat "$tmp/why")"; return; }
    ok agent_questions
}

# ---- f: sgl generate refuses bad option values (status 64) -------------------
case_generate_options() {
    start
    for opts in "--max-tokens -5" "--max-tokens abc" "--temperature -1" "--top-k -3" "--top-p 2"; do
        # shellcheck disable=SC2086
        "$SGL" generate $opts "Hello" >"$tmp/out" 2>"$tmp/err"
        st=$?
        [ $st = 64 ] || { bad generate_options "$opts: exit status $st, expected 64"; return; }
    done
    "$SGL" generate --max-tokens 0 "Hello" >"$tmp/out" 2>"$tmp/err" || { bad generate_options "--max-tokens 0: exit status $?"; return; }
    "$SGL" generate --temperature 0 --max-tokens 8 --stop . --stats "The capital of France is" >"$tmp/out" 2>"$tmp/err" ||
        { bad generate_options "a greedy completion: exit status $?"; return; }
    grep -q '^ Paris$' "$tmp/out" || { bad generate_options "expected ' Paris' (stopped at '.'), got: $(cat "$tmp/out")"; return; }
    [ "$(stat "generated tokens" "$tmp/err")" -ge 1 ] 2>/dev/null && grep -q "finish stop" "$tmp/err" ||
        { bad generate_options "stats: $(cat "$tmp/err")"; return; }
    ok generate_options
}

# ---- g: sgl check --------------------------------------------------------------
case_check() {
    start
    out=$("$SGL" check --regex '(19|20)\d\d' 1969 2>"$tmp/err"); st=$?
    [ "$st:$out" = "0:accept" ] || { bad check "1969: $st $out"; return; }
    out=$("$SGL" check --regex '(19|20)\d\d' 19691 2>"$tmp/err"); st=$?
    [ "$st:$out" = "1:reject at 4" ] || { bad check "19691: $st $out"; return; }
    "$SGL" check --regex '(a)\1' a >"$tmp/out" 2>"$tmp/err"; st=$?
    [ $st = 2 ] && grep -q backreference "$tmp/err" || { bad check "backreference: exit $st"; return; }
    printf '%s' '{"type":"object","properties":{"n":{"type":"integer","minimum":3,"maximum":250}},"required":["n"],"additionalProperties":false}' >"$tmp/s.json"
    printf '%s\n' '"{\"n\": 3}"' '"{\"n\": 251}"' '"{\"n\":250}"' '"{\"m\": 4}"' >"$tmp/in.jsonl"
    "$SGL" check --json-schema "$tmp/s.json" --jsonl "$tmp/in.jsonl" >"$tmp/out" 2>"$tmp/err"; st=$?
    [ $st = 1 ] && [ "$(tr '\n' '|' <"$tmp/out")" = "accept|reject at 8|accept|reject at 2|" ] ||
        { bad check "jsonl: exit $st: $(cat "$tmp/out")"; return; }
    out=$("$SGL" check --model build/vocab/ggml-vocab-llama-bpe.gguf --segment random --seed 5 \
        --json-schema "$tmp/s.json" '{"n": 199}' 2>"$tmp/err"); st=$?
    [ "$st:$out" = "0:accept" ] || { bad check "random segmentation, llama-3 vocabulary: $st $out"; return; }
    printf 'root ::= "(" root ")" | ""\n' >"$tmp/g.gbnf"
    out=$("$SGL" check --grammar "$tmp/g.gbnf" '((()))' 2>"$tmp/err"); st=$?
    [ "$st:$out" = "0:accept" ] || { bad check "grammar: $st $out"; return; }
    ok check
}

# ---- h: constrained gen in programs -------------------------------------------------
case_constrained_program() {
    start
    cat >"$tmp/c.sgl" <<'SGL'
"The first Moon landing was in the year " gen("year", regex: re"(19|20)\d\d")
"\nIs the sky blue? " gen("yes", type: "bool")
"\nHow many legs has a cat? " gen("legs", type: "int")
"\nA person as JSON: " gen("p", json: {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}}, "required": ["name"], "additionalProperties": false})
grammar yn {
    root ::= ("yes" | "no") "."
}
"\nAnswer yes or no: " gen("g", grammar: yn)
SGL
    "$SGL" run --json "$tmp/c.sgl" >"$tmp/out" 2>"$tmp/err" || { bad constrained_program "exit status $?"; return; }
    py "$tmp/out" '
res = js[-1]
v = res["vars"]
assert re.fullmatch(r"(19|20)\d\d", v["year"]), v
assert isinstance(v["yes"], bool) and isinstance(v["legs"], int), v
p = json.loads(v["p"]); assert set(p) == {"name"} and len(p["name"]) <= 12, v
assert v["g"] in ("yes.", "no."), v' || { bad constrained_program "shapes: $(cat "$tmp/out")"; return; }
    printf '%s\n' 'fn main(x) {' '    "Value: " gen("v", regex: "[" + x, max_tokens: 4)' '}' >"$tmp/bad.sgl"
    printf '%s\n' '{"x": "0-9]"}' '{"x": "(("}' '{"x": "0-9]+"}' >"$tmp/in.jsonl"
    "$SGL" run --batch "$tmp/in.jsonl" "$tmp/bad.sgl" >"$tmp/out" 2>"$tmp/err"
    py "$tmp/out" '
assert len(js) == 3, js
assert "error" not in js[0] and "error" not in js[2], js
assert "regex" in js[1]["error"] and ":2:" in js[1]["error"], js[1]' ||
        { bad constrained_program "bad constraint in a batch: $(cat "$tmp/out") $(cat "$tmp/err")"; return; }
    ok constrained_program
}

case_fork_shared
case_greedy
case_generate_options
case_check
case_constrained_program
case_batch
example tips '
t = res["text"]
for part in ("Here are two tips for", "\nTip 1: ", "\nTip 2: ", "\nIn summary, "):
    assert part in t, "missing %r" % part
assert isinstance(res["vars"].get("summary"), str)'
example few_shot_qa '
assert res["text"].rstrip().count("Question: ") == 9, "not 8 examples and the question"
assert isinstance(res["value"], str) and isinstance(res["vars"].get("answer"), str)'
example chat '
assert isinstance(res["value"], list) and len(res["value"]) == 3, "replies: %r" % res["value"]
assert len([l for l in printed if l.startswith("user: ")]) == 3, "printed: %r" % printed
# the chat template comes from the model (ChatML for SmolLM2)
assert "<|im_start|>user\nName three fruits.<|im_end|>\n<|im_start|>assistant\n" in res["text"]'
example agent '
steps = [l for l in printed if re.match(r"step [0-9]+: ", l)]
assert steps == ["step 1: look up japan -> Japan: capital Tokyo; population about 124 million; currency yen.",
                 "step 2: calculate 124 * 2 -> 248", "step 3: answer -> 248"], "steps: %r" % printed
assert res["value"] == "248", "answer: %r" % res["value"]
assert res["text"].startswith("<|im_start|>system\n"), "no chat template: %r" % res["text"][:40]'
case_agent_questions
example extract '
v = res["value"]
assert isinstance(v, dict) and sorted(v) == ["age", "city", "job", "name", "tone"], "record: %r" % v
assert isinstance(v["age"], int) and 0 <= v["age"] <= 120 and v["tone"] in ("positive", "neutral", "negative"), "%r" % v
# what the default model gets right on the default text, greedy
assert v == {"name": "Maria Lopez", "age": 34, "job": "teacher", "city": "Madrid", "tone": "positive"}, "%r" % v
assert printed[-1] == "Maria Lopez (34) works as a teacher in Madrid; tone: positive", "printed: %r" % printed'
example tree_of_thought '
rows = [l for l in printed if re.match(r"plan [12] \| score [1-5] \| ", l)]
assert len(rows) == 4, "4 scored solutions expected: %r" % printed
assert "<|im_start|>assistant\nPlan: " in res["text"]
assert res["value"] is None or isinstance(res["value"], int)'

echo "e2e: $pass passed, $fail failed"
[ "$fail" = 0 ]
