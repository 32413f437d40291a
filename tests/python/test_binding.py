"""tests/python/test_binding.py — the Python binding (bindings/python) on the
default model: a program with a model call, a batch, a stream (iterator and
callback), a cancelled stream, the value kinds, and errors with file:line:col.

Run by `make py-test` (libsgl.so from $SGL_LIBRARY, the package installed
into build/venv with pip). Skips the model tests when the model is absent."""

import os

import pytest

import sgl

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

CAPITAL = '''
fn main(country) {
  "The capital of " + country + " is"
  gen("answer", max_tokens: 8, temperature: 0)
  return {"country": country, "n": len(state["answer"]), "half": 0.5}
}

fn broken(n) {
  let xs = [1, 2, 3]
  return xs[n]
}
'''


@pytest.fixture(scope="module")
def rt():
    if not os.path.exists(MODEL):
        pytest.skip("no model: make model")
    r = sgl.Runtime(model=MODEL, threads=2)
    yield r
    r.close()


def test_run_with_a_model_call(rt):
    prog = rt.compile(CAPITAL, name="capital.sgl")
    res = prog.run(country="France")
    assert res.text.startswith("The capital of France is")
    assert res.text == "The capital of France is" + res.vars["answer"]
    assert res.value == {"country": "France", "n": len(res.vars["answer"]), "half": 0.5}
    assert isinstance(res.value["n"], int) and isinstance(res.value["half"], float)
    assert rt.model_path.endswith(".gguf")


def test_a_runtime_error_carries_file_line_col(rt):
    prog = rt.compile(CAPITAL, name="capital.sgl")
    with pytest.raises(sgl.SglRuntimeError) as e:
        prog.call("broken", {"n": 7})
    assert (e.value.file, e.value.line) == ("capital.sgl", 10)
    assert e.value.col > 0
    assert "out of range" in str(e.value)
    # the runtime goes on after it
    assert prog.run(country="Italy").text.startswith("The capital of Italy is")


def test_usage_and_compile_errors(rt):
    prog = rt.compile(CAPITAL)
    with pytest.raises(sgl.UsageError, match="no parameter 'nope'"):
        prog.run(nope=1)
    with pytest.raises(sgl.CompileError) as e:
        rt.compile('fn main() {\n  let x = \n}\n', name="bad.sgl")
    assert e.value.file == "bad.sgl" and e.value.line is not None


def test_batch(rt):
    prog = rt.compile(CAPITAL)
    out = prog.run_batch([{"country": "Peru"}, {"country": "Chile"}, {"nope": 1}])
    assert out[0].text.startswith("The capital of Peru is")
    assert out[1].text.startswith("The capital of Chile is")
    assert isinstance(out[2], sgl.UsageError)
    # the same greedy answer as one run alone
    assert out[0].vars["answer"] == prog.run(country="Peru").vars["answer"]


def test_stream_iterator_and_callback(rt):
    prog = rt.compile(CAPITAL)
    s = prog.stream(country="Spain")
    events = list(s)
    texts = [e.text for e in events if e.kind == "text"]
    assert len(texts) >= 2, events
    assert all(e.name == "answer" and e.branch == 0 for e in events)
    var = [e for e in events if e.kind == "var"]
    assert len(var) == 1 and var[0].value == "".join(texts)
    assert s.result.vars["answer"] == "".join(texts)
    seen = []
    res = prog.call(None, {"country": "Spain"}, on_event=seen.append)
    assert "".join(e.text for e in seen if e.kind == "text") == res.vars["answer"]


def test_leaving_a_stream_early_cancels_it(rt):
    prog = rt.compile('fn main() {\n  "Once upon a time"\n  gen("s", max_tokens: 300, ignore_eos: true, temperature: 0)\n}\n')
    for ev in prog.stream():
        assert ev.kind == "text"
        break
    # cancelled in the engine: the next run goes at once and nothing is left over
    res = rt.compile(CAPITAL).run(country="Japan")
    assert res.text.startswith("The capital of Japan is")


def test_signature_and_bytecode(rt, tmp_path):
    prog = rt.compile(CAPITAL)
    sig = prog.signature()
    assert sig["functions"][0] == {"name": "main", "params": [{"name": "country"}]}
    path = tmp_path / "capital.sglc"
    prog.save(path)
    again = rt.load(path)
    assert again.run(country="France").vars == prog.run(country="France").vars


def test_lazy_runtime_without_a_model_runs_what_needs_none():
    r = sgl.Runtime(model="/nonexistent/model.gguf", lazy=True)
    try:
        prog = r.compile('fn main(a, b = 2) { return a * b }')
        assert prog.run(a=21).value == 42
        with pytest.raises(sgl.SglRuntimeError, match="model"):
            r.compile('fn main() { gen("x", max_tokens: 2) }', name="m.sgl").run()
    finally:
        r.close()
