//! The vocabulary as GGUF metadata describes it: token texts, types, scores and the
//! special ids, shared by every tokenizer model.

use crate::error::{Error, Result};
use crate::gguf::Metadata;
use std::collections::{HashMap, HashSet};

/// Token types, numbered as llama.cpp writes them into `tokenizer.ggml.token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_id(v: u64) -> Self {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

/// Texts that end a turn in the chat templates of common model families; a CONTROL token
/// with one of these texts stops generation even when the metadata names only the EOS.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<|eom_id|>",
];

#[derive(Debug, Clone)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub scores: Vec<f32>,
    pub ids: HashMap<String, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// Ids that end generation (EOS, EOT and the end-of-turn tokens of known templates).
    pub end_of_generation: HashSet<u32>,
    /// Tokens matched in raw text before the model runs (control, user-defined, unknown),
    /// longest text first, as llama.cpp orders them.
    pub specials: Vec<u32>,
}

impl Vocab {
    pub fn new(tokens: Vec<String>, types: Vec<TokenType>, scores: Vec<f32>) -> Result<Self> {
        if tokens.is_empty() || types.len() != tokens.len() || scores.len() != tokens.len() {
            return Err(Error::Tokenizer(format!(
                "vocabulary arrays disagree: {} tokens, {} types, {} scores",
                tokens.len(),
                types.len(),
                scores.len()
            )));
        }
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            // The first occurrence wins, as in llama.cpp.
            ids.entry(t.clone()).or_insert(i as u32);
        }
        let mut specials: Vec<u32> = (0..tokens.len() as u32)
            .filter(|&i| {
                matches!(
                    types[i as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !tokens[i as usize].is_empty()
            })
            .collect();
        specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));
        Ok(Vocab {
            tokens,
            types,
            scores,
            ids,
            bos: None,
            eos: None,
            unk: None,
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            end_of_generation: HashSet::new(),
            specials,
        })
    }

    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let tokens = meta
            .array("tokenizer.ggml.tokens")?
            .ok_or_else(|| Error::Tokenizer("the file has no `tokenizer.ggml.tokens`".into()))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Tokenizer("a token is not a string".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let n = tokens.len();
        let types = match meta.array("tokenizer.ggml.token_type")? {
            Some(a) => a.iter().map(|v| TokenType::from_id(v.as_u64().unwrap_or(1))).collect(),
            None => vec![TokenType::Normal; n],
        };
        let scores = match meta.array("tokenizer.ggml.scores")? {
            Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
            None => vec![0.0; n],
        };
        let mut v = Vocab::new(tokens, types, scores)?;
        let id = |key: &str| -> Result<Option<u32>> {
            match meta.u64(key)? {
                Some(i) if (i as usize) < n => Ok(Some(i as u32)),
                Some(i) => Err(Error::Tokenizer(format!(
                    "`{key}` = {i} is outside the vocabulary of {n}"
                ))),
                None => Ok(None),
            }
        };
        v.bos = id("tokenizer.ggml.bos_token_id")?;
        v.eos = id("tokenizer.ggml.eos_token_id")?;
        v.unk = id("tokenizer.ggml.unknown_token_id")?;
        let model = meta.str("tokenizer.ggml.model")?.unwrap_or("llama");
        // llama.cpp's defaults when a file is silent: SentencePiece models add BOS and a space
        // prefix; of the byte-level ones, Llama 3's and Tekken's families add BOS.
        let spm = model == "llama";
        let bpe_bos = model == "gpt2"
            && super::bpe::pre_tokenizer(meta.str("tokenizer.ggml.pre")?.unwrap_or("default")).is_ok_and(|p| p.add_bos);
        v.add_bos = meta.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(spm || bpe_bos);
        v.add_eos = meta.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        v.add_space_prefix = meta.bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(spm);
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(i) = id(key)? {
                v.end_of_generation.insert(i);
            }
        }
        v.add_end_of_generation_by_text();
        Ok(v)
    }

    pub fn add_end_of_generation_by_text(&mut self) {
        for text in END_OF_GENERATION_TEXTS {
            if let Some(&i) = self.ids.get(*text) {
                if matches!(self.types[i as usize], TokenType::Control | TokenType::UserDefined) {
                    self.end_of_generation.insert(i);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}
