"""Bad input gets the right status and an OpenAI-style error object, and the
server keeps serving: every test ends with `alive` (a good request on a
fresh connection). Raw sockets are used where a client library would refuse
to send the bad request."""
import json
import socket
import threading
import time

import pytest
import requests

from conftest import API_KEY, alive, error_body


def post(server, path, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data, headers={"Content-Type": "application/json"},
                         timeout=60, **kw)


def test_malformed_json(server, model_id):
    for path in ("/v1/completions", "/v1/chat/completions", "/generate"):
        r = post(server, path, b'{"model": "x", "prompt": "hi", ')
        assert r.status_code == 400, (path, r.status_code, r.text)
        err = error_body(r)
        assert "json" in err["message"].lower(), err
    r = post(server, "/v1/completions", b"\xff\xfe not utf-8")
    assert r.status_code == 400
    r = post(server, "/v1/completions", b"[1, 2, 3]")  # JSON, but not an object
    assert r.status_code == 400
    alive(server, model_id)


@pytest.mark.parametrize("path,body,param", [
    ("/v1/completions", {"prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
    ("/v1/completions", {"prompt": 42}, "prompt"),
    ("/v1/completions", {"prompt": "hi", "temperature": "hot"}, "temperature"),
    ("/v1/completions", {"prompt": "hi", "stop": 5}, "stop"),
    ("/v1/completions", {"prompt": "hi", "n": 1.5}, "n"),
    ("/v1/chat/completions", {"messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 7}]}, "content"),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": "3",
                              "logprobs": True}, "top_logprobs"),
    ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": "5"}}, "max_new_tokens"),
    ("/generate", {"text": 3}, "text"),
])
def test_wrong_types(server, model_id, path, body, param):
    body = dict(body, model=model_id) if path.startswith("/v1") else body
    r = post(server, path, body)
    assert r.status_code == 400, (r.status_code, r.text)
    err = error_body(r)
    assert param in err["message"] or err["param"] == param, err
    alive(server, model_id)


def test_unknown_fields_ignored(server, model_id):
    r = post(server, "/v1/completions", {"model": model_id, "prompt": "hi", "max_tokens": 2,
                                         "a_field_nobody_knows": {"x": 1}})
    assert r.status_code == 200, r.text


def test_missing_required_field(server, model_id):
    r = post(server, "/v1/chat/completions", {"model": model_id})
    assert r.status_code == 400
    assert "messages" in error_body(r)["message"]
    alive(server, model_id)


def test_unknown_route_and_method(server, model_id):
    r = requests.get(server.url + "/v1/nowhere", timeout=10)
    assert r.status_code == 404
    r = requests.get(server.url + "/v1/chat/completions", timeout=10)
    assert r.status_code in (404, 405)
    alive(server, model_id)


def _raw_exchange(server, head, body_len=0, chunk=1 << 16, budget=1 << 26):
    """Sends `head` then up to body_len bytes of body (stopping as soon as the
    server answers); returns the response's status line and headers."""
    s = socket.create_connection((server.host, server.port), timeout=30)
    s.settimeout(30)
    reply = b""
    try:
        s.sendall(head)
        sent = 0
        s.setblocking(False)
        import select
        while sent < min(body_len, budget):
            r, w, _ = select.select([s], [s], [], 30)
            if r:
                break
            if w:
                try:
                    sent += s.send(b"x" * min(chunk, body_len - sent))
                except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                    break
        s.setblocking(True)
        s.settimeout(30)
        while b"\r\n\r\n" not in reply:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            reply += b
    finally:
        s.close()
    return reply


def test_huge_body_413(server, model_id):
    size = 256 << 20  # 256 MiB declared; the server must refuse before reading it all
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    reply = _raw_exchange(server, head, body_len=size, budget=8 << 20)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    alive(server, model_id)


def test_huge_chunked_body_413(server, model_id):
    s = socket.create_connection((server.host, server.port), timeout=30)
    reply = b""
    try:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
        for _ in range(256):
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            s.settimeout(0.0)
            try:
                reply += s.recv(65536)
                break
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            finally:
                s.settimeout(30)
        while b"\r\n" not in reply:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            reply += b
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    alive(server, model_id)


def test_huge_headers_431(server, model_id):
    head = ("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * (256 << 10) + "\r\n\r\n").encode()
    reply = _raw_exchange(server, head)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    many = "GET /v1/models HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(20000)) + "\r\n"
    reply = _raw_exchange(server, many.encode())
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    alive(server, model_id)


def test_garbage_request_line(server, model_id):
    reply = _raw_exchange(server, b"\x16\x03\x01 this is not http\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:200]
    alive(server, model_id)


@pytest.mark.parametrize("extra,word", [
    ({"regex": "[a-z"}, "regex"),
    ({"regex": "(a)\\1"}, "regex"),
    ({"json_schema": "{not json"}, "json_schema"),
    ({"json_schema": json.dumps({"type": "no-such-type"})}, "json_schema"),
    ({"ebnf": "root ::= \"a\" undefined_rule"}, "ebnf"),
    ({"ebnf": "root ::= ((("}, "ebnf"),
])
def test_invalid_constraint(server, model_id, extra, word):
    r = post(server, "/v1/completions", dict({"model": model_id, "prompt": "x", "max_tokens": 4}, **extra))
    assert r.status_code == 400, r.text
    err = error_body(r)
    assert word in err["message"] or err["param"] == word, err
    # the native API refuses it the same way
    r = post(server, "/generate", {"text": "x", "sampling_params": dict({"max_new_tokens": 4}, **extra)})
    assert r.status_code == 400, r.text
    alive(server, model_id)


def test_invalid_response_format(server, model_id):
    msgs = [{"role": "user", "content": "x"}]
    r = post(server, "/v1/chat/completions", {"model": model_id, "messages": msgs, "response_format":
                                              {"type": "json_schema", "json_schema": {"name": "x", "schema":
                                                                                      {"type": 12}}}})
    assert r.status_code == 400
    assert "schema" in error_body(r)["message"]
    r = post(server, "/v1/chat/completions", {"model": model_id, "messages": msgs,
                                              "response_format": {"type": "yaml"}})
    assert r.status_code == 400
    assert "response_format" in error_body(r)["message"] or error_body(r)["param"] == "response_format"
    r = post(server, "/v1/chat/completions", {"model": model_id, "messages": msgs,
                                              "tools": [{"type": "function", "function": {"name": "f"}}],
                                              "tool_choice": {"type": "function", "function": {"name": "g"}}})
    assert r.status_code == 400, r.text
    alive(server, model_id)


@pytest.mark.parametrize("mt", [-1, -100, 10 ** 9, 2 ** 63])
def test_bad_max_tokens(server, model_id, mt):
    r = post(server, "/v1/completions", {"model": model_id, "prompt": "x", "max_tokens": mt})
    assert r.status_code == 400, r.text
    msg = error_body(r)["message"]
    # 2**63 does not fit the JSON reader's integers: refused as such
    assert "max_tokens" in msg or (mt >= 2 ** 63 and "integer" in msg), msg
    r = post(server, "/v1/chat/completions", {"model": model_id, "max_completion_tokens": mt,
                                              "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400, r.text
    r = post(server, "/generate", {"text": "x", "sampling_params": {"max_new_tokens": mt}})
    assert r.status_code == 400, r.text
    alive(server, model_id)


def test_prompt_longer_than_context(server, model_id):
    info = requests.get(server.url + "/get_model_info", timeout=10).json()
    long_prompt = "word " * 40000  # beyond SmolLM2's 8192-token context
    r = post(server, "/v1/completions", {"model": model_id, "prompt": long_prompt, "max_tokens": 4})
    assert r.status_code == 400, r.text[:300]
    msg = error_body(r)["message"]
    assert "context" in msg.lower() or "too long" in msg.lower(), msg
    r = post(server, "/v1/chat/completions", {"model": model_id, "max_tokens": 4,
                                              "messages": [{"role": "user", "content": long_prompt}]})
    assert r.status_code == 400
    r = post(server, "/generate", {"text": long_prompt, "sampling_params": {"max_new_tokens": 4}})
    assert r.status_code == 400
    assert info["model_path"]
    alive(server, model_id)


def test_unknown_program_404(server, model_id):
    r = post(server, "/v1/programs/no_such_program", {})
    assert r.status_code == 404
    assert "no_such_program" in error_body(r)["message"]
    alive(server, model_id)


def test_api_key(auth_server):
    url = auth_server.url
    assert requests.get(url + "/health", timeout=10).status_code == 200
    body = {"model": "m", "prompt": "One,", "max_tokens": 2}
    r = requests.post(url + "/v1/completions", json=body, timeout=30)
    assert r.status_code == 401
    error_body(r)
    for bad in ("Bearer wrong", "Bearer " + API_KEY[:-1], "Bearer " + API_KEY + "x", API_KEY, "Basic " + API_KEY):
        r = requests.post(url + "/v1/completions", json=body, headers={"Authorization": bad}, timeout=30)
        assert r.status_code == 401, bad
    for path in ("/v1/models", "/get_model_info", "/metrics", "/get_server_info"):
        assert requests.get(url + path, timeout=10).status_code == 401, path
    r = requests.post(url + "/generate", json={"text": "x", "sampling_params": {"max_new_tokens": 1}}, timeout=30)
    assert r.status_code == 401
    ok = {"Authorization": "Bearer " + API_KEY}
    r = requests.post(url + "/v1/completions", json=body, headers=ok, timeout=60)
    assert r.status_code == 200, r.text
    assert requests.get(url + "/v1/models", headers=ok, timeout=10).status_code == 200
    # the openai client sends the key the same way
    import openai
    good = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    assert good.completions.create(model="m", prompt="One,", max_tokens=2).choices
    wrong = openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model="m", prompt="One,", max_tokens=2)


def test_slowloris(server, model_id):
    """A connection that sends one header byte a second is closed by the
    server while other clients are served."""
    s = socket.create_connection((server.host, server.port), timeout=10)
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10000
    closed = threading.Event()
    served = []

    def trickle():
        deadline = time.monotonic() + 120  # a hang fails instead of blocking the suite
        i = 0
        while time.monotonic() < deadline:
            try:
                s.send(head[i:i + 1])
                i += 1
                s.settimeout(1.0)
                b = s.recv(4096)
                if b == b"" or b.startswith(b"HTTP/1.1 408") or b.startswith(b"HTTP/1.1 4"):
                    closed.set()
                    return
            except socket.timeout:
                continue
            except OSError:
                closed.set()
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    while not closed.is_set() and t.is_alive():
        served.append(alive(server, model_id))
        time.sleep(0.5)
    t.join(5)
    s.close()
    assert closed.is_set(), "a slowloris connection was never closed"
    assert served, "no request was served while the slow client trickled"
    alive(server, model_id)
