//! The families besides SmolLM2's and Gemma 3's, against llama.cpp: Qwen 2 (Q/K/V biases),
//! Qwen 3 (QK-norm), Phi-3 (fused QKV and gate-up, untied output, long-context RoPE factors
//! and attention factor), Llama 3's RoPE frequency factors, Gemma 2 (soft-capping; derived
//! from Gemma 3). No such model is reachable from
//! these machines, so the files are derived from SmolLM2's weights (tests/common/variants.rs)
//! and scripts/make_fixtures.py runs the same files through llama.cpp.

mod common;
use candlelit::engine::Engine;
use candlelit::gguf::Gguf;
use candlelit::model::Decoder;
use common::reference::check_logits;
use common::variants::{derive, tokenizer_source, with_pre_tokenizer, Derive, PRE_TOKENIZERS, VARIANTS};
use common::*;

/// The variant `name` in F32: Gemma 3's own for `gemma3-…` names, else SmolLM2's.
fn variant(name: &str) -> Gguf {
    let source = if name.starts_with("gemma") { GEMMA3 } else { SMOLLM2 };
    let bytes = derive(&model_path(source), name, F32);
    load_bytes(&bytes)
}

/// The families are compared in F32 (see [`Derive::f32`]): our quantized kernels are
/// checked against llama.cpp on the real files (tests/parity.rs) and block by block
/// (tests/kernels.rs); here what is checked is each family's arithmetic.
const F32: Derive = Derive {
    layers: None,
    f32: true,
};

/// The fixtures' llama.cpp context; Phi-3's long factors need more than the variant's
/// original 2048.
const FIXTURE_CONTEXT: usize = 1024;

fn parity(name: &str, fixture_name: &str, context: usize) -> Engine {
    let engine = Engine::new(variant(name), Some(context)).unwrap();
    let arch = name.split('-').next().unwrap_or(name);
    assert_eq!(engine.model.cfg.arch, arch);
    check_logits(fixture_name, &engine.model, &fixture(fixture_name)).assert_close(fixture_name);
    engine
}

#[test]
fn qwen2_matches_llama_cpp() {
    parity("qwen2", "variant-qwen2", FIXTURE_CONTEXT);
}

#[test]
fn qwen3_matches_llama_cpp() {
    parity("qwen3", "variant-qwen3", FIXTURE_CONTEXT);
}

/// SmolLM3: Llama's layers with every fourth one left without RoPE (NoPE), which llama.cpp
/// fixes by the architecture's name.
#[test]
fn smollm3_matches_llama_cpp() {
    let engine = parity("smollm3", "variant-smollm3", FIXTURE_CONTEXT);
    assert_eq!(
        &engine.model.cfg.layer_has_rope[..8],
        &[true, true, true, false, true, true, true, false]
    );
}

/// YaRN-stretched RoPE (Qwen3's 128K files, SmolLM3's long context), on Llama.
#[test]
fn yarn_matches_llama_cpp() {
    let engine = parity("llama-yarn", "variant-llama-yarn", FIXTURE_CONTEXT);
    assert!(engine.model.cfg.yarn.is_some());
}

#[test]
fn phi3_matches_llama_cpp_within_and_past_its_original_context() {
    parity("phi3", "variant-phi3", FIXTURE_CONTEXT);
    parity("phi3", "variant-phi3-long", 4096);
}

/// Gemma 3 with a 32-token sliding window (the real one, 512, is longer than the fixtures'
/// sequences) and linear RoPE scaling on its global layers, as Gemma 3 4B has.
#[test]
fn gemma3_sliding_window_and_rope_scaling_match_llama_cpp() {
    let engine = parity("gemma3-window-rope", "variant-gemma3-window-rope", FIXTURE_CONTEXT);
    assert_eq!(engine.model.cfg.sliding_window, Some(32));
}

/// Gemma 2 (derived from Gemma 3's weights): soft-capped attention scores and output
/// logits, alternating local and global layers with one RoPE base, no QK-norm. Held to a
/// tenth of the usual logit bound: without the attention's soft-capping the logits still
/// differ by only 0.04 on average (with it, 0.0007), and without the window by 0.17.
#[test]
fn gemma2_matches_llama_cpp() {
    let engine = parity("gemma2", "variant-gemma2", FIXTURE_CONTEXT);
    let cfg = &engine.model.cfg;
    assert_eq!((cfg.attn_softcap, cfg.final_softcap), (Some(50.0), Some(30.0)));
    assert_eq!(&cfg.layer_is_local[..4], &[true, false, true, false]);
    let a = check_logits("variant-gemma2", &engine.model, &fixture("variant-gemma2"));
    assert!(a.mean_diff < 0.005, "variant-gemma2: mean |logit diff| {}", a.mean_diff);
}

/// Granite: Llama with its embeddings, attention scores, branch outputs and logits scaled
/// (each scale left out makes this fail: tried).
#[test]
fn granite_matches_llama_cpp() {
    let engine = parity("granite", "variant-granite", FIXTURE_CONTEXT);
    let cfg = &engine.model.cfg;
    assert_eq!((cfg.residual_scale, cfg.logit_scale), (Some(0.22), Some(8.0)));
}

#[test]
fn llama_rope_frequency_factors_match_llama_cpp() {
    parity("llama-rope-freqs", "variant-llama-rope-freqs", FIXTURE_CONTEXT);
}

/// The Qwen and Phi files store Q and K in their original row order (RoPE on halves), Phi-3
/// fuses matrices and unties the output: with their extras taken out (biases, QK-norms, RoPE
/// factors) each must be SmolLM2 itself, to the bit over two layers (over all 30, activation
/// quantization turns the attention's reordered sums into visible differences).
#[test]
fn variants_without_their_extras_are_smollm2() {
    let src = model_path(SMOLLM2);
    let load = |name: &str| {
        let bytes = derive(
            &src,
            name,
            Derive {
                layers: Some(2),
                f32: false,
            },
        );
        let mut gguf = load_bytes(&bytes);
        let extra = |n: &str| {
            n.ends_with(".bias")
                || n.contains("_norm.weight") && n.contains("attn_") && !n.contains("attn_norm")
                || n.starts_with("rope_")
        };
        let names: Vec<String> = gguf.infos.iter().map(|t| t.name.clone()).filter(|n| extra(n)).collect();
        assert_eq!(names.is_empty(), name == "same", "{name}: extras {names:?}");
        for n in names {
            gguf.take(&n).unwrap();
            gguf.infos.retain(|t| t.name != n);
        }
        gguf.metadata.0.remove("phi3.rope.scaling.attn_factor");
        Decoder::from_gguf(&mut gguf).unwrap()
    };
    let tokens = [1u32, 504, 3458, 282, 4649, 314, 2];
    let run = |m: &Decoder| m.forward(&tokens, &mut m.new_cache(), true).unwrap();
    let want = run(&load("same"));
    for name in ["qwen2", "qwen3", "phi3"] {
        assert!(run(&load(name)) == want, "{name} without its extras is not SmolLM2");
    }
}

/// Writes the variants to models/variants/ for scripts/make_fixtures.py.
#[test]
#[ignore]
fn write_variants() {
    let dir = root().join("models/variants");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = VARIANTS
        .iter()
        .map(|name| (format!("variant-{name}"), derive(&model_path(SMOLLM2), name, F32)))
        .collect();
    // The two test models themselves in F32, for tests/parity.rs.
    files.push((
        "smollm2-135m-instruct-f32".into(),
        derive(&model_path(SMOLLM2), "same", F32),
    ));
    files.push(("gemma-3-270m-f32".into(), derive(&model_path(GEMMA3), "same", F32)));
    files.push((
        "variant-gemma3-window-rope".into(),
        derive(&model_path(GEMMA3), "gemma3-window-rope", F32),
    ));
    files.push(("variant-gemma2".into(), derive(&model_path(GEMMA3), "gemma2", F32)));
    for (name, bytes) in files {
        let path = dir.join(format!("{name}.gguf"));
        std::fs::write(&path, bytes).unwrap();
        println!("wrote {}", path.display());
    }
}

/// Writes one tokenizer-only file per pre-tokenizer name to models/variants/pre/ for
/// scripts/make_fixtures.py.
#[test]
#[ignore]
fn write_pre_tokenizer_files() {
    let dir = root().join("models/variants/pre");
    std::fs::create_dir_all(&dir).unwrap();
    for pre in PRE_TOKENIZERS {
        std::fs::write(
            dir.join(format!("{pre}.gguf")),
            with_pre_tokenizer(&model_path(tokenizer_source(pre)), pre),
        )
        .unwrap();
    }
}
