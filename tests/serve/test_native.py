"""SGLang's native API (/generate and the info routes) in the shapes that
sglang 0.5.2's frontend (sglang/lang/backend/runtime_endpoint.py) sends and
reads."""
import requests

from conftest import alive, sse_events


def gen(server, body, **kw):
    r = requests.post(server.url + "/generate", json=body, timeout=120, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_generate_single(server):
    out = gen(server, {"text": "The quick brown fox", "sampling_params": {"max_new_tokens": 6, "temperature": 0}})
    assert isinstance(out["text"], str)
    assert isinstance(out["output_ids"], list) and len(out["output_ids"]) == out["meta_info"]["completion_tokens"]
    mi = out["meta_info"]
    for k in ("id", "prompt_tokens", "completion_tokens", "cached_tokens", "e2e_latency", "finish_reason"):
        assert k in mi, k
    assert mi["completion_tokens"] <= 6
    assert mi["finish_reason"]["type"] in ("length", "stop")
    if mi["finish_reason"]["type"] == "length":
        assert mi["finish_reason"]["length"] == 6


def test_generate_list_and_input_ids(server):
    texts = ["Alpha beta", "Gamma delta"]
    outs = gen(server, {"text": texts, "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
    assert isinstance(outs, list) and len(outs) == 2
    single = [gen(server, {"text": t, "sampling_params": {"max_new_tokens": 4, "temperature": 0}})["text"]
              for t in texts]
    assert [o["text"] for o in outs] == single
    ids = requests.post(server.url + "/v1/tokenize", json={"prompt": texts[0]}, timeout=10).json()["tokens"]
    o = gen(server, {"input_ids": ids, "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
    assert o["text"] == single[0]
    lo = gen(server, {"input_ids": [ids, ids], "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
    assert [x["text"] for x in lo] == [single[0], single[0]]


def test_max_new_tokens_zero(server):
    # the frontend's cache_prefix/commit: prefill only
    out = gen(server, {"text": "Cache me please.", "sampling_params": {"max_new_tokens": 0}})
    assert out["text"] == ""
    assert out["meta_info"]["completion_tokens"] == 0
    assert out["meta_info"]["prompt_tokens"] > 0
    again = gen(server, {"text": "Cache me please.", "sampling_params": {"max_new_tokens": 0}})
    assert again["meta_info"]["cached_tokens"] > 0


def test_stop_matched(server):
    free = gen(server, {"text": "Count: 1, 2, 3,", "sampling_params": {"max_new_tokens": 10, "temperature": 0,
                                                                       "ignore_eos": True}})["text"]
    stop = free.strip()[:1]
    assert stop
    out = gen(server, {"text": "Count: 1, 2, 3,", "sampling_params": {"max_new_tokens": 10, "temperature": 0,
                                                                      "stop": [stop], "ignore_eos": True}})
    fr = out["meta_info"]["finish_reason"]
    assert fr["type"] == "stop" and fr["matched"] == stop
    assert out["text"] == free[:free.index(stop)]


def test_min_new_tokens_and_ignore_eos(server):
    out = gen(server, {"text": "Hi", "sampling_params": {"max_new_tokens": 9, "min_new_tokens": 9,
                                                         "temperature": 0}})
    assert out["meta_info"]["completion_tokens"] == 9


def test_n_native(server):
    outs = gen(server, {"text": "Pick a number:", "sampling_params": {"max_new_tokens": 4, "n": 3,
                                                                       "temperature": 1.0}})
    assert isinstance(outs, list) and len(outs) == 3


def test_logprobs_native(server):
    text = "The cat sat on the"
    out = gen(server, {"text": text, "sampling_params": {"max_new_tokens": 4, "temperature": 0},
                       "return_logprob": True, "logprob_start_len": 0, "return_text_in_logprobs": True})
    mi = out["meta_info"]
    inp, outp = mi["input_token_logprobs"], mi["output_token_logprobs"]
    assert len(inp) == mi["prompt_tokens"]
    assert len(outp) == mi["completion_tokens"] == 4
    # [logprob, token_id, text]; the first input token has no logprob
    assert inp[0][0] is None
    for lp, tid, tt in inp[1:] + outp:
        assert lp <= 0.0 and isinstance(tid, int) and isinstance(tt, str)
    assert [t[1] for t in outp] == out["output_ids"]
    assert "".join(t[2] for t in outp) == out["text"]
    # top alternatives of the output tokens
    top = gen(server, {"text": text, "sampling_params": {"max_new_tokens": 4, "temperature": 0},
                       "return_logprob": True, "top_logprobs_num": 2})["meta_info"]
    assert len(top["output_top_logprobs"]) == 4 and all(len(x) == 2 for x in top["output_top_logprobs"])
    for alts, chosen in zip(top["output_top_logprobs"], outp):
        assert alts[0][1] == chosen[1]  # greedy picks the top token
        assert alts[0][0] >= alts[1][0]
    # no logprob_start_len: SGLang's default, the last prompt token only
    assert len(top["input_token_logprobs"]) == 1
    assert top["input_token_logprobs"][0][1] == inp[-1][1]
    # logprob_start_len trims the input logprobs
    out2 = gen(server, {"text": text, "sampling_params": {"max_new_tokens": 0}, "return_logprob": True,
                        "logprob_start_len": mi["prompt_tokens"] - 2})
    assert len(out2["meta_info"]["input_token_logprobs"]) == 2
    assert [x[1] for x in out2["meta_info"]["input_token_logprobs"]] == [x[1] for x in inp[-2:]]
    for a, b in zip(out2["meta_info"]["input_token_logprobs"][1:], inp[-1:]):
        assert abs(a[0] - b[0]) < 1e-3


def test_input_top_logprobs(server):
    """top_logprobs_num with logprob_start_len: alternatives of the prompt's
    tokens too (the frontend's gen(top_logprobs_num, logprob_start_len))."""
    out = gen(server, {"text": "The cat sat on the", "sampling_params": {"max_new_tokens": 2, "temperature": 0},
                       "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 2})
    mi = out["meta_info"]
    assert len(mi["input_top_logprobs"]) == mi["prompt_tokens"]
    assert all(len(x) == 2 for x in mi["input_top_logprobs"][1:])


def test_stream_native(server):
    body = {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 10, "temperature": 0}}
    full = gen(server, body)
    r = requests.post(server.url + "/generate", json=dict(body, stream=True), stream=True, timeout=120)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events, done = sse_events(r.iter_lines())
    assert done, "stream did not end with data: [DONE]"
    assert len(events) >= 2
    texts = [e["text"] for e in events]
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1)), "text is not cumulative"
    assert texts[-1] == full["text"]
    assert events[-1]["meta_info"]["finish_reason"] == full["meta_info"]["finish_reason"]


def test_constraints_native(server):
    import re
    out = gen(server, {"text": "Year:", "sampling_params": {"max_new_tokens": 8, "regex": "(19|20)[0-9]{2}"}})
    assert re.fullmatch("(19|20)[0-9]{2}", out["text"])


def test_info_routes(server):
    for path in ("/get_model_info", "/model_info"):
        r = requests.get(server.url + path, timeout=10)
        assert r.status_code == 200
        assert r.json()["model_path"] and r.json()["is_generation"] is True
    for path in ("/get_server_info", "/server_info"):
        r = requests.get(server.url + path, timeout=10)
        assert r.status_code == 200 and isinstance(r.json(), dict)
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    assert requests.get(server.url + "/health_generate", timeout=60).status_code == 200
    assert requests.post(server.url + "/flush_cache", timeout=30).status_code == 200
    r = requests.post(server.url + "/abort_request", json={"rid": "no-such-request"}, timeout=10)
    assert r.status_code == 200
    alive(server)


def _samples(text):
    out = {}
    for l in text.splitlines():
        if l and not l.startswith("#"):
            k, v = l.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_metrics(server):
    alive(server)
    r = requests.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    before = _samples(text)  # every sample line is `name{labels} value`
    names = {k.split("{")[0] for k in before}
    # the families the issue names: requests by route and status, tokens,
    # cache hit rate, running/queued, KV pool, TTFT / ITL / e2e histograms
    for fam in ("sgl_requests_total", "sgl_prompt_tokens_total", "sgl_cached_tokens_total",
                "sgl_generated_tokens_total", "sgl_cache_hit_rate", "sgl_running_requests",
                "sgl_queued_requests", "sgl_kv_slots_total", "sgl_kv_slots_used"):
        assert fam in names, fam
    for h in ("sgl_time_to_first_token_seconds", "sgl_inter_token_latency_seconds",
              "sgl_e2e_request_latency_seconds"):
        assert f"# TYPE {h} histogram" in text, h
        assert h + "_count" in names and h + "_sum" in names
        assert any(k.startswith(h + '_bucket{le="+Inf"}') for k in before), h
    # one more request moves the counters by exactly its own figures
    done = alive(server)
    key = 'sgl_requests_total{route="completions",status="2xx"}'
    # the count is taken when the response is finished on the server's
    # side, which may follow the client's read: wait for it (bounded)
    import time
    end = time.monotonic() + 10
    while True:
        after = _samples(requests.get(server.url + "/metrics", timeout=10).text)
        if after.get(key, 0) >= before.get(key, 0) + 1 or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert after[key] == before.get(key, 0) + 1
    assert after["sgl_generated_tokens_total"] == before["sgl_generated_tokens_total"] + \
        done["usage"]["completion_tokens"]
    assert after["sgl_prompt_tokens_total"] == before["sgl_prompt_tokens_total"] + done["usage"]["prompt_tokens"]
