//! Parity with llama.cpp on the real test models: token ids and teacher-forced logits.
//! Fixtures come from scripts/make_fixtures.py (llama-cpp-python).

mod common;
use candlelit::gguf::Loader;
use candlelit::model::Decoder;
use candlelit::tokenizer::Tokenizer;
use common::reference::{check_logits, with_numerics};
use common::variants::{derive, Derive};
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

/// The quantized files with the CPU computing as llama.cpp's portable build does (the
/// fixtures' build, see scripts/make_fixtures.py): the same logits to the fixtures' four
/// decimals, so the teacher-forced argmax agrees everywhere (≥ 99% asserted) and the greedy
/// continuations do not part.
fn logits_parity(name: &str) {
    let mut gguf = Loader::load_file(model_path(name)).unwrap();
    let model = Decoder::from_gguf(&mut gguf).unwrap();
    let a = with_numerics(true, || check_logits(name, &model, &fixture(name)));
    assert!(a.rate >= 0.99, "{name}: aggregate agreement {:.3}", a.rate);
    assert!(
        a.mean_diff < 0.001,
        "{name}: logits differ by {} on average",
        a.mean_diff
    );
    assert_eq!(a.greedy_parted, 0, "{name}: greedy paths parted within 16 tokens");
}

/// The engine's own arithmetic (the browser's and the GPU's) on the same files: its other
/// roundings move the 8-bit activation codes, and near-ties go either way (every
/// disagreement must be one, see `check_logits`), but nothing more.
fn engine_numerics_near_llama_cpp(name: &str) {
    let mut gguf = Loader::load_file(model_path(name)).unwrap();
    let model = Decoder::from_gguf(&mut gguf).unwrap();
    let rate = with_numerics(false, || check_logits(name, &model, &fixture(name))).rate;
    assert!(rate >= 0.95, "{name}: aggregate agreement {rate:.3}");
}

/// The same weights in F32 (converted here; `scripts/make_fixtures.py --variants` has
/// llama.cpp run the same conversion), with the engine's own arithmetic: without activation
/// quantization, whose rounding turns any reordered sum into a visible difference, the
/// arithmetic must agree closely: ≥ 99% argmax and the first 16 greedy tokens identical.
fn f32_parity(name: &str, fixture_name: &str) {
    let how = Derive {
        layers: None,
        f32: true,
    };
    let bytes = derive(&model_path(name), "same", how);
    let mut gguf = load_bytes(&bytes);
    drop(bytes);
    let model = Decoder::from_gguf(&mut gguf).unwrap();
    let a = with_numerics(false, || check_logits(fixture_name, &model, &fixture(fixture_name)));
    a.assert_close(fixture_name);
    assert_eq!(
        a.greedy_parted, 0,
        "{fixture_name}: greedy paths parted within 16 tokens"
    );
    // With llama.cpp's steps (F32 products summed in double, as its `ggml_vec_dot_f32`), the
    // fixtures' logits to their four decimals.
    let a = with_numerics(true, || check_logits(fixture_name, &model, &fixture(fixture_name)));
    assert!(
        a.rate >= 0.99 && a.mean_diff < 0.001 && a.greedy_parted == 0,
        "{fixture_name} with llama.cpp's numerics: agreement {:.3}, mean |logit diff| {}",
        a.rate,
        a.mean_diff
    );
}

#[test]
fn smollm2_in_f32_matches_llama_cpp_closely() {
    f32_parity(SMOLLM2, "smollm2-135m-instruct-f32");
}

#[test]
fn gemma3_in_f32_matches_llama_cpp_closely() {
    f32_parity(GEMMA3, "gemma-3-270m-f32");
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

#[test]
fn smollm2_with_the_engines_numerics_stays_near_llama_cpp() {
    engine_numerics_near_llama_cpp(SMOLLM2);
}

#[test]
fn gemma3_with_the_engines_numerics_stays_near_llama_cpp() {
    engine_numerics_near_llama_cpp(GEMMA3);
}
