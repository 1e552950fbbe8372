//! Tokenizers built from GGUF metadata (byte-level BPE and SentencePiece-style) or
//! from a Hugging Face `tokenizer.json`, with chat templates and streaming decoding.

mod bpe;
mod pyjinja;
mod special;
mod spm;
mod stream;
mod template;
mod vocab;

pub use special::{partition, Fragment};
pub use stream::Utf8Stream;
pub use template::{ChatTemplate, Fallback, Message, TemplateKwargs};
pub use vocab::{TokenType, Vocab};

use crate::error::{Error, Result};
use crate::gguf::Metadata;

enum Model {
    Bpe(Box<bpe::Bpe>),
    Spm,
    /// A `tokenizer.json` handled by the `tokenizers` crate; `byte_level` says how to
    /// turn its token strings back into bytes.
    Hf {
        tokenizer: Box<tokenizers::Tokenizer>,
        byte_level: bool,
    },
}

pub struct Tokenizer {
    pub vocab: Vocab,
    model: Model,
    byte_decoder: Option<bpe::Bpe>,
}

impl Tokenizer {
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let vocab = Vocab::from_gguf(meta)?;
        let kind = meta.str("tokenizer.ggml.model")?.unwrap_or("llama");
        let model = match kind {
            "gpt2" => {
                let merges = meta
                    .array("tokenizer.ggml.merges")?
                    .ok_or_else(|| Error::Tokenizer("a gpt2 tokenizer needs `tokenizer.ggml.merges`".into()))?
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| Error::Tokenizer("a merge is not a string".into()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let pre = meta.str("tokenizer.ggml.pre")?.unwrap_or("default");
                Model::Bpe(Box::new(bpe::Bpe::new(&vocab, &merges, pre)?))
            }
            "llama" => Model::Spm,
            other => {
                return Err(Error::Tokenizer(format!(
                    "unsupported tokenizer model `{other}` (supported: gpt2, llama)"
                )))
            }
        };
        Ok(Tokenizer {
            vocab,
            model,
            byte_decoder: None,
        })
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let mut tokenizer =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        // Files exported for batch inference pad (and truncate) every input; we want the ids.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let byte_level = json["decoder"]["type"] == "ByteLevel" || json["pre_tokenizer"]["type"] == "ByteLevel";
        let n = tokenizer.get_vocab_size(true);
        let mut tokens = vec![String::new(); n];
        for (t, id) in tokenizer.get_vocab(true) {
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = t;
            }
        }
        let mut types = vec![TokenType::Normal; n];
        for (id, added) in tokenizer.get_added_tokens_decoder() {
            if let Some(slot) = types.get_mut(id as usize) {
                *slot = if added.special {
                    TokenType::Control
                } else {
                    TokenType::UserDefined
                };
            }
        }
        let mut vocab = Vocab::new(tokens, types, vec![0.0; n])?;
        vocab.add_end_of_generation_by_text();
        let byte_decoder = if byte_level {
            Some(bpe::Bpe::new(&vocab, &[], "gpt-2")?)
        } else {
            None
        };
        Ok(Tokenizer {
            vocab,
            model: Model::Hf {
                tokenizer: Box::new(tokenizer),
                byte_level,
            },
            byte_decoder,
        })
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS as the model's metadata asks;
    /// `parse_special` turns control-token texts (like `<|im_start|>`) into their ids.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        if let Model::Hf { tokenizer, .. } = &self.model {
            let enc = tokenizer
                .encode(text, add_special)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            return Ok(enc.get_ids().to_vec());
        }
        let v = &self.vocab;
        let mut out = Vec::new();
        if add_special && v.add_bos {
            out.extend(v.bos);
        }
        let mut prev_special = true;
        for frag in partition(v, text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    match &self.model {
                        Model::Bpe(b) => b.encode(v, t, &mut out),
                        Model::Spm => {
                            let mut s = String::with_capacity(t.len() + 3);
                            if v.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            spm::encode(v, &s.replace(' ', "\u{2581}"), &mut out);
                        }
                        Model::Hf { .. } => unreachable!("handled above"),
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.eos);
        }
        Ok(out)
    }

    /// The bytes a token stands for. Control tokens render as their text only when
    /// `render_special` is set (so `<|im_end|>` never leaks into a reply).
    pub fn token_bytes(&self, id: u32, render_special: bool, out: &mut Vec<u8>) {
        let Some(text) = self.vocab.tokens.get(id as usize) else {
            return;
        };
        match self.vocab.types[id as usize] {
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                if render_special {
                    out.extend_from_slice(text.as_bytes());
                }
            }
            TokenType::UserDefined => out.extend_from_slice(text.as_bytes()),
            TokenType::Byte => out.push(parse_byte_token(text).unwrap_or(b'?')),
            TokenType::Normal => match &self.model {
                Model::Bpe(b) => b.token_bytes(text, out),
                Model::Hf { byte_level: true, .. } => {
                    if let Some(b) = &self.byte_decoder {
                        b.token_bytes(text, out)
                    }
                }
                Model::Spm | Model::Hf { .. } => match parse_byte_token(text) {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(text.replace('\u{2581}', " ").as_bytes()),
                },
            },
        }
    }

    /// Decodes a whole sequence (lossy for invalid UTF-8).
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.token_bytes(id, render_special, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.vocab.end_of_generation.contains(&id)
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    /// The chat template of a GGUF file, or the fallback its special tokens suggest.
    pub fn chat_template(&self, meta: &Metadata) -> Result<ChatTemplate> {
        self.chat_template_from(meta.str("tokenizer.chat_template")?)
    }

    /// A chat template from its source (the fallback where there is none), with this
    /// vocabulary's BOS and EOS texts.
    pub fn chat_template_from(&self, source: Option<&str>) -> Result<ChatTemplate> {
        let fallback = if self.vocab.id("<|im_start|>").is_some() {
            Fallback::ChatMl
        } else if self.vocab.id("<start_of_turn>").is_some() {
            Fallback::Gemma
        } else {
            Fallback::Plain
        };
        let name = |id: Option<u32>| id.and_then(|i| self.token_text(i)).unwrap_or("").to_string();
        ChatTemplate::new(source, fallback, &name(self.vocab.bos), &name(self.vocab.eos))
    }
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}
