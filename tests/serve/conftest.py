"""End-to-end tests of `sgl serve` (issue 9) on loopback.

    pytest process                          sgl serve (child process)
    ---------------------------------       -------------------------------
    fixture `server` (session) ----spawn--> build/sgl serve --model M
      polls GET /health until 200            --port P --programs programs/
    fixture `auth_server` (module) -spawn-> ... --api-key KEY (second process)
    tests: openai client, raw sockets,       stderr -> <tmp>/serve-*.log
      requests, aiohttp, sglang frontend     (the access log; shown on failure)

Facts the tests rely on:
- The binary is $SGL (default build/sgl), the model $SGL_MODEL (default
  models/SmolLM2-135M-Instruct.Q4_1.gguf); without either, every test skips
  with the reason (the suite then runs nothing but says why).
- Each server gets a free loopback port chosen here; it prints
  `sgl serve: listening on http://HOST:PORT (model PATH)` on stderr, which
  `Server.wait_ready` checks once /health answers 200.
- Outputs are never compared with timing; the tests that need several
  requests in flight bound their waits only so that a hang fails instead of
  blocking the suite.
- `alive(server)` is the "a good request still succeeds" check that every
  error test runs after its bad request.
"""
import json
import os
import re
import socket
import subprocess
import tempfile
import time

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SGL = os.path.abspath(os.environ.get("SGL", os.path.join(ROOT, "build", "sgl")))
MODEL = os.environ.get("SGL_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs")
API_KEY = "sk-svtest-0123456789abcdef"
THREADS = os.environ.get("SGL_SERVE_THREADS", "2")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `sgl serve` child process on 127.0.0.1:port."""

    def __init__(self, extra_args=(), name="serve"):
        self.port = free_port()
        self.host = "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        fd, self.log_path = tempfile.mkstemp(prefix=f"sgl-{name}-", suffix=".log")
        self.log = os.fdopen(fd, "w+b")
        self.args = [SGL, "serve", "--model", MODEL, "--host", self.host, "--port", str(self.port),
                     "--threads", THREADS, *extra_args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=ROOT)

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, deadline_s=120):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sgl serve exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                r = requests.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"sgl serve not healthy after {deadline_s}s:\n{self.log_text()[-4000:]}")
        line = re.search(r"sgl serve: listening on (http://\S+) \(model (.+)\)", self.log_text())
        assert line, f"no 'listening on' line on stderr:\n{self.log_text()[-2000:]}"
        assert line.group(1).rstrip("/") == self.url, line.group(0)
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: a graceful stop, exit 0
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def _need_binary():
    if not os.path.exists(SGL):
        pytest.skip(f"no sgl binary at {SGL} (make)")
    if not os.path.exists(MODEL):
        pytest.skip(f"no model at {MODEL} (make model)")
    out = subprocess.run([SGL, "serve", "--help"], capture_output=True, text=True)
    if "unknown command" in (out.stdout + out.stderr) or out.returncode not in (0, 64):
        pytest.skip("this sgl has no `serve` command")


@pytest.fixture(scope="session")
def server():
    _need_binary()
    # --read-timeout 5: a slowloris client is cut after 5 s (test_slowloris);
    # --max-queued: test_load's 200 streams are all accepted.
    # --program-max-steps: spin.sgl hits the step limit quickly.
    # --drain-timeout 10: SIGINT at the end lets requests finish for 10 s at most.
    s = Server(["--programs", PROGRAMS, "--read-timeout", "5", "--max-queued", "1024",
                "--program-max-steps", "2000000", "--drain-timeout", "10"]).wait_ready()
    yield s
    rc = s.stop()
    assert rc == 0, f"sgl serve exited with {rc} on SIGINT:\n{s.log_text()[-3000:]}"


@pytest.fixture(scope="module")
def auth_server():
    _need_binary()
    s = Server(["--api-key", API_KEY], name="auth").wait_ready()
    yield s
    rc = s.stop()
    assert rc == 0, f"sgl serve --api-key exited with {rc} on SIGINT:\n{s.log_text()[-3000:]}"


@pytest.fixture(scope="session")
def model_id(server):
    r = requests.get(server.url + "/v1/models", timeout=10)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data and data[0]["object"] == "model"
    return data[0]["id"]


@pytest.fixture(scope="session")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item (rep_call), so that a fixture's
    teardown check can skip itself when the test already failed."""
    outcome = yield
    setattr(item, "rep_" + call.when, outcome.get_result())


def alive(server, model="default"):
    """A small greedy completion on a fresh connection must still succeed."""
    r = requests.post(server.url + "/v1/completions", timeout=60,
                      json={"model": model, "prompt": "One, two, three,", "max_tokens": 3, "temperature": 0})
    assert r.status_code == 200, f"server no longer serves: {r.status_code} {r.text}"
    body = r.json()
    assert body["choices"][0]["text"] != "" or body["usage"]["completion_tokens"] == 0
    assert body["usage"]["completion_tokens"] <= 3
    return body


def error_body(r):
    """The OpenAI-style error object of a response (asserts its shape)."""
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"error response is not JSON: {r.status_code} {r.text[:300]!r}")
    assert isinstance(body.get("error"), dict), body
    err = body["error"]
    for k in ("message", "type", "param", "code"):
        assert k in err, f"error object lacks {k!r}: {err}"
    assert isinstance(err["message"], str) and err["message"]
    return err


def sse_events(lines):
    """The JSON payloads of an SSE stream (bytes lines), up to `data: [DONE]`.
    Returns (events, saw_done)."""
    events = []
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return events, True
        events.append(json.loads(payload))
    return events, False
