//! Helpers shared by the integration tests: paths of the real test models and fixtures.
#![allow(dead_code)]

pub mod gguf_writer;
pub mod reference;
pub mod variants;

use std::path::PathBuf;

pub const SMOLLM2: &str = "smollm2-135m-instruct-q4_1";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the test models are (`CANDLELIT_MODELS`, else models/).
pub fn models_dir() -> PathBuf {
    std::env::var("CANDLELIT_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("models"))
}

/// A chat template of llama.cpp's collection (scripts/fetch_models.py fetches them).
pub fn template(name: &str) -> String {
    std::fs::read_to_string(models_dir().join("templates").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}; run `python3 scripts/fetch_models.py templates`"))
}

/// Path of a test model; `./build.sh test` fetches them first (scripts/fetch_models.py).
pub fn model_path(name: &str) -> PathBuf {
    let p = models_dir().join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "missing test model {}: run `python3 scripts/fetch_models.py`",
        p.display()
    );
    p
}

/// A model from GGUF bytes in memory (the derived files of [`variants`]).
pub fn load_bytes(bytes: &[u8]) -> candlelit::gguf::Gguf {
    candlelit::gguf::Loader::read_from(bytes, Some(bytes.len() as u64)).expect("load GGUF bytes")
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = root().join("tests/fixtures").join(format!("{name}.llamacpp.json"));
    serde_json::from_slice(&std::fs::read(&p).expect("fixture")).expect("fixture json")
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}
