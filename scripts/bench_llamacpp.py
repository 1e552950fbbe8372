#!/usr/bin/env python3
"""Native llama.cpp speed on the test models (llama-cpp-python), for ./build.sh bench.

Same shape as `candlelit bench`: a 145-token prompt, 128 greedy tokens, 1 and 2 threads;
prints one JSON object per run. Timings are llama.cpp's own (llama_perf_context).
"""
import json
import os
import sys
import time

from llama_cpp import Llama

PROMPT = "The quick brown fox jumps over the lazy dog while the cat watches from the window. " * 64


def run(path, threads, n_prompt=145, n_gen=128):
    llm = Llama(model_path=path, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = llm.tokenize(PROMPT.encode(), add_bos=True)[:n_prompt]
    t0 = time.perf_counter()
    llm.eval(ids)
    prefill = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(n_gen):
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
        llm.eval([tok])
    decode = time.perf_counter() - t1
    return {
        "engine": "llama.cpp",
        "model": os.path.basename(path),
        "threads": threads,
        "prompt_tokens": len(ids),
        "prefill_tokens_per_s": len(ids) / prefill,
        "decode_tokens_per_s": n_gen / decode,
    }


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else "models"
    for name in ["smollm2-135m-instruct-q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]:
        for threads in (1, 2):
            print(json.dumps(run(os.path.join(models, name), threads)))


if __name__ == "__main__":
    main()
