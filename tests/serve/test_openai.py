"""The OpenAI-compatible API through the real `openai` client: completions,
chat, streaming with usage, n, stop, logprobs, structured outputs (validated
by `jsonschema`, an independent implementation), SGLang's extras, tools,
cached tokens and tokenize/detokenize."""
import json
import re

import jsonschema
import pytest
import requests

from conftest import alive

CHAT = [{"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name three colours."}]


def test_models(server, model_id):
    r = requests.get(server.url + "/v1/models", timeout=10).json()
    assert r["object"] == "list"
    assert any(m["id"] == model_id for m in r["data"])


def test_completion_basic(client, model_id):
    r = client.completions.create(model=model_id, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert len(r.choices) == 1
    c = r.choices[0]
    assert isinstance(c.text, str) and c.text
    assert c.finish_reason in ("length", "stop")
    assert r.usage.completion_tokens <= 8
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # greedy is deterministic: the same request gives the same text
    r2 = client.completions.create(model=model_id, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r2.choices[0].text == c.text


def test_completion_list_prompt_and_token_ids(client, model_id, server):
    prompts = ["Once upon a time", "1, 2, 3, 4,"]
    r = client.completions.create(model=model_id, prompt=prompts, max_tokens=4, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1]
    singles = [client.completions.create(model=model_id, prompt=p, max_tokens=4, temperature=0).choices[0].text
               for p in prompts]
    by_index = {c.index: c.text for c in r.choices}
    assert [by_index[0], by_index[1]] == singles
    # a token-id prompt is the same as its text
    tok = requests.post(server.url + "/v1/tokenize", json={"model": model_id, "prompt": prompts[1]}, timeout=10)
    assert tok.status_code == 200, tok.text
    ids = tok.json()["tokens"]
    r3 = client.completions.create(model=model_id, prompt=ids, max_tokens=4, temperature=0)
    assert r3.choices[0].text == singles[1]


def test_completion_echo(client, model_id):
    r = client.completions.create(model=model_id, prompt="Red, green,", max_tokens=3, temperature=0, echo=True)
    assert r.choices[0].text.startswith("Red, green,")


def test_completion_suffix_refused(server, model_id):
    r = requests.post(server.url + "/v1/completions", timeout=30,
                      json={"model": model_id, "prompt": "def f(", "suffix": "return x", "max_tokens": 4})
    assert r.status_code == 400, r.text
    assert "suffix" in r.json()["error"]["message"]
    alive(server, model_id)


def test_chat_basic(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=16, temperature=0)
    assert r.object == "chat.completion"
    m = r.choices[0].message
    assert m.role == "assistant"
    assert isinstance(m.content, str) and m.content
    # the chat template's end-of-turn marker never leaks into the content
    assert "<|im_end|>" not in m.content and "<|im_start|>" not in m.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 16


def test_chat_multipart_and_assistant_turn(client, model_id):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": " hello."}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Again."}]
    r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=8, temperature=0)
    assert r.choices[0].message.content is not None
    # the same conversation with the text parts joined is the same prompt
    joined = [dict(msgs[0], content="Say hello."), msgs[1], msgs[2]]
    r2 = client.chat.completions.create(model=model_id, messages=joined, max_tokens=8, temperature=0)
    assert r2.usage.prompt_tokens == r.usage.prompt_tokens
    assert r2.choices[0].message.content == r.choices[0].message.content


def test_max_completion_tokens(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=CHAT, max_completion_tokens=3, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 3
    assert r.choices[0].finish_reason == "length"


def test_stream_completion_with_usage(client, model_id):
    full = client.completions.create(model=model_id, prompt="A list of fruits: apple,", max_tokens=12, temperature=0)
    chunks = list(client.completions.create(model=model_id, prompt="A list of fruits: apple,", max_tokens=12,
                                            temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    # the usage chunk comes last, with no choices
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_chat_with_usage(client, model_id):
    full = client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # really streamed
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    # without include_usage no chunk carries usage
    plain = list(client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=4, temperature=0,
                                                stream=True))
    assert all(c.usage is None for c in plain)


def test_n(client, model_id):
    r = client.completions.create(model=model_id, prompt="My favourite animal is the", max_tokens=6,
                                  temperature=1.0, n=3, seed=7)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    # usage counts the tokens of all n choices
    assert 3 <= r.usage.completion_tokens <= 3 * 6
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    rc = client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=6, temperature=1.0, n=2)
    assert sorted(c.index for c in rc.choices) == [0, 1]
    assert all(c.message.content is not None for c in rc.choices)
    # n with greedy sampling gives n equal answers
    rg = client.completions.create(model=model_id, prompt="1, 2, 3,", max_tokens=5, temperature=0, n=2)
    assert rg.choices[0].text == rg.choices[1].text


def test_stop(client, model_id):
    free = client.completions.create(model=model_id, prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16,
                                     temperature=0, extra_body={"ignore_eos": True})
    text = free.choices[0].text
    # pick a stop string that the free continuation contains
    m = re.search(r"\d", text)
    assert m, f"continuation has no digit to stop at: {text!r}"
    stop = text[m.start():m.end()]
    r = client.completions.create(model=model_id, prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16,
                                  temperature=0, stop=[stop, "never-occurs"], extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == text[:m.start()]
    assert stop not in r.choices[0].text
    # no_stop_trim keeps the matched stop string
    r2 = client.completions.create(model=model_id, prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16, temperature=0,
                                   stop=[stop], extra_body={"ignore_eos": True, "no_stop_trim": True})
    assert r2.choices[0].text.endswith(stop) and r2.choices[0].text.startswith(text[:m.start()])


def test_chat_logprobs(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=6, temperature=0,
                                       logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    assert len(lp) == r.usage.completion_tokens
    assert "".join(t.token for t in lp) == r.choices[0].message.content
    for t in lp:
        assert t.logprob <= 0.0
        assert len(t.top_logprobs) == 3
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # greedy: the chosen token is the most likely one
        assert abs(t.logprob - tops[0]) < 1e-4
        assert t.top_logprobs[0].token == t.token


def test_completion_logprobs(client, model_id):
    r = client.completions.create(model=model_id, prompt="The sky is", max_tokens=5, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == r.usage.completion_tokens
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(x <= 0.0 for x in lp.token_logprobs)
    assert all(len(d) <= 2 and len(d) >= 1 for d in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def test_response_format_json_schema_strict(client, model_id):
    for seed in (1, 2):
        r = client.chat.completions.create(
            model=model_id, max_tokens=80, temperature=0.8, seed=seed,
            messages=[{"role": "user", "content": "Describe a person as JSON."}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "person", "schema": PERSON, "strict": True}})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        obj = json.loads(r.choices[0].message.content)
        jsonschema.validate(obj, PERSON)


def test_response_format_json_object(client, model_id):
    for ask in ('Reply with a JSON object with one key, "ok", set to true.',
                "Give a JSON object with the keys name and age for a cat."):
        r = client.chat.completions.create(model=model_id, max_tokens=100, temperature=0,
                                           messages=[{"role": "user", "content": ask}],
                                           response_format={"type": "json_object"})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_sglang_json_schema_extra(client, model_id):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    r = client.completions.create(model=model_id, prompt="Answer as JSON:", max_tokens=20, temperature=0,
                                  extra_body={"json_schema": json.dumps(schema)})
    jsonschema.validate(json.loads(r.choices[0].text), schema)


def test_regex_extra(client, model_id):
    rx = r"(Monday|Tuesday|Friday), [0-9]{1,2}:[0-5][0-9] (am|pm)"
    r = client.completions.create(model=model_id, prompt="The meeting is on", max_tokens=20, temperature=0.7,
                                  seed=3, extra_body={"regex": rx})
    assert re.fullmatch(rx, r.choices[0].text), r.choices[0].text
    rc = client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=20, temperature=0,
                                        extra_body={"regex": r"[a-z]+(, [a-z]+){2}"})
    assert re.fullmatch(r"[a-z]+(, [a-z]+){2}", rc.choices[0].message.content)


def test_ebnf_extra(client, model_id):
    grammar = 'root ::= "The answer is " digit digit? "."\ndigit ::= [0-9]'
    r = client.completions.create(model=model_id, prompt="What is 6 times 7?", max_tokens=10, temperature=0,
                                  extra_body={"ebnf": grammar})
    assert re.fullmatch(r"The answer is [0-9][0-9]?\.", r.choices[0].text), r.choices[0].text


def test_sampling_extras_accepted(client, model_id):
    kw = dict(model=model_id, prompt="Once", max_tokens=6, temperature=0.9, top_p=0.9, seed=11,
              frequency_penalty=0.5, presence_penalty=0.5,
              extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "min_tokens": 4,
                          "ignore_eos": False})
    r = client.completions.create(**kw)
    assert r.usage.completion_tokens >= 4
    # the same seed gives the same sample
    assert client.completions.create(**kw).choices[0].text == r.choices[0].text


def test_logit_bias(client, model_id, server):
    """A +100 bias on one token makes greedy decoding pick it every step."""
    tid = requests.post(server.url + "/v1/tokenize", timeout=10,
                        json={"model": model_id, "prompt": " banana", "add_special_tokens": False}).json()["tokens"]
    assert len(tid) == 1, tid
    r = client.completions.create(model=model_id, prompt="My favourite colour is", max_tokens=3, temperature=0,
                                  logit_bias={str(tid[0]): 100}, extra_body={"ignore_eos": True})
    assert r.choices[0].text == " banana" * 3, r.choices[0].text


def test_stop_token_ids(client, model_id, server):
    free = client.completions.create(model=model_id, prompt="Count: 1, 2, 3,", max_tokens=8, temperature=0,
                                     logprobs=1, extra_body={"ignore_eos": True})
    toks = free.choices[0].logprobs.tokens
    assert len(toks) >= 3
    # stop at the id of the third generated token
    ids = requests.post(server.url + "/v1/tokenize", timeout=10,
                        json={"model": model_id, "prompt": toks[2], "add_special_tokens": False}).json()["tokens"]
    assert len(ids) == 1, (toks[2], ids)
    r = client.completions.create(model=model_id, prompt="Count: 1, 2, 3,", max_tokens=8, temperature=0,
                                  extra_body={"ignore_eos": True, "stop_token_ids": ids})
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text.startswith("".join(toks[:2]))
    assert r.usage.completion_tokens <= 3


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 30}},
                       "required": ["tz"], "additionalProperties": False},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _check_call(call, tools):
    assert call.type == "function"
    assert call.id
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert call.function.name in by_name, call.function.name
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, by_name[call.function.name])
    return args


def test_tool_choice_required(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                       max_tokens=80, temperature=0)
    calls = r.choices[0].message.tool_calls
    assert calls, r.choices[0].message
    for c in calls:
        _check_call(c, [WEATHER, TIME])
    assert r.choices[0].finish_reason == "tool_calls"


def test_tool_choice_named(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=ASK, tools=[WEATHER, TIME], max_tokens=80,
                                       temperature=0.7, seed=5,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = r.choices[0].message.tool_calls
    assert calls and len(calls) == 1, r.choices[0].message
    assert calls[0].function.name == "get_time"
    _check_call(calls[0], [TIME])


def test_tool_choice_auto(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=ASK, tools=[WEATHER, TIME], tool_choice="auto",
                                       max_tokens=48, temperature=0)
    m = r.choices[0].message
    if m.tool_calls:
        for c in m.tool_calls:
            _check_call(c, [WEATHER, TIME])
        assert r.choices[0].finish_reason == "tool_calls"
    else:
        assert isinstance(m.content, str)
        # text that was not parsed as a call holds no raw call markup
        assert "<tool_call>" not in m.content


def test_tool_choice_none(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=ASK, tools=[WEATHER], tool_choice="none",
                                       max_tokens=16, temperature=0)
    assert not r.choices[0].message.tool_calls
    assert isinstance(r.choices[0].message.content, str)


def test_tool_result_round(client, model_id):
    msgs = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
    ]
    r = client.chat.completions.create(model=model_id, messages=msgs, tools=[WEATHER], max_tokens=16, temperature=0)
    assert r.choices[0].message.content is not None or r.choices[0].message.tool_calls


def test_cached_tokens(client, model_id):
    prefix = "Background: " + " ".join(f"fact {i} is that item {i} weighs {i * 3} grams." for i in range(40))
    msgs = [{"role": "system", "content": prefix}, {"role": "user", "content": "Which item weighs 9 grams?"}]
    r1 = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=2, temperature=0)
    r2 = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=2, temperature=0)
    assert r2.usage.prompt_tokens == r1.usage.prompt_tokens > 200
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert cached > 0
    assert cached >= r1.usage.prompt_tokens // 2
    assert cached <= r2.usage.prompt_tokens


def test_tokenize_detokenize(server, model_id):
    text = "Hello, world! Ünïcödé and emoji 🙂 and   spaces."
    r = requests.post(server.url + "/v1/tokenize", json={"model": model_id, "prompt": text,
                                                         "add_special_tokens": False}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    toks = body["tokens"]
    assert all(isinstance(t, int) for t in toks) and len(toks) > 5
    if "count" in body:
        assert body["count"] == len(toks)
    d = requests.post(server.url + "/v1/detokenize", json={"model": model_id, "tokens": toks}, timeout=10)
    assert d.status_code == 200, d.text
    assert d.json()["text"] == text
    # bad token ids are a 400
    bad = requests.post(server.url + "/v1/detokenize", json={"model": model_id, "tokens": [10 ** 9]}, timeout=10)
    assert bad.status_code == 400
    alive(server, model_id)
