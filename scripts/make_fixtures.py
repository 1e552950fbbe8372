#!/usr/bin/env python3
"""Write the llama.cpp reference fixtures that the parity tests compare against.

Runs llama.cpp through llama-cpp-python (PyPI; it compiles llama.cpp, so this is not
part of CI: the fixtures it writes are committed). llama.cpp is built portable: x86-64's
baseline (SSE2) without AVX, FMA, F16C, llamafile's GEMM or weight repacking. Its matrix
products are then ggml's reference kernels, the same for a batch as for one token (an AVX2
build's batched and token-by-token passes disagree at 3.6% of SmolLM2's positions, every
SIMD build rounds its own way), and `--numerics llama-cpp` in the engine reproduces them
(src/backend/llama_cpp.rs). Usage:

    python3 -m venv .venv
    CMAKE_ARGS="$PORTABLE" .venv/bin/pip install llama-cpp-python==0.3.36 numpy gguf
    .venv/bin/python scripts/make_fixtures.py

with PORTABLE="-DGGML_NATIVE=OFF -DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF
-DGGML_BMI2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_AVX512=OFF -DGGML_LLAMAFILE=OFF
-DGGML_CPU_REPACK=OFF -DLLAVA_BUILD=OFF". The script refuses a build that reports SIMD
features (`llama_print_system_info`).

Writes tests/fixtures/<model>.llamacpp.json with, per model:
  - tokenizer: token ids for fixed multilingual texts (special tokens parsed);
  - logits: for three prompts, llama.cpp's 64-token greedy continuation (token by
    token), and for the teacher-forced pass over prompt + continuation (one batch) the
    argmax and the top 8 (id, logit) at every position. `self_agreement` records how often
    llama.cpp's own token-by-token greedy choice equals its batched argmax: its noise floor.

`--variants` writes the other families' files derived from SmolLM2 (Qwen 2, Qwen 3, Phi-3,
Llama 3's RoPE factors) and Gemma 3 (its sliding window and RoPE scaling, Gemma 2;
tests/common/variants.rs, through `cargo test`) and both test models
converted to F32 to models/variants/, and their logits fixtures
(tests/fixtures/variant-*.llamacpp.json, *-f32.llamacpp.json); then, as `--pre-tokenizers`
alone does, SmolLM2's vocabulary under every pre-tokenizer name llama.cpp knows
(tests/fixtures/pre-tokenizers.llamacpp.json). `--variants NAME...` writes only the named
logits fixtures (e.g. `variant-gemma2`).
"""
import json
import os
import subprocess
import sys

import numpy as np
from llama_cpp import Llama, __version__ as llama_cpp_version, llama_print_system_info

BUILD = llama_print_system_info().decode().strip()
if any(f in BUILD for f in ("SSE3", "AVX", "F16C", "FMA", "LLAMAFILE", "REPACK")):
    sys.exit(f"llama.cpp is not the portable build (see the docstring): {BUILD}")

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
# Fixture name: (file in models/variants, llama.cpp context, prompts). Phi-3's variant has an
# original context of 2048: within it llama.cpp rotates with the short factors, past it with
# the long ones. The `-f32` files are the test models themselves in F32.
SMOL = "smollm2-135m-instruct-q4_1"
VARIANTS = {
    "variant-qwen2": ("variant-qwen2", 1024, SMOL),
    "variant-qwen3": ("variant-qwen3", 1024, SMOL),
    "variant-phi3": ("variant-phi3", 1024, SMOL),
    "variant-phi3-long": ("variant-phi3", 4096, SMOL),
    "variant-llama-rope-freqs": ("variant-llama-rope-freqs", 1024, SMOL),
    "variant-granite": ("variant-granite", 1024, SMOL),
    "variant-smollm3": ("variant-smollm3", 1024, SMOL),
    "variant-llama-yarn": ("variant-llama-yarn", 1024, SMOL),
    "smollm2-135m-instruct-f32": ("smollm2-135m-instruct-f32", 1024, SMOL),
    "gemma-3-270m-f32": ("gemma-3-270m-f32", 1024, "gemma-3-270m-q4_k_m"),
    "variant-gemma3-window-rope": ("variant-gemma3-window-rope", 1024, "gemma-3-270m-q4_k_m"),
    "variant-gemma2": ("variant-gemma2", 1024, "gemma-3-270m-q4_k_m"),
}


def logits_cases(llm, name, prompts):
    """Greedy continuations and teacher-forced top logits for `prompts`."""
    cases = []
    for prompt in prompts:
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
        cases.append(
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
        print(name, repr(cases[-1]["text"][:80]))
    return cases


def variants(only=()):
    subprocess.run(
        ["cargo", "test", "--release", "--test", "architectures", "--", "--ignored", "--exact", "write_variants"],
        cwd=ROOT,
        check=True,
    )
    for name, (file, n_ctx, prompts) in VARIANTS.items():
        if only and name not in only:
            continue
        path = os.path.join(MODELS, "variants", file + ".gguf")
        llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=1024, logits_all=True, n_threads=2, verbose=False, seed=0)
        fixture = {"llama_cpp_python": llama_cpp_version, "build": BUILD, "model": file + ".gguf", "n_ctx": n_ctx, "tokenizer": []}
        fixture["logits"] = logits_cases(llm, name, PROMPTS[prompts])
        with open(os.path.join(OUT, name + ".llamacpp.json"), "w") as f:
            json.dump(fixture, f, ensure_ascii=False, indent=1)
        del llm


# Texts where pre-tokenizers split differently: digit runs, contractions in any case, case
# changes inside words, line breaks, slashes, punctuation runs, scripts without spaces.
PRE_TEXTS = COMMON_TEXTS + [
    "I'M sure you'RE right, we'll see; DON'T panic. It's 12345678 vs 3.14159 and 1,000,000.",
    "HelloWorld camelCase XMLHttpRequest iPhone McDonald's ÉCOLE école",
    "path/to/file.txt a/b//c \\server\\share http://example.com/x?y=1&z=2",
    "line one\r\nline two\n\n\nline three\r\r\n\ttabbed\t\tend   ",
    "!!!??? ... --- === *** ((nested)) [[x]] {{y}} <tag attr=\"v\">",
    "日本語のテキストとカタカナ、한국어 문장입니다. ภาษาไทย हिन्दी में ٣٤٥ १२३",
    "<|im_start|>user\nHi<|im_end|> and <|endoftext|> inside text",
]


def pre_tokenizers():
    """llama.cpp's token ids per pre-tokenizer name, or that it refuses the name."""
    subprocess.run(
        ["cargo", "test", "--release", "--test", "architectures", "--", "--ignored", "--exact",
         "write_pre_tokenizer_files"],
        cwd=ROOT,
        check=True,
    )
    out = {"llama_cpp_python": llama_cpp_version, "texts": PRE_TEXTS, "pre": {}}
    folder = os.path.join(MODELS, "variants", "pre")
    for file in sorted(os.listdir(folder)):
        pre = file[: -len(".gguf")]
        try:
            llm = Llama(model_path=os.path.join(folder, file), vocab_only=True, verbose=False)
        except Exception as e:  # llama.cpp refuses names it does not know
            out["pre"][pre] = {"supported": False, "error": str(e)}
            print(pre, "refused")
            continue
        cases = []
        for text in PRE_TEXTS:
            cases.append(
                {
                    "special": llm.tokenize(text.encode("utf-8"), add_bos=True, special=True),
                    "plain": llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
                }
            )
        out["pre"][pre] = {"supported": True, "cases": cases}
        print(pre, "ok")
        del llm
    with open(os.path.join(OUT, "pre-tokenizers.llamacpp.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["--variants"]:
        variants()
        return pre_tokenizers()
    if sys.argv[1:2] == ["--variants"]:  # only the named fixtures, e.g. variant-gemma2
        return variants(sys.argv[2:])
    if sys.argv[1:] == ["--pre-tokenizers"]:
        return pre_tokenizers()
    names = sys.argv[1:] or list(PROMPTS)
    for name in names:
        path = os.path.join(MODELS, name + ".gguf")
        llm = Llama(model_path=path, n_ctx=1024, n_batch=1024, logits_all=True, n_threads=2, verbose=False, seed=0)
        fixture = {"llama_cpp_python": llama_cpp_version, "build": BUILD, "model": name + ".gguf", "tokenizer": [], "logits": []}
        for text in COMMON_TEXTS + SPECIAL_TEXTS[name]:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            fixture["tokenizer"].append({"text": text, "add_special": True, "parse_special": True, "ids": ids})
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            fixture["tokenizer"].append({"text": text, "add_special": False, "parse_special": False, "ids": ids})
        fixture["logits"] = logits_cases(llm, name, PROMPTS[name])
        with open(os.path.join(OUT, name + ".llamacpp.json"), "w") as f:
            json.dump(fixture, f, ensure_ascii=False, indent=1)
        del llm


if __name__ == "__main__":
    main()
