//! A Hugging Face tokenizer.json loads through the same Tokenizer type.

mod common;
use candlelit::tokenizer::Tokenizer;

#[test]
fn minilm_wordpiece_tokenizer_json() {
    let bytes = std::fs::read(common::models_dir().join("minilm/tokenizer.json")).expect("run scripts/fetch_models.py");
    let tok = Tokenizer::from_json(&bytes).unwrap();
    // BERT uncased: [CLS]=101, hello=7592, world=2088, [SEP]=102.
    assert_eq!(
        tok.encode("Hello world", true, true).unwrap(),
        vec![101, 7592, 2088, 102]
    );
    assert_eq!(tok.encode("Hello world", false, true).unwrap(), vec![7592, 2088]);
    assert_eq!(tok.vocab.len(), 30522);
    assert_eq!(tok.token_text(7592), Some("hello"));
    assert!(Tokenizer::from_json(b"{ not json").is_err());
}
