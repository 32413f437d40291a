"""tests/repl/test_repl.py — `sgl repl` driven through a pseudo-terminal
(pexpect), as a person at a terminal would: multi-line entries, history
across two sessions, tab completion, Ctrl-C during a gen (the prompt comes
back and the engine is idle), :undo, and :save giving a program that
`sgl run` runs to the same state text. Also stdin that is not a terminal
(no prompts) and the REPL without a model.

$SGL is the sgl binary (make repl-test). HOME is a temporary directory, so
~/.sgl_history is the test's own."""

import os
import re
import subprocess
import termios
import time

import pexpect
import pytest

SGL = os.environ.get("SGL") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "sgl")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = "sgl> "
MORE = r"\.\.\.> "


def editing(p):
    """Waits until the line editor has the terminal in raw mode (ICANON
    off): keys typed before would go to the kernel's line discipline (a
    Ctrl-D there is lost, a Ctrl-C arrives as a signal). A state, not a
    delay: polled every 10 ms, for up to the test's timeout."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not termios.tcgetattr(p.child_fd)[3] & termios.ICANON:
            return
        time.sleep(0.01)
    raise AssertionError("the line editor never took the terminal")


def prompt(p, pattern=PROMPT):
    p.expect(pattern)
    editing(p)


def spawn(home, *args, model=True):
    env = dict(os.environ, HOME=str(home), TERM="xterm", NO_COLOR="1")
    env.pop("SGL_MODEL", None)
    argv = ["repl", "--threads", "2"] + (["--model", MODEL] if model else ["--model", "/nonexistent/m.gguf"]) + list(args)
    p = pexpect.spawn(SGL, argv, env=env, encoding="utf-8", timeout=30, dimensions=(40, 200))
    prompt(p)
    return p


def finish(p):
    editing(p)
    p.sendcontrol("d")
    p.expect(pexpect.EOF)
    p.close()
    assert p.exitstatus == 0


def entry(p, line):
    p.sendline(line)
    p.expect(PROMPT)
    out = p.before
    editing(p)
    return out


def needs_model():
    if not os.path.exists(MODEL):
        pytest.skip("no model: make model")


def test_multi_line_entries_continue_until_the_parser_is_satisfied(tmp_path):
    p = spawn(tmp_path)
    p.sendline("fn area(w, h) {")
    prompt(p, MORE)
    p.sendline("  let a = w *")        # ends inside an expression: more
    prompt(p, MORE)
    p.sendline("    h")
    prompt(p, MORE)
    p.sendline("  return a")
    prompt(p, MORE)
    p.sendline("}")
    prompt(p)
    out = entry(p, '"area " + str(area(6, 7))')
    assert "area 42" in out
    # a real syntax error is reported at once, not continued
    out = entry(p, "let = 3")
    assert "<repl>:1:" in out and "error" in out
    finish(p)


def test_history_is_kept_across_two_sessions(tmp_path):
    p = spawn(tmp_path)
    entry(p, 'let remembered = "from the first session"')
    finish(p)
    assert "remembered" in (tmp_path / ".sgl_history").read_text()
    q = spawn(tmp_path)
    q.send("\x1b[A")                   # up: the last entry of the first session
    q.expect("from the first session")
    q.send("\r")
    prompt(q)
    out = entry(q, "remembered")
    assert "from the first session" in out
    finish(q)


def test_tab_completes_names_builtins_options_and_commands(tmp_path):
    p = spawn(tmp_path)
    entry(p, "let unusual_name = 5")
    p.send('str(unusual_n\t) + "!"\r')  # a name of the session
    p.expect(PROMPT)
    assert "5!" in p.before
    editing(p)
    p.send('"j" + json_enc\t({"a": 1})\r')   # a built-in
    p.expect(PROMPT)
    assert 'j{"a":1}' in p.before
    editing(p)
    p.send(":hel\t\r")                  # a command
    p.expect(PROMPT)
    assert ":undo" in p.before and ":tokens" in p.before
    editing(p)
    p.send("max_tok\t")                 # a gen option: the editor adds the rest
    p.expect("ens")
    p.sendcontrol("c")                  # Ctrl-C at the prompt drops the line
    prompt(p)
    out = entry(p, '"still " + str(unusual_name)')
    assert "still 5" in out
    finish(p)


def test_ctrl_c_cancels_a_running_gen_and_the_engine_is_idle(tmp_path):
    needs_model()
    p = spawn(tmp_path)
    p.sendline('"Story:" gen("s", max_tokens: 4000, ignore_eos: true, temperature: 0)')
    p.expect("Story:")
    p.expect(r"\w+ \w+ \w+")           # generated words are streaming
    p.sendintr()
    p.expect("interrupted")
    prompt(p)
    out = entry(p, ":stats")
    m = re.search(r"requests (\d+) \(in flight (\d+)\).*generated (\d+)", out)
    assert m, out
    assert m.group(2) == "0", out               # nothing left in the engine
    assert int(m.group(3)) < 4000, out          # it stopped early
    # and the session goes on, the engine serving the next gen
    out = entry(p, '" ok" gen(max_tokens: 2, temperature: 0)')
    assert "ok" in out
    finish(p)


def test_undo_drops_the_last_piece(tmp_path):
    p = spawn(tmp_path)
    entry(p, '"one "')
    entry(p, '"two "')
    out = entry(p, ":state")
    assert "one two" in out
    out = entry(p, ":undo")
    assert "back to 4 bytes" in out
    out = entry(p, ":state")
    assert "one" in out and "two" not in out
    out = entry(p, ":undo")
    out = entry(p, ":undo")
    assert "nothing to undo" in out
    finish(p)


def test_save_gives_a_program_that_runs_to_the_same_state(tmp_path):
    needs_model()
    p = spawn(tmp_path)
    entry(p, 'let topic = "the sea"')
    p.sendline("fn ask(t) {")
    prompt(p, MORE)
    p.sendline('  return "Write about " + t + ".\\n"')
    prompt(p, MORE)
    p.sendline("}")
    prompt(p)
    entry(p, "ask(topic)")
    entry(p, 'gen("poem", max_tokens: 12, temperature: 0.8, seed: 7)')   # sampled: only the text can reproduce it
    entry(p, '"\\n$ and \\"quotes\\" end"')
    path = tmp_path / "session.sgl"
    out = entry(p, ":save " + str(path))
    assert "saved" in out
    entry(p, ":state")
    state = subprocess.run([SGL, "repl", "--model", MODEL], input=":load %s\n:state\n" % path, text=True,
                           capture_output=True, env=dict(os.environ, HOME=str(tmp_path))).stdout
    finish(p)
    ran = subprocess.run([SGL, "run", str(path)], text=True, capture_output=True)
    assert ran.returncode == 0, ran.stderr
    # the session's text, as the REPL (non-tty) shows it after :load, is what sgl run prints
    saved = path.read_text()
    assert saved.startswith("#!/usr/bin/env sgl")
    assert "fn ask(t)" in saved
    assert ran.stdout.startswith("Write about the sea.\n")
    assert ran.stdout.endswith('$ and "quotes" end\n')
    assert state.endswith(ran.stdout), (state, ran.stdout)


def test_stdin_not_a_terminal_prints_results_without_prompts(tmp_path):
    r = subprocess.run([SGL, "repl", "--model", "/nonexistent/m.gguf"],
                       input='let x = 2\nfn sq(a) {\n  return a * a\n}\n"sq=" + str(sq(x))\nprint("printed")\n:vars\n',
                       text=True, capture_output=True, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0
    assert "sgl>" not in r.stdout
    assert r.stdout.splitlines()[:3] == ["sq=4", "printed", "(no variables)"], r.stdout


def test_without_a_model_everything_else_works_and_gen_says_how(tmp_path):
    p = spawn(tmp_path, model=False)
    out = entry(p, '"x=" + str(1 + 2)')
    assert "x=3" in out
    out = entry(p, 'gen("a", max_tokens: 3)')
    assert "make model" in out
    finish(p)


def test_role_segments_are_set_apart(tmp_path):
    # no model, so role blocks add no template markers: the segments are the text
    r = subprocess.run([SGL, "repl", "--model", "/nonexistent/m.gguf"],
                       input='system {\n  "Be brief."\n}\nuser {\n  "Hi!"\n}\n"tail"\n',
                       text=True, capture_output=True, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "[system]\nBe brief.\n[user]\nHi!\ntail\n", r.stdout


def test_colour_on_a_terminal_unless_no_color(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm")
    env.pop("NO_COLOR", None)
    p = pexpect.spawn(SGL, ["repl", "--model", "/nonexistent/m.gguf"], env=env, encoding="utf-8", timeout=30)
    prompt(p)
    out = entry(p, 'user {\n"x"\n}')
    assert "\x1b[1;35m[user]\x1b[0m" in out, repr(out)
    finish(p)
    q = spawn(tmp_path, model=False)   # NO_COLOR=1
    out = entry(q, 'user {\n"x"\n}')
    assert "[user]" in out and "\x1b[1;35m" not in out and "\x1b[0m" not in out, repr(out)
    finish(q)


def test_tokens_and_model_commands(tmp_path):
    needs_model()
    r = subprocess.run([SGL, "repl", "--model", "/nonexistent/m.gguf"],
                       input=':tokens\n:model %s\n"Hello world"\n:tokens\n:model\n' % MODEL,
                       text=True, capture_output=True, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "/nonexistent/m.gguf" in r.stderr     # the first :tokens: the model cannot be loaded
    assert "(model: %s)" % MODEL in out
    rows = re.findall(r"^\s+(\d+)  (\".*\")$", out, re.M)
    assert len(rows) >= 2, out
    assert "".join(eval(t) for _, t in rows).endswith("Hello world"), rows
    assert re.search(r"\((\d+) tokens\)", out).group(1) == str(len(rows))
    assert out.rstrip().endswith(MODEL)


def test_ctrl_c_stops_a_busy_loop(tmp_path):
    p = spawn(tmp_path, model=False)
    entry(p, "let n = 0")
    p.sendline("fn spin() {")
    prompt(p, MORE)
    p.sendline('  print("spinning")')
    prompt(p, MORE)
    p.sendline("  while true { n = n + 1 }")
    prompt(p, MORE)
    p.sendline("}")
    prompt(p)
    p.sendline("spin()")
    p.expect("spinning")               # the loop runs now
    p.sendintr()
    p.expect(r"<repl>:\d+:\d+: error: interrupted")
    prompt(p)
    out = entry(p, '"counted: " + str(n > 0)')
    assert "counted: true" in out
    finish(p)
