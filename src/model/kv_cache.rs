//! Keys and values of every position seen so far, per layer, plus the tokens they came from
//! (so that a new request can reuse the longest common prefix).

use half::f16;

#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per layer: keys and values as `[position][kv head][head_dim]`, appended in place
    /// (no concatenation of the whole history per token). Stored as f16 like llama.cpp's
    /// default cache: half the memory, and the same rounding as the reference we test against.
    pub(crate) layers: Vec<(Vec<f16>, Vec<f16>)>,
    pub(crate) kv_width: usize,
    tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(n_layer: usize, kv_width: usize) -> Self {
        KvCache {
            layers: vec![(Vec::new(), Vec::new()); n_layer],
            kv_width,
            tokens: Vec::new(),
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub(crate) fn push_tokens(&mut self, ids: &[u32]) {
        self.tokens.extend_from_slice(ids);
    }

    /// Forgets every position from `n` on.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.tokens.len() {
            return;
        }
        self.tokens.truncate(n);
        for (k, v) in &mut self.layers {
            k.truncate(n * self.kv_width);
            v.truncate(n * self.kv_width);
        }
    }

    pub(crate) fn rollback_layers(&mut self, n: usize) {
        self.tokens.truncate(n);
        for (k, v) in &mut self.layers {
            k.truncate(n * self.kv_width);
            v.truncate(n * self.kv_width);
        }
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Length of the common prefix between the cache and `ids`.
    pub fn common_prefix(&self, ids: &[u32]) -> usize {
        self.tokens.iter().zip(ids).take_while(|(a, b)| a == b).count()
    }

    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|(k, v)| (k.capacity() + v.capacity()) * 2).sum()
    }
}
