"""Compiled SGL programs as endpoints (sgl serve --programs
tests/serve/programs): the listing, a run's {text, vars, value}, streaming,
bad arguments (400), runtime errors (422 with file:line:col), the step limit,
and that a program's model calls share the API's cache."""
import json
import re

import requests

from conftest import alive, error_body, sse_events


def run(server, name, args, **kw):
    return requests.post(server.url + "/v1/programs/" + name, json=args, timeout=120, **kw)


def test_list(server):
    r = requests.get(server.url + "/v1/programs", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    progs = body["data"] if isinstance(body, dict) and "data" in body else body
    by_name = {p["name"]: p for p in progs}
    assert {"greet", "fails", "squares", "spin"} <= set(by_name), by_name.keys()
    params = by_name["greet"]["params"]
    names = [p["name"] for p in params]
    assert names == ["name", "n", "style"]
    by = {p["name"]: p for p in params}
    assert "default" not in by["name"] or by["name"].get("required") is True
    assert by["n"]["default"] == 2
    assert by["style"]["default"] == "short"
    assert [p["name"] for p in by_name["squares"]["params"]] == ["count", "extra"]
    assert by_name["squares"]["params"][1]["default"] == []


def test_run_result(server):
    r = run(server, "greet", {"name": "Ada", "n": 3})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) >= {"text", "vars", "value"}
    assert out["text"].startswith("Write a short greeting for Ada:")
    assert out["vars"]["greeting"] in out["text"]
    assert "\n" not in out["vars"]["greeting"]
    assert re.fullmatch("[0-9]", out["vars"]["count"])
    assert out["text"].endswith("\nCount: " + out["vars"]["count"])
    assert out["value"]["name"] == "Ada" and out["value"]["branches"] == 3
    assert isinstance(out["value"]["first"], str)
    # greedy: the same arguments give the same result
    assert run(server, "greet", {"name": "Ada", "n": 3}).json()["vars"]["greeting"] == out["vars"]["greeting"]


def test_run_no_model(server):
    r = run(server, "squares", {"count": 4, "extra": [7, "x"]})
    assert r.status_code == 200, r.text
    assert r.json()["value"] == [0, 1, 4, 9, 7, "x"]
    assert r.json()["text"] == ""
    assert run(server, "squares", {}).json()["value"] == [0, 1, 4]


def sse_typed(lines):
    """[(event, data)] of an SSE stream up to `data: [DONE]`, and whether it came."""
    out, kind = [], "message"
    for raw in lines:
        line = raw.decode("utf-8")
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            payload = line[5:].strip()
            if payload == "[DONE]":
                return out, True
            out.append((kind, json.loads(payload)))
            kind = "message"
    return out, False


def test_stream(server):
    ref = run(server, "greet", {"name": "Bo", "n": 2}).json()
    r = run(server, "greet", {"name": "Bo", "n": 2, "stream": True}, stream=True)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events, done = sse_typed(r.iter_lines())
    assert done, "no data: [DONE]"
    kinds = [k for k, _ in events]
    assert kinds[-1] == "result" and set(kinds[:-1]) <= {"text", "var"}, kinds
    # the last event is the whole result, equal to the unstreamed run
    assert events[-1][1] == ref
    # text arrives per (branch, variable) and adds up to the value set after it
    texts, vals = {}, {}
    for k, d in events[:-1]:
        key = (d["branch"], d["name"])
        if k == "text":
            assert key not in vals, f"text after its variable was set: {key}"
            texts[key] = texts.get(key, "") + d["text"]
        else:
            vals[key] = d["value"]
    for key, t in texts.items():
        assert vals.get(key) == t, (key, t, vals.get(key))
    # the main state's variables (branch 0) are the result's vars; the fork's
    # two branches are numbered apart from it
    assert {n: v for (b, n), v in vals.items() if b == 0} == ref["vars"]
    branches = {b for (b, n) in vals if n == "idea"}
    assert len(branches) == 2 and 0 not in branches
    assert ref["value"]["first"] in [vals[(b, "idea")] for b in branches]


def test_stream_error(server):
    r = run(server, "fails", {"x": 1, "stream": True}, stream=True)
    if r.status_code == 422:  # refused before the stream began
        assert re.search(r"fails\.sgl:7:\d+", error_body(r)["message"])
        return
    assert r.status_code == 200
    events, done = sse_typed(r.iter_lines())
    assert done
    kind, data = events[-1]
    assert kind == "error", events[-3:]
    assert data["error"]["code"] == 422
    assert re.search(r"fails\.sgl:7:\d+", data["error"]["message"])
    assert "result" not in [k for k, _ in events]


def test_bad_args(server):
    for args in ({},                              # missing required `name`
                 {"name": "x", "nope": 1},        # unknown argument
                 {"name": "x", "n": "two"}):      # a range over a string fails at run time or is refused
        r = run(server, "greet", args)
        if args.get("n") == "two":
            assert r.status_code in (400, 422), r.text
        else:
            assert r.status_code == 400, (args, r.text)
            msg = error_body(r)["message"]
            assert ("name" in msg) if not args else ("nope" in msg), msg
    r = requests.post(server.url + "/v1/programs/greet", data=b"[1,2]", timeout=30)
    assert r.status_code == 400
    r = requests.post(server.url + "/v1/programs/greet", data=b"{bad json", timeout=30)
    assert r.status_code == 400
    alive(server)


def test_runtime_error_422(server):
    r = run(server, "fails", {"x": 1})
    assert r.status_code == 422, r.text
    msg = error_body(r)["message"]
    assert re.search(r"fails\.sgl:7:\d+", msg), msg
    assert "deliberate failure" in msg
    ok = run(server, "fails", {"x": 0})
    assert ok.status_code == 200 and ok.json()["value"] == 0
    alive(server)


def test_step_limit(server):
    r = run(server, "spin", {})
    assert r.status_code == 422, r.text
    assert re.search(r"spin\.sgl:\d+:\d+", error_body(r)["message"])
    alive(server)


def test_program_shares_cache(server):
    a = run(server, "greet", {"name": "Cy", "n": 1}).json()
    # the program's prompt prefix is now cached: the API sees it
    g = requests.post(server.url + "/generate", timeout=60, json={
        "text": "Write a short greeting for Cy:", "sampling_params": {"max_new_tokens": 0}}).json()
    assert g["meta_info"]["cached_tokens"] > 0
    assert a["value"]["branches"] == 1
