//! Constrained decoding: the next token may only be one that keeps the output inside a
//! JSON Schema, a regular expression, a fixed set of choices or a Lark grammar.
//!
//! llguidance does the parsing (an Earley parser over a lexer, with a token trie to turn
//! parser states into token masks); this module adapts our vocabulary to its token trie
//! and exposes a small step API to the engine: mask the logits, then commit the token.

use crate::error::{Error, Result};
use crate::tokenizer::{TokenType, Tokenizer};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// What the output must match. Serialised as `{"type": "json_schema", "schema": {...}}`,
/// `{"type": "regex", "pattern": "..."}`, `{"type": "choices", "choices": [...]}`,
/// `{"type": "json"}` (any JSON value) or `{"type": "lark", "grammar": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Constraint {
    JsonSchema { schema: Value },
    Json,
    Regex { pattern: String },
    Choices { choices: Vec<String> },
    Lark { grammar: String },
}

impl Constraint {
    fn grammar(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Constraint::JsonSchema { schema } => TopLevelGrammar::from_json_schema(with_layout(schema.clone())?),
            Constraint::Json => TopLevelGrammar::from_json_schema(with_layout(serde_json::json!({}))?),
            Constraint::Regex { pattern } => TopLevelGrammar::from_regex(pattern),
            Constraint::Choices { choices } => {
                if choices.is_empty() {
                    return Err(Error::Constraint("`choices` is empty".into()));
                }
                let alternatives: Vec<String> = choices.iter().map(|c| regex_syntax::escape(c)).collect();
                TopLevelGrammar::from_regex(&alternatives.join("|"))
            }
            Constraint::Lark { grammar } => TopLevelGrammar::from_lark(grammar.clone()),
        })
    }
}

/// Fixed JSON layout (`{"a": 1, "b": [2, 3]}`) unless the schema sets its own
/// `x-guidance` options: flexible whitespace lets a small model pad with newlines and
/// spaces until it runs out of tokens; the separators are the ones models saw most.
fn with_layout(mut schema: Value) -> Result<Value> {
    match &mut schema {
        Value::Object(obj) => {
            obj.entry("x-guidance").or_insert_with(
                || serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
            );
            Ok(schema)
        }
        Value::Bool(true) => with_layout(serde_json::json!({})),
        _ => Err(Error::Constraint("a JSON Schema must be an object (or `true`)".into())),
    }
}

/// The vocabulary indexed for the grammar engine: built once per model (a trie over every
/// token's bytes), shared by all constrained requests.
pub struct GrammarIndex {
    factory: Arc<ParserFactory>,
    /// Logit positions the trie knows (the model may have padding rows beyond the vocabulary).
    vocab_size: usize,
    eos: u32,
    end_of_generation: Vec<u32>,
}

impl GrammarIndex {
    pub fn new(tok: &Tokenizer, model_vocab: usize) -> Result<Self> {
        let v = &tok.vocab;
        let n = model_vocab.max(v.tokens.len());
        let mut words = Vec::with_capacity(n);
        let mut bytes = Vec::new();
        for id in 0..n as u32 {
            bytes.clear();
            // Control tokens get the trie's special marker, so no grammar can spell them as text.
            let special = match v.types.get(id as usize) {
                None => true,
                Some(TokenType::Control | TokenType::Unknown | TokenType::Unused) => true,
                Some(TokenType::UserDefined) => {
                    let t = v.tokens[id as usize].as_str();
                    t.starts_with('<') && t.ends_with('>') && t.len() > 2
                }
                _ => false,
            };
            if special {
                bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
                match v.tokens.get(id as usize) {
                    Some(t) => bytes.extend_from_slice(t.as_bytes()),
                    None => bytes.extend_from_slice(format!("<[pad {id}]>").as_bytes()),
                }
            } else {
                tok.token_bytes(id, false, &mut bytes);
            }
            words.push(bytes.clone());
        }
        let mut end_of_generation: Vec<u32> = v.end_of_generation.iter().copied().collect();
        end_of_generation.sort_unstable();
        let eos = v
            .eos
            .or_else(|| end_of_generation.first().copied())
            .ok_or_else(|| Error::Constraint("the model names no end-of-generation token".into()))?;
        let info = TokRxInfo::new(n as u32, eos);
        let trie = TokTrie::from(&info, &words);
        // Greedy tokenization over the trie is enough: we never ask for forced tokens.
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::Constraint(e.to_string()))?;
        factory.quiet();
        Ok(GrammarIndex {
            factory: Arc::new(factory),
            vocab_size: n,
            eos,
            end_of_generation,
        })
    }

    pub fn guide(&self, c: &Constraint) -> Result<Guide> {
        let parser = self
            .factory
            .create_parser(c.grammar()?)
            .map_err(|e| Error::Constraint(format!("the constraint could not be compiled: {e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::Constraint(e));
        }
        Ok(Guide {
            matcher,
            next_mask: None,
            vocab_size: self.vocab_size,
            eos: self.eos,
            end_of_generation: self.end_of_generation.clone(),
        })
    }
}

/// One request's position in its grammar.
pub struct Guide {
    matcher: Matcher,
    /// The mask for the next token when [`Guide::is_finished`] already computed it.
    next_mask: Option<SimpleVob>,
    vocab_size: usize,
    eos: u32,
    end_of_generation: Vec<u32>,
}

impl Guide {
    /// Sets every token the grammar forbids next to −∞. End-of-generation tokens are
    /// allowed exactly when the output so far is complete.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.mask()?;
        let eos_ok = mask.is_allowed(self.eos);
        let mut any = false;
        for (id, l) in logits.iter_mut().enumerate() {
            let allowed = id < self.vocab_size && mask.is_allowed(id as u32);
            if !allowed {
                *l = f32::NEG_INFINITY;
            } else if l.is_finite() {
                any = true;
            }
        }
        for &t in &self.end_of_generation {
            if let Some(l) = logits.get_mut(t as usize) {
                if !eos_ok {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if !any && !eos_ok {
            return Err(Error::Constraint("no token can continue the constrained output".into()));
        }
        Ok(())
    }

    fn mask(&mut self) -> Result<SimpleVob> {
        if let Some(m) = self.next_mask.take() {
            return Ok(m);
        }
        self.matcher
            .compute_mask()
            .map_err(|e| Error::Constraint(e.to_string()))
    }

    /// Advances the grammar over a generated token.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        self.next_mask = None;
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::Constraint(format!("token {token} broke the constraint: {e}")))
    }

    /// True once nothing but end-of-generation may follow (the output is complete).
    pub fn is_finished(&mut self) -> bool {
        if self.matcher.is_stopped() {
            return true;
        }
        // Complete and nothing else allowed: e.g. a closed JSON object.
        if !self.is_accepting() {
            return false;
        }
        let Ok(mask) = self.mask() else {
            return false;
        };
        let mut others = false;
        mask.iter_set_entries(|i| others |= i as u32 != self.eos);
        self.next_mask = Some(mask);
        !others
    }

    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}
