#!/usr/bin/env python3
"""Record the tokenizer reference data under tests/data/tok/.

What it writes, and from what:

  tests/data/tok/corpus.json        the test strings (English, code, CJK, emoji,
                                    whitespace runs, digits, special tokens, and a
                                    seeded random mix)
  tests/data/tok/<name>/            small tokenizer.json (+ tokenizer_config.json)
                                    files built here with Hugging Face `tokenizers`:
      bytelevel   SmolLM2's byte-level BPE (vocabulary and merges from the
                  default GGUF, cut to its first N merges so the file stays
                  small), SmolLM2's pre-tokenizer (Digits + ByteLevel)
      llama3      same vocabulary, Llama 3's Split regex + ByteLevel(use_regex
                  false), ignore_merges, BOS template
      qwen2       same vocabulary, Qwen2's NFC + Split regex + ByteLevel
      spm_legacy  a SentencePiece-style BPE trained here with byte_fallback,
                  Llama 2's layout: Prepend("▁") + Replace(" ", "▁")
                  normalizer, no pre-tokenizer, <s> template
      spm_meta    the same model with a Metaspace(prepend_scheme "first")
                  pre-tokenizer (Mistral / newer Llama layout)
  tests/data/tok/<name>.ids.json    HF `tokenizers` ids for every corpus string:
                                    "ids" (parse special, no BOS), "noparse"
                                    (encode_special_tokens, when different),
                                    "add" (add_special_tokens, first cases),
                                    "decode" (decode, skip special, when != text)
  tests/data/tok/smollm2_gguf.ids.json
                                    llama.cpp ids (llama-cpp-python,
                                    vocab_only) for the default GGUF
                                    models/SmolLM2-135M-Instruct.Q4_1.gguf
  tests/data/tok/vocab_<name>.ids.json
                                    llama.cpp ids for llama.cpp's test
                                    vocabularies (ggml-vocab-*.gguf shipped in the
                                    llama-cpp-python sdist), when --vocab-dir has
                                    them; the unit test skips them when absent

  python tests/tools/make_tok_refs.py refs [--vocab-dir DIR]
  python tests/tools/make_tok_refs.py fetch-vocab DIR   # pip download the sdist, extract ggml-vocab-*.gguf

Run with the project venv (.dev/venv/bin/python: tokenizers, gguf, numpy,
llama-cpp-python). The Unicode NFC tables of runtime/tok_nfc.c come from
tools/gen_nfc.py.
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "tok")
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
N_MERGES = 12000  # of SmolLM2's 48900: keeps each byte-level tokenizer.json small

RE_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
RE_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---------------------------------------------------------------- corpus ----

FIXED = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\t\t\n  \n", "a", "A", "Hello", "hello",
    " Hello", "  Hello", "Hello world", "Hello, world!", "Hello world!\n", " Hello World.", "hello   world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see we've done it; they'd say it's John's, DON'T SHOUT, We'Ll, I'M, You'RE.",
    "it\u2019s a \u201cquoted\u201d phrase \u2014 with dashes\u2026",
    "Numbers: 0 1 12 123 1234 12345 123456 1234567 3.14159 -42 1e10 0x1F 1,000,000",
    "Unicode digits: \u0661\u0662\u0663 \u00b2\u00b3 \u00bd \u2460\u2461 \u0968\u0969 \uff11\uff12\uff13 \u3007",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"name": "sgl", "tags": ["a", "b"], "n": 3, "ok": true, "x": null}',
    "    indented\n        more\n\ttabbed\n \t mixed \t\n",
    "trailing spaces   ", "   leading spaces", "many        spaces        here",
    "line1\nline2\r\nline3\rline4\n\n\nline7",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
    "\u6211\u662f\u4e00\u4e2a\u4eba\u5de5\u667a\u80fd\u52a9\u624b\uff0c\u53ef\u4ee5\u56de\u7b54\u95ee\u9898\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002\u30ab\u30bf\u30ab\u30ca\u3082\u3002",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1.",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber \u00df \u00e6 \u00f8 \u00e5 \u0142 \u0151",
    "emoji: \U0001F600 \U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467 \U0001F1EF\U0001F1F5 \u2764\ufe0f \U0001F525\U0001F525\U0001F525",
    "\U0001F916\U0001F916 robots\U0001F680",
    "math: \u2200x\u2208\u211d, x\u00b2 \u2265 0; \u221a2 \u2248 1.414; \u03c0r\u00b2; a\u2260b \u2192 c",
    "symbols: @#$%^&*()_+-=[]{}|;':\",./<>?`~ \\ \u00a9 \u00ae \u2122 \u20ac \u00a3 \u00a5",
    "odd spaces: a\u00a0b c\u3000d e\u2028f g\u2029h i\u180ej k\u200bl m\u0085n o\u001fp q\u000bs t\u000cu",
    "\u2003em\u2002en\u2009thin\u202fnarrow\u205fmath",
    "x   \u180ey \u180e\u180e z  \u200b w\u3000 \u3000v",
    "url: https://example.com/path?q=1&r=2#frag email: someone@example.org",
    "# Title\n\n- item *one*\n- item **two**\n\n```python\nprint('hi')\n```\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|><|im_end|>", " <|im_end|> ",
    "text<|im_end|>text", "<|im_start", "im_start|>", "<|im_end|", "<|im_start|>user\n\n<|im_end|>",
    "<s>", "</s>", "<s> hello </s>", "<unk>", "<s>[INST] Hi [/INST]", "<|begin_of_text|>hi<|eot_id|>",
    "<<|im_start|>>", "<|<|im_end|>|>", "a<|endoftext|>b<|endoftext|>c",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "abababababababababababababababababababab", "...........................................",
    "!!!!!!!!????????", "----------==========##########", "1111111111111111111111111111111111",
    "\u00e9" * 40, "\u4e00" * 30, "\U0001F600" * 12,
    "e\u0301 combining acute, n\u0303, a\u030a, \u1100\u1161 jamo",
    "Mixed \u4e2d\u6587 and English, \u6570\u5b57123\u548c\u7b26\u53f7!",
    "tab\tseparated\tvalues\n1\t2\t3\n", "CamelCaseIdentifierName snake_case_name kebab-case-name",
    "\u00ad soft\u00adhyphen \u00a0nbsp", "\u0130stanbul \u0131 \u017f \u212a Kelvin",
    "He said: 'yes'. She said: \"no\". 'tis 'twas",
    "  \n  \n  ", " \t \t ", "\n\n\n\n\n\n\n\n", "        ", "\u3000\u3000\u3000",
    "x" * 300, ("word " * 60).strip(),
]


def random_strings(n, seed=1234):
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3 +
            list(" " * 20) + list("\n\t\r") + list(".,;:!?'\"()[]{}<>|/\\-_=+*&^%$#@~`") +
            list("\u00e9\u00fc\u00f1\u00df\u00e5\u0142\u4e00\u4e8c\u4e09\u4f60\u597d\u3042\u30a2\ud55c\u0436\u03c9\u0661\u00b2\u00bd") +
            ["\U0001F600", "\U0001F44D", "\u200d", "\u00a0", "\u3000", "\u0301", "\u2019", "'s", "'ll", " '",
             "<|im_end|>", "<s>", "  ", "    ", "\n\n", "123", "1000"])
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 60)
        out.append("".join(rng.choice(pool) for _ in range(k)))
    return out


def corpus(vocab_dir):
    cases = list(FIXED) + random_strings(160)
    # llama.cpp's own tokenizer test inputs, where we have them
    if vocab_dir:
        inp = os.path.join(vocab_dir, "ggml-vocab-llama-bpe.gguf.inp")
        if os.path.exists(inp):
            with open(inp, encoding="utf-8") as f:
                parts = f.read().split("\n__ggml_vocab_test__\n")
            cases += [p for p in parts if p.strip() or p][:80]
    seen, uniq = set(), []
    for c in cases:
        if c not in seen and "\x00" not in c:
            seen.add(c)
            uniq.append(c)
    return uniq

# ---------------------------------------------------------- tokenizers ------


def gguf_vocab(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def strs(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strs("tokenizer.ggml.tokens")
    merges = strs("tokenizer.ggml.merges")
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    return tokens, types, merges


def reduced_bytelevel(tokens, types, merges, n_merges):
    """The first n_merges merges and the tokens they reach (plus every byte
    symbol and the control tokens), renumbered densely."""
    from tokenizers.pre_tokenizers import ByteLevel
    alphabet = ByteLevel.alphabet()
    keep = [t for t, ty in zip(tokens, types) if ty == 3]
    keep_set = set(keep)
    base = sorted(alphabet)
    for ch in base:
        if ch not in keep_set:
            keep.append(ch)
            keep_set.add(ch)
    used = []
    for m in merges[:n_merges]:
        a, b = m.split(" ", 1)
        if a in keep_set and b in keep_set:
            used.append((a, b))
            if a + b not in keep_set:
                keep.append(a + b)
                keep_set.add(a + b)
    vocab = {t: i for i, t in enumerate(keep)}
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    return vocab, used, specials


def build_bytelevel(kind, vocab, merges, specials):
    from tokenizers import Tokenizer, AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    model = BPE(vocab=vocab, merges=merges, ignore_merges=(kind == "llama3"))
    tok = Tokenizer(model)
    if kind == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif kind == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(RE_LLAMA3), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    elif kind == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(RE_QWEN2), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if kind == "llama3":
        bos = "<|endoftext|>"
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, vocab[bos])])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


SPM_TRAIN_EXTRA = [
    "\u4f60\u597d\u4e16\u754c\u4eca\u5929\u5929\u6c14\u5f88\u597d\u6211\u662f\u4eba\u5de5\u667a\u80fd",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
]


def train_spm_model(n_vocab=3000):
    """A small SentencePiece-style BPE (characters + byte fallback) trained
    on Python's own documentation strings and this corpus. Words are split
    before "▁" while training, so, as in SentencePiece vocabularies, "▁" only
    ever starts a piece."""
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import BPE
    texts = []
    for mod in ("json", "argparse", "random", "os", "subprocess", "tarfile", "unicodedata", "tempfile"):
        m = __import__(mod)
        for name in dir(m):
            doc = getattr(getattr(m, name), "__doc__", None)
            if isinstance(doc, str):
                texts.append(doc)
    texts += FIXED + SPM_TRAIN_EXTRA
    tok = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=n_vocab, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=400, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    m = json.loads(tok.to_str())["model"]
    merges = [tuple(x.split(" ", 1)) if isinstance(x, str) else tuple(x) for x in m["merges"]]
    trained = sorted(m["vocab"].items(), key=lambda kv: kv[1])
    # Llama 2's layout: <unk> <s> </s>, the 256 byte tokens, then the pieces
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in trained:
        if t not in vocab:
            vocab[t] = len(vocab)
    return vocab, merges


def build_spm(kind, vocab, merges):
    from tokenizers import Tokenizer, AddedToken, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if kind == "spm_legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                         decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in ("<unk>", "<s>", "</s>")])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


VARIANTS = [
    # GPT-2 / RoBERTa style: a space before every piece that lacks one
    ("bytelevel_prefix", "bytelevel", {"pre_tokenizer": {
        "type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}),
    # Split behaviours other than Isolated, and invert
    ("bytelevel_splits", "bytelevel", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[.,;:!?]+"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\p{N}"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[aeiou]"}, "behavior": "MergedWithNext", "invert": True},
        {"type": "Split", "pattern": {"Regex": "\\n"}, "behavior": "Removed", "invert": False},
        {"type": "Digits", "individual_digits": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}}),
]
SPM_VARIANTS = [
    # Metaspace that splits words and always prepends
    ("spm_meta_split", "spm_meta", {"pre_tokenizer": {
        "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}}),
]


def hf_refs(tok, texts, n_add=24):
    cases = []
    for i, text in enumerate(texts):
        c = {"text": text, "ids": tok.encode(text, add_special_tokens=False).ids}
        tok.encode_special_tokens = True
        noparse = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        if noparse != c["ids"]:
            c["noparse"] = noparse
        if i < n_add:
            c["add"] = tok.encode(text, add_special_tokens=True).ids
        dec = tok.decode(c["ids"], skip_special_tokens=True)
        if dec != text:
            c["decode"] = dec
        cases.append(c)
    return cases


def llama_refs(path, texts, n_add=24):
    from llama_cpp import Llama
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    cases = []
    for i, text in enumerate(texts):
        b = text.encode("utf-8")
        c = {"text": text, "ids": llm.tokenize(b, add_bos=False, special=True)}
        noparse = llm.tokenize(b, add_bos=False, special=False)
        if noparse != c["ids"]:
            c["noparse"] = noparse
        if i < n_add:
            c["add"] = llm.tokenize(b, add_bos=True, special=True)
        cases.append(c)
    del llm
    return cases


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)", file=sys.stderr)


def save_hf(tok, name, config):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    dump(os.path.join(d, "tokenizer_config.json"), config)
    print(f"wrote tests/data/tok/{name}/tokenizer.json "
          f"({os.path.getsize(os.path.join(d, 'tokenizer.json'))} bytes)", file=sys.stderr)


def cmd_refs(args):
    os.makedirs(OUT, exist_ok=True)
    texts = corpus(args.vocab_dir)
    dump(os.path.join(OUT, "corpus.json"), texts)

    tokens, types, merges = gguf_vocab(GGUF)
    vocab, used, specials = reduced_bytelevel(tokens, types, merges, N_MERGES)
    chat = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    for kind in ("bytelevel", "llama3", "qwen2"):
        tok = build_bytelevel(kind, vocab, used, specials)
        cfg = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": chat}
        if kind == "llama3":
            cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
        save_hf(tok, kind, cfg)
        dump(os.path.join(OUT, f"{kind}.ids.json"), {"tokenizer": kind, "reference": "tokenizers " +
             __import__("tokenizers").__version__, "cases": hf_refs(tok, texts)})

    # variants: a base directory's tokenizer.json with one top-level key
    # replaced ("patch"); the unit test applies the same patch
    from tokenizers import Tokenizer
    added = json.load(open(os.path.join(OUT, "bytelevel", "tokenizer.json"), encoding="utf-8"))["added_tokens"]
    for a in added:  # stripping, single-word and non-special added tokens
        if a["content"] == "<|im_end|>":
            a.update(lstrip=True, rstrip=True)
        elif a["content"] == "<|im_start|>":
            a.update(special=False)
        elif a["content"] == "<|endoftext|>":
            a.update(single_word=True)
    VARIANTS.append(("bytelevel_added", "bytelevel", {"added_tokens": added}))
    for name, base, patch in VARIANTS:
        d = json.load(open(os.path.join(OUT, base, "tokenizer.json"), encoding="utf-8"))
        d.update(patch)
        tok = Tokenizer.from_str(json.dumps(d))
        dump(os.path.join(OUT, f"{name}.ids.json"), {"tokenizer": base, "patch": patch, "reference": "tokenizers " +
             __import__("tokenizers").__version__, "cases": hf_refs(tok, texts)})

    svocab, smerges = train_spm_model()
    for kind in ("spm_legacy", "spm_meta"):
        tok = build_spm(kind, svocab, smerges)
        save_hf(tok, kind, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True})
        dump(os.path.join(OUT, f"{kind}.ids.json"), {"tokenizer": kind, "reference": "tokenizers " +
             __import__("tokenizers").__version__, "cases": hf_refs(tok, texts)})
    for name, base, patch in SPM_VARIANTS:
        d = json.load(open(os.path.join(OUT, base, "tokenizer.json"), encoding="utf-8"))
        d.update(patch)
        tok = Tokenizer.from_str(json.dumps(d))
        dump(os.path.join(OUT, f"{name}.ids.json"), {"tokenizer": base, "patch": patch, "reference": "tokenizers " +
             __import__("tokenizers").__version__, "cases": hf_refs(tok, texts)})

    try:
        import llama_cpp
        ver = "llama-cpp-python " + llama_cpp.__version__
    except ImportError:
        print("llama_cpp not importable: skipping llama.cpp references", file=sys.stderr)
        return
    dump(os.path.join(OUT, "smollm2_gguf.ids.json"),
         {"gguf": "models/SmolLM2-135M-Instruct.Q4_1.gguf", "reference": ver,
          "cases": llama_refs(GGUF, texts)})
    if args.vocab_dir:
        for name in ("llama-spm", "llama-bpe", "qwen2", "gpt-2"):
            p = os.path.join(args.vocab_dir, f"ggml-vocab-{name}.gguf")
            if os.path.exists(p):
                dump(os.path.join(OUT, f"vocab_{name}.ids.json"),
                     {"gguf": f"ggml-vocab-{name}.gguf", "reference": ver, "cases": llama_refs(p, texts)})


def cmd_fetch_vocab(args):
    """llama.cpp's test vocabularies, from the llama-cpp-python sdist."""
    os.makedirs(args.dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "-q", "-d", tmp, "llama-cpp-python==0.3.36"])
        (sdist,) = glob.glob(os.path.join(tmp, "llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tf:
            for m in tf.getmembers():
                base = os.path.basename(m.name)
                if "/vendor/llama.cpp/models/ggml-vocab-" in m.name and m.isfile():
                    with tf.extractfile(m) as src, open(os.path.join(args.dir, base), "wb") as dst:
                        dst.write(src.read())
    print(f"vocabularies in {args.dir}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("refs")
    r.add_argument("--vocab-dir", default=os.path.join(ROOT, "build", "vocab"))
    f = sub.add_parser("fetch-vocab")
    f.add_argument("dir")
    args = ap.parse_args()
    {"refs": cmd_refs, "fetch-vocab": cmd_fetch_vocab}[args.cmd](args)


if __name__ == "__main__":
    main()
