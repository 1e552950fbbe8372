//! Byte-level BPE (GPT-2 style: SmolLM2, Qwen, Llama 3) built from GGUF metadata.
//!
//! Our own rather than the `tokenizers` crate: token ids must match llama.cpp exactly,
//! including its per-model pre-tokenizer regexes keyed by `tokenizer.ggml.pre`, and the
//! vocabulary already sits in the GGUF file, so no tokenizer.json has to be synthesised.

use super::vocab::Vocab;
use crate::error::{Error, Result};
use fancy_regex::Regex;
use std::collections::HashMap;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regexes llama.cpp applies, in order, for a `tokenizer.ggml.pre` value.
fn pre_tokenizer_regexes(pre: &str) -> Vec<&'static str> {
    match pre {
        "llama3" | "llama-bpe" | "llama-v3" | "falcon3" | "pixtral" | "dbrx" | "smaug-bpe" => {
            vec![LLAMA3]
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => vec![QWEN2],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", GPT2]
        }
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gpt3-finnish" | "jina-v1-en" | "jina-v2-es" | "jina-v2-de" => {
            vec![GPT2]
        }
        _ => vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"[0-9][0-9][0-9]"],
    }
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\0')
        };
    }
    table
}

pub struct Bpe {
    regexes: Vec<Regex>,
    /// (left id, right id) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
}

impl Bpe {
    pub fn new(vocab: &Vocab, merges: &[String], pre: &str) -> Result<Self> {
        let regexes = pre_tokenizer_regexes(pre)
            .into_iter()
            .map(|r| Regex::new(r).map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let Some((l, r)) = m.split_once(' ') else {
                return Err(Error::Tokenizer(format!("merge `{m}` has no space")));
            };
            // A merge whose parts or result are not tokens can never fire.
            if let (Some(li), Some(ri), Some(mi)) = (vocab.id(l), vocab.id(r), vocab.id(&format!("{l}{r}"))) {
                table.entry((li, ri)).or_insert((rank as u32, mi));
            }
        }
        let byte_to_char = byte_to_char_table();
        let char_to_byte = byte_to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Ok(Bpe {
            regexes,
            merges: table,
            byte_to_char,
            char_to_byte,
        })
    }

    fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for re in &self.regexes {
            let mut out = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in re.find_iter(piece).flatten() {
                    if m.start() > last {
                        out.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        out.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    out.push(&piece[last..]);
                }
            }
            pieces = out;
        }
        pieces
    }

    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        for word in self.split(text) {
            let mapped: String = word.bytes().map(|b| self.byte_to_char[b as usize]).collect();
            if let Some(id) = vocab.id(&mapped) {
                // Shortcut for whole-word tokens: merges would rebuild them anyway.
                out.push(id);
                continue;
            }
            self.merge_word(vocab, &mapped, out);
        }
    }

    fn merge_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        // Symbols: (byte range in `word`, token id if the text is a token).
        let mut syms: Vec<(usize, usize, Option<u32>)> = word
            .char_indices()
            .map(|(i, c)| (i, i + c.len_utf8(), vocab.id(&word[i..i + c.len_utf8()])))
            .collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let (Some(l), Some(r)) = (syms[i].2, syms[i + 1].2) {
                    if let Some(&(rank, merged)) = self.merges.get(&(l, r)) {
                        if best.is_none_or(|(b, _, _)| rank < b) {
                            best = Some((rank, i, merged));
                        }
                    }
                }
            }
            let Some((_, i, merged)) = best else { break };
            syms[i] = (syms[i].0, syms[i + 1].1, Some(merged));
            syms.remove(i + 1);
        }
        for (s, e, id) in syms {
            match id {
                Some(id) => out.push(id),
                // A character that is not a token: fall back to its bytes' characters.
                None => {
                    for c in word[s..e].chars() {
                        if let Some(id) = vocab.id(c.encode_utf8(&mut [0; 4])) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    /// Raw bytes of a normal token's text.
    pub fn token_bytes(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.char_to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
    }
}
