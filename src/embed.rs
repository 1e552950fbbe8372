//! Sentence embeddings: a BERT encoder (candle-transformers) with mean pooling over the
//! tokens and L2 normalisation, as sentence-transformers runs all-MiniLM-L6-v2.
//!
//! The files are the Hugging Face ones (config.json, model.safetensors, tokenizer.json), so
//! the loader takes their bytes; in the browser they come from the same storage as GGUFs.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

/// all-MiniLM-L6-v2's `max_seq_length` (sentence_bert_config.json); longer input is cut.
pub const DEFAULT_MAX_TOKENS: usize = 256;

pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dims: usize,
    max_tokens: usize,
}

impl Embedder {
    /// `max_tokens` caps the word pieces per text (CLS and SEP included).
    pub fn from_bytes(config: &[u8], weights: Vec<u8>, tokenizer: &[u8], max_tokens: usize) -> Result<Self> {
        let cfg: Config = serde_json::from_slice(config)
            .map_err(|e| Error::Embedding(format!("config.json is not a BERT config: {e}")))?;
        let dims = cfg.hidden_size;
        let mut tokenizer = Tokenizer::from_bytes(tokenizer)
            .map_err(|e| Error::Embedding(format!("tokenizer.json could not be read: {e}")))?;
        let max_tokens = max_tokens.clamp(2, cfg.max_position_embeddings.max(2));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| Error::Embedding(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| Error::Embedding(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &cfg).map_err(|e| Error::Embedding(format!("BERT weights: {e}")))?;
        Ok(Embedder {
            model,
            tokenizer,
            dims,
            max_tokens,
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Word pieces the model sees for `text` (after truncation).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.0.len())
    }

    fn encode(&self, text: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Embedding(format!("tokenize: {e}")))?;
        Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
    }

    /// One unit-length vector per text. Texts run one at a time: without padding every
    /// token counts in the mean, exactly as in a padded batch with its attention mask.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        texts.iter().map(|t| self.embed_one(t)).collect()
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let (ids, types) = self.encode(text)?;
        let n = ids.len();
        let ids = Tensor::from_vec(ids, (1, n), &Device::Cpu)?;
        let types = Tensor::from_vec(types, (1, n), &Device::Cpu)?;
        let hidden = self.model.forward(&ids, &types, None)?; // (1, n, dims)
        let mean = (hidden.sum(1)? / n as f64)?.squeeze(0)?;
        let mut v: Vec<f32> = mean.to_vec1()?;
        normalize(&mut v);
        Ok(v)
    }
}

/// Scales to unit length (a zero vector stays zero), like torch's F.normalize.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// Cosine similarity of two vectors (their dot product when both are unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
