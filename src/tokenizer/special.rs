//! Splitting raw text around special tokens before the tokenizer model sees it.

use super::vocab::{TokenType, Vocab};

#[derive(Debug, Clone, PartialEq)]
pub enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// Mirrors llama.cpp's partitioning: special tokens are tried longest first, each one
/// splitting every text fragment where it occurs. Control and unknown tokens are only
/// recognised when `parse_special` is set; user-defined tokens always are.
pub fn partition<'a>(vocab: &Vocab, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
    if text.is_empty() {
        return vec![];
    }
    let mut frags = vec![Fragment::Text(text)];
    for &id in &vocab.specials {
        let ty = vocab.types[id as usize];
        if !parse_special && ty != TokenType::UserDefined {
            continue;
        }
        let needle = vocab.tokens[id as usize].as_str();
        if !frags
            .iter()
            .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
        {
            continue;
        }
        let mut out = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            match f {
                Fragment::Text(t) => {
                    let mut rest = t;
                    while let Some(at) = rest.find(needle) {
                        if at > 0 {
                            out.push(Fragment::Text(&rest[..at]));
                        }
                        out.push(Fragment::Token(id));
                        rest = &rest[at + needle.len()..];
                    }
                    if !rest.is_empty() {
                        out.push(Fragment::Text(rest));
                    }
                }
                tok => out.push(tok),
            }
        }
        frags = out;
    }
    frags
}
