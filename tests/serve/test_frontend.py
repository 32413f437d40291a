"""SGLang's own frontend (sglang 0.5.2 from PyPI, installed without torch)
running its programs unchanged against `sgl serve` through RuntimeEndpoint.
The model is small: assertions are on structure (what the constraints and
the interpreter guarantee), never on what the model knows."""
import json
import re

import pytest
import requests

sgl = pytest.importorskip("sglang")


@pytest.fixture(scope="module")
def backend(server):
    be = sgl.RuntimeEndpoint(server.url, chat_template_name="chatml")
    sgl.set_default_backend(be)
    yield be


@pytest.fixture(autouse=True)
def no_executor_errors(recwarn, request):
    """The frontend's interpreter turns an exception in a program (a failed
    HTTP request included) into a warning: any such warning fails the test
    (unless it failed already)."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        return
    errs = [str(w.message) for w in recwarn.list if "Error in stream_executor" in str(w.message)]
    assert not errs, errs[0][-1500:]


def test_endpoint_info(backend, server):
    assert backend.get_model_name() == requests.get(server.url + "/get_model_info").json()["model_path"]
    assert isinstance(backend.get_server_info(), dict)
    backend.flush_cache()
    backend.cache_prefix("A prefix worth caching. " * 8)


def test_gen_stop(backend):
    @sgl.function
    def f(s):
        s += "List: 1. apples\n2. pears\n3."
        s += sgl.gen("item", max_tokens=24, stop="\n", temperature=0)
        s += "\nDone."

    st = f.run()
    assert "\n" not in st["item"]
    assert st.text().endswith(st["item"] + "\nDone.")
    mi = st.get_meta_info("item")
    assert mi["finish_reason"]["type"] in ("stop", "length")


def test_run_batch(backend):
    @sgl.function
    def f(s, word):
        s += "Repeat the word " + word + ":"
        s += sgl.gen("out", max_tokens=5, temperature=0)

    args = [{"word": w} for w in ("cat", "dog", "sun", "sea")]
    rets = f.run_batch(args, num_threads=4)
    assert len(rets) == 4
    one = [f.run(**a)["out"] for a in args]
    assert [r["out"] for r in rets] == one
    assert all(r.text().startswith("Repeat the word " + a["word"]) for r, a in zip(rets, args))


def test_roles(backend):
    @sgl.function
    def chat(s, q):
        s += sgl.system("You are terse.")
        s += sgl.user(q)
        s += sgl.assistant(sgl.gen("a1", max_tokens=12, temperature=0))
        with s.user():
            s += "And again?"
        with s.assistant():
            s += sgl.gen("a2", max_tokens=12, temperature=0)

    st = chat.run(q="Say hi.")
    msgs = st.messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[2]["content"] == st["a1"] and msgs[4]["content"] == st["a2"]
    assert "<|im_start|>assistant" in st.text()
    assert "<|im_end|>" not in st["a1"]


def test_select(backend):
    @sgl.function
    def f(s):
        s += "Is water wet? Answer:"
        s += sgl.select("ans", ["Yes", "No", "Maybe"])

    st = f.run()
    assert st["ans"] in ("Yes", "No", "Maybe")
    assert st.text().endswith(st["ans"])
    mi = st.get_meta_info("ans")
    assert len(mi["normalized_prompt_logprobs"]) == 3
    best = max(range(3), key=lambda i: mi["normalized_prompt_logprobs"][i])
    assert ["Yes", "No", "Maybe"][best] == st["ans"]
    # the unconditional method takes a second request with input_ids
    from sglang.lang.choices import unconditional_likelihood_normalized

    @sgl.function
    def g(s):
        s += "Is water wet? Answer:"
        s += sgl.select("ans", ["Yes", "No"], choices_method=unconditional_likelihood_normalized)

    st = g.run()
    assert st.error() is None, st.error()
    assert st["ans"] in ("Yes", "No")


def test_fork(backend):
    @sgl.function
    def f(s):
        s += "Two tips for sleeping well:\n"
        forks = s.fork(2)
        for i, fk in enumerate(forks):
            fk += f"Tip {i + 1}:" + sgl.gen("tip", max_tokens=8, stop="\n", temperature=0)
        forks.join()
        s += "Tip A:" + forks[0]["tip"] + "\nTip B:" + forks[1]["tip"]

    st = f.run()
    assert st.text().startswith("Two tips for sleeping well:\nTip A:")
    assert "\n" not in st.text().split("Tip A:")[1].split("\nTip B:")[0]


def test_fork_concate_and_append(backend):
    @sgl.function
    def f(s, ctx):
        s += "Facts:\n"
        forks = s.fork(len(ctx))
        forks += lambda i: ctx[i] + "\n"
        forks.join(mode="concate_and_append")
        s += "Question: who? Answer:" + sgl.gen("a", max_tokens=6, temperature=0)

    st = f.run(ctx=["Ann is tall.", "Bob is short."])
    assert isinstance(st["a"], str)


def test_regex(backend):
    rx = r"[0-9]{3}-[0-9]{4}"

    @sgl.function
    def f(s):
        s += "Phone number: " + sgl.gen("num", regex=rx, max_tokens=16, temperature=0.7)

    for _ in range(2):
        assert re.fullmatch(rx, f.run()["num"])


def test_dtype_int(backend):
    @sgl.function
    def f(s):
        s += "The number of legs of a spider is " + sgl.gen("n", dtype=int, max_tokens=8) + ".\n"
        s += "A float: " + sgl.gen("x", dtype=float, max_tokens=10) + "\n"

    st = f.run()
    int(st["n"])
    float(st["x"])
    assert re.fullmatch(r"[-+]?\d+", st["n"])


def test_streaming(backend):
    @sgl.function
    def f(s):
        s += "Write a short poem about rain:\n"
        s += sgl.gen("poem", max_tokens=16, temperature=0)

    ref = f.run()["poem"]
    st = f.run(stream=True)
    pieces = list(st.text_iter("poem"))
    assert len(pieces) >= 2
    assert "".join(pieces) == ref
    st.sync()
    assert st["poem"] == ref


def test_logprobs(backend):
    @sgl.function
    def f(s):
        s += "The moon is"
        s += sgl.gen("x", max_tokens=4, temperature=0, return_logprob=True, top_logprobs_num=2,
                     logprob_start_len=0, return_text_in_logprobs=True)

    st = f.run()
    assert st.error() is None, st.error()
    mi = st.get_meta_info("x")
    assert len(mi["output_token_logprobs"]) == mi["completion_tokens"]
    assert "".join(t[2] for t in mi["output_token_logprobs"]) == st["x"]
    assert all(t[0] <= 0 for t in mi["output_token_logprobs"])


def test_json_schema_gen(backend):
    import jsonschema
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 8}},
              "required": ["a", "b"], "additionalProperties": False}

    @sgl.function
    def f(s):
        s += "JSON: " + sgl.gen("j", json_schema=json.dumps(schema), max_tokens=40)

    jsonschema.validate(json.loads(f.run()["j"]), schema)


# ---- sglang/test/test_programs.py, the functions that check structure ----
# (the others assert a large model's knowledge: capitals, arithmetic, HellaSwag
# accuracy; test_image_qa needs a vision model; the speculative ones need an
# API backend; test_gen_min_new_tokens needs a Hugging Face tokenizer, so it
# is rewritten below with the server's tokenizer).

@pytest.fixture(scope="module")
def tp(backend):
    from sglang.test import test_programs
    return test_programs


def test_programs_mt_bench(tp):
    tp.test_mt_bench()


def test_programs_select(tp):
    tp.test_select(check_answer=False)


def test_programs_decode_json_regex(tp):
    tp.test_decode_json_regex()


def test_programs_decode_json(tp):
    tp.test_decode_json()


def test_programs_expert_answer(tp):
    tp.test_expert_answer(check_answer=False)


def test_programs_parallel_decoding(tp):
    tp.test_parallel_decoding()


def test_programs_parallel_encoding(tp):
    tp.test_parallel_encoding(check_answer=False)


def test_programs_stream(tp):
    tp.test_stream()


def test_programs_regex(tp):
    tp.test_regex()


def test_programs_dtype_gen(tp):
    tp.test_dtype_gen()


def test_min_new_tokens(backend, server):
    """test_gen_min_new_tokens, counting tokens with the server's tokenizer."""
    @sgl.function
    def f(s):
        s += sgl.user("What is the capital of the United States?")
        s += sgl.assistant(sgl.gen("answer", min_tokens=24, max_tokens=32))

    st = f.run()
    assert st.get_meta_info("answer")["completion_tokens"] >= 24, st["answer"]
    ids = requests.post(server.url + "/v1/tokenize", json={"prompt": st["answer"], "add_special_tokens": False},
                        timeout=10).json()["tokens"]
    assert len(ids) >= 12, st["answer"]
