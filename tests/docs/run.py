#!/usr/bin/env python3
"""tests/docs/run.py — runs the guides in docs/ as a user would.

For each docs/*.md (or the files given), in a fresh temporary directory:
  ```LANG file=NAME    the block is written to NAME (sgl, python, c, ...)
  ```sh                the block runs in bash -e there, with build/ first on
                       PATH and SGL_MODEL set to the default model; it must
                       exit 0 (```sh status=N: exit N)
  ```text              right after a sh block: each of its lines must be a
                       line of that block's output (stdout and stderr), in
                       order; a line "..." skips; "..." inside a line
                       matches anything there
Other fences (```c, ```python, ...) are shown, not run, unless a sh block
runs them. Prints one line per guide and exits 1 if any block failed.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FENCE = re.compile(r"^```(\S*)(.*)$")


def blocks(path):
    """(lang, attrs, text, line) for every fenced block of a Markdown file."""
    out, cur = [], None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if cur is None:
                m = FENCE.match(line)
                if m:
                    attrs = dict(a.split("=", 1) for a in m.group(2).split() if "=" in a)
                    cur = (m.group(1), attrs, [], n)
            elif line.startswith("```"):
                out.append((cur[0], cur[1], "\n".join(cur[2]) + "\n", cur[3]))
                cur = None
            else:
                cur[2].append(line)
    return out


def lines_match(want, got):
    """Each wanted line appears in order among got's lines."""
    got = got.splitlines()
    i = 0
    for w in want.splitlines():
        if w == "..." or not w.strip():
            continue
        pat = re.compile(".*".join(re.escape(part) for part in w.split("...")) + "$", re.S)
        while i < len(got) and not pat.match(got[i].rstrip()):
            i += 1
        if i == len(got):
            return w
        i += 1
    return None


def run_guide(path, env):
    failures = 0
    groups = []
    with tempfile.TemporaryDirectory(prefix="sgl-docs.") as wd:
        last = None
        for lang, attrs, text, line in blocks(path):
            where = "%s:%d" % (os.path.relpath(path, ROOT), line)
            if "file" in attrs:
                with open(os.path.join(wd, attrs["file"]), "w", encoding="utf-8") as f:
                    f.write(text)
                last = None
            elif lang == "sh":
                # each block in a session of its own, so what it leaves
                # running in the background (a server) is stopped at the end
                p = subprocess.Popen(["bash", "-e", "-c", text], cwd=wd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
                groups.append(p.pid)
                try:
                    out, err = p.communicate(timeout=600)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    out, err = p.communicate()
                want = int(attrs.get("status", "0"))
                last = out + err
                if p.returncode != want:
                    print("FAIL %s: exit status %d, expected %d\n%s" % (where, p.returncode, want, last[-2000:]))
                    failures += 1
            elif lang == "text" and last is not None:
                miss = lines_match(text, last)
                if miss is not None:
                    print("FAIL %s: output lacks the line %r; it was:\n%s" % (where, miss, last[-2000:]))
                    failures += 1
                last = None
            else:
                last = None
        for g in groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return failures


def main():
    guides = sys.argv[1:] or sorted(
        os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    env = dict(os.environ)
    # build/ for sgl; build/venv/bin for the pinned Python clients (make venv)
    env["PATH"] = os.pathsep.join([os.path.join(ROOT, "build"), os.path.join(ROOT, "build", "venv", "bin"),
                                   env.get("PATH", "")])
    env.setdefault("SGL_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    env["SGL_ROOT"] = ROOT
    total = 0
    for g in guides:
        n = run_guide(g, env)
        print("docs %s: %s" % (os.path.relpath(g, ROOT), "ok" if n == 0 else "%d failed" % n))
        total += n
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
