//! Byte-level BPE splits text before merging by a rule each model family names in
//! `tokenizer.ggml.pre`. SmolLM2's vocabulary under every name llama.cpp knows must give
//! llama.cpp's ids (scripts/make_fixtures.py --pre-tokenizers), and a name it refuses, an
//! error rather than a guess. Without `add_bos_token` in the file, the family's default
//! decides whether BOS comes first (Llama 3's and Tekken's add it).

mod common;
use candlelit::tokenizer::Tokenizer;
use common::variants::{tokenizer_source, with_pre_tokenizer};
use common::*;

/// Names llama.cpp splits with hand-written code or for models far too large for a page
/// (Kimi K2, AFMoE, DeepSeek LLM 67B, Chameleon's image tokens): refused by name.
const REFUSED: &[&str] = &["kimi-k2", "afmoe", "deepseek-llm", "chameleon"];

#[test]
fn every_pre_tokenizer_splits_as_llama_cpp_does() {
    let p = root().join("tests/fixtures/pre-tokenizers.llamacpp.json");
    let fx: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    let texts: Vec<&str> = fx["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut failures = vec![];
    for (pre, want) in fx["pre"].as_object().unwrap() {
        let bytes = with_pre_tokenizer(&model_path(tokenizer_source(pre)), pre);
        let gguf = load_bytes(&bytes);
        let tok = Tokenizer::from_gguf(&gguf.metadata);
        if !want["supported"].as_bool().unwrap() || REFUSED.contains(&pre.as_str()) {
            if let Err(e) = &tok {
                assert!(e.to_string().contains(&format!("`{pre}`")), "{pre}: {e}");
            } else {
                failures.push(format!("{pre}: refused by llama.cpp or by us, yet accepted"));
            }
            continue;
        }
        let tok = match tok {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{pre}: {e}"));
                continue;
            }
        };
        for (text, case) in texts.iter().zip(want["cases"].as_array().unwrap()) {
            for (kind, special) in [("special", true), ("plain", false)] {
                let got = tok.encode(text, special, special).unwrap();
                let expected = ids(&case[kind]);
                if got != expected {
                    failures.push(format!("{pre} ({kind}) {text:?}:\n  got  {got:?}\n  want {expected:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
