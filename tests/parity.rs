//! Parity with llama.cpp on the real test models: token ids and teacher-forced logits.
//! Fixtures come from scripts/make_fixtures.py (llama-cpp-python).

mod common;
use candlelit::gguf::Loader;
use candlelit::model::Decoder;
use candlelit::tokenizer::Tokenizer;
use common::reference::check_logits;
use common::*;

fn tokenizer_parity(name: &str) {
    let gguf = Loader::load_file(model_path(name)).unwrap();
    let tok = Tokenizer::from_gguf(&gguf.metadata).unwrap();
    let fx = fixture(name);
    let mut failures = vec![];
    for case in fx["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = tok
            .encode(
                text,
                case["add_special"].as_bool().unwrap(),
                case["parse_special"].as_bool().unwrap(),
            )
            .unwrap();
        if got != want {
            failures.push(format!(
                "{text:?} (special={}):\n  got  {got:?}\n  want {want:?}",
                case["parse_special"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} tokenizer mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn logits_parity(name: &str) {
    let mut gguf = Loader::load_file(model_path(name)).unwrap();
    let model = Decoder::from_gguf(&mut gguf).unwrap();
    let (rate, _) = check_logits(name, &model, &fixture(name));
    assert!(rate >= 0.95, "{name}: aggregate agreement {rate:.3}");
}

#[test]
fn smollm2_tokenizer_matches_llama_cpp() {
    tokenizer_parity(SMOLLM2);
}

#[test]
fn gemma3_tokenizer_matches_llama_cpp() {
    tokenizer_parity(GEMMA3);
}

#[test]
fn smollm2_logits_match_llama_cpp() {
    logits_parity(SMOLLM2);
}

#[test]
fn gemma3_logits_match_llama_cpp() {
    logits_parity(GEMMA3);
}
