#!/usr/bin/env python3
"""Record reference logits from llama.cpp (llama-cpp-python) for test_model.

Usage: .dev/venv/bin/python tests/tools/llama_ref.py [model.gguf] > tests/data/smollm2_q4_1_logits.txt

For each prompt the token ids come from llama.cpp's own tokenizer (so the
test needs no tokenizer: it reads the ids from the file). Each prompt is
evaluated from an empty cache in one batch; we record the top-20
(id, logit) of the last position, and for prompts marked "all", the top-10
of every position (to check MODEL_LOGITS_ALL). The file is plain text:

    prompt <name> <n> <id> <id> ...
    pos <name> <position> <k> <id> <logit> <id> <logit> ...
    stats <name> <mean> <std>          (over the whole last-position row)
"""
import sys

import numpy as np
from llama_cpp import Llama, __version__

PROMPTS = [
    ("capital", "The capital of France is", False),
    ("chat", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
             "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", True),
    ("story", "Once upon a time, in a small village nestled between two mountains, there lived an old clockmaker "
              "named Elias. Every morning he opened his shop at dawn, wound each of the hundred clocks on his walls, "
              "and listened to them tick in unison. One day a young girl came in carrying a broken pocket watch, and "
              "she asked him whether", False),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n    return", True),
    ("one", "Hello", False),
]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    llm = Llama(model_path=path, n_ctx=1024, n_batch=1024, n_threads=1, logits_all=True, verbose=False,
                seed=0)
    out = sys.stdout
    out.write(f"# reference logits: llama-cpp-python {__version__}, model {path.split('/')[-1]},\n")
    out.write("# n_threads=1, n_batch=1024 (one batch per prompt), f16 KV cache. Made by tests/tools/llama_ref.py\n")
    for name, text, all_pos in PROMPTS:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)], dtype=np.float64)
        out.write(f"prompt {name} {len(ids)} " + " ".join(map(str, ids)) + "\n")
        positions = range(len(ids)) if all_pos else [len(ids) - 1]
        for p in positions:
            k = 20 if p == len(ids) - 1 else 10
            row = scores[p]
            top = np.argsort(-row, kind="stable")[:k]
            out.write(f"pos {name} {p} {k} " + " ".join(f"{i} {row[i]:.5f}" for i in top) + "\n")
        last = scores[len(ids) - 1]
        out.write(f"stats {name} {last.mean():.5f} {last.std():.5f}\n")


if __name__ == "__main__":
    main()
