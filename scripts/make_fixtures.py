#!/usr/bin/env python3
"""Write the llama.cpp reference fixtures that the parity tests compare against.

Runs llama.cpp through llama-cpp-python (PyPI; it compiles llama.cpp, so this is not
part of CI: the fixtures it writes are committed). Usage:

    python3 -m venv .venv && .venv/bin/pip install llama-cpp-python==0.3.36 numpy
    .venv/bin/python scripts/make_fixtures.py

Writes tests/fixtures/<model>.llamacpp.json with, per model:
  - tokenizer: token ids for fixed multilingual texts (special tokens parsed);
  - logits: for three prompts, llama.cpp's 64-token greedy continuation (token by
    token), and for the teacher-forced pass over prompt + continuation (one batch) the
    argmax and the top 8 (id, logit) at every position. `self_agreement` records how often
    llama.cpp's own token-by-token greedy choice equals its batched argmax: its noise floor.
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama, __version__ as llama_cpp_version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
OUT = os.path.join(ROOT, "tests", "fixtures")

COMMON_TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "你好，世界。這是中文的句子，还有日本語のテキスト。",
    "def square(x):\n    return x ** 2  # code, with    four spaces\n\tand a tab",
    "Emoji: 🙂🎉👍🏽 and flags 🇫🇷, numbers 1234567 and 3.14159",
    "   leading spaces, trailing spaces   ",
    "Café naïve résumé — Здравствуй, мир! مرحبا بالعالم",
    "  \n\n  mixed\r\nnewlines\n\n\n",
]
SPECIAL_TEXTS = {
    "smollm2-135m-instruct-q4_1": [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    ],
    "gemma-3-270m-q4_k_m": [
        "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
    ],
}
PROMPTS = {
    "smollm2-135m-instruct-q4_1": [
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "Once upon a time, in a small village by the sea,",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    ],
    "gemma-3-270m-q4_k_m": [
        "The capital of France is",
        "Once upon a time, in a small village by the sea,",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    ],
}
N_GEN = 64


def main():
    os.makedirs(OUT, exist_ok=True)
    names = sys.argv[1:] or list(PROMPTS)
    for name in names:
        path = os.path.join(MODELS, name + ".gguf")
        llm = Llama(model_path=path, n_ctx=1024, n_batch=1024, logits_all=True, n_threads=2, verbose=False, seed=0)
        fixture = {"llama_cpp_python": llama_cpp_version, "model": name + ".gguf", "tokenizer": [], "logits": []}
        for text in COMMON_TEXTS + SPECIAL_TEXTS[name]:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            fixture["tokenizer"].append({"text": text, "add_special": True, "parse_special": True, "ids": ids})
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            fixture["tokenizer"].append({"text": text, "add_special": False, "parse_special": False, "ids": ids})
        for prompt in PROMPTS[name]:
            prompt_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            llm.reset()
            llm.eval(prompt_ids)
            greedy = []
            for _ in range(N_GEN):
                tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                greedy.append(tok)
                llm.eval([tok])
            # Teacher forcing: the whole sequence in one batch, argmax at every position.
            llm.reset()
            seq = prompt_ids + greedy
            llm.eval(seq)
            scores = np.array(llm.scores[: len(seq)])
            argmax = [int(i) for i in scores.argmax(axis=1)]
            top_ids = np.argsort(-scores, axis=1)[:, :8]
            top = [[[int(i), round(float(scores[p, i]), 4)] for i in top_ids[p]] for p in range(len(seq))]
            scored = argmax[len(prompt_ids) - 1 : len(seq) - 1]
            self_agreement = sum(a == b for a, b in zip(scored, greedy)) / len(greedy)
            fixture["logits"].append(
                {
                    "prompt": prompt,
                    "prompt_ids": prompt_ids,
                    "greedy": greedy,
                    "argmax": argmax,
                    "top": top,
                    "self_agreement": self_agreement,
                    "text": llm.detokenize(greedy).decode("utf-8", "replace"),
                }
            )
            print(name, repr(fixture["logits"][-1]["text"][:80]))
        with open(os.path.join(OUT, name + ".llamacpp.json"), "w") as f:
            json.dump(fixture, f, ensure_ascii=False, indent=1)
        del llm


if __name__ == "__main__":
    main()
