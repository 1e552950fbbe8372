//! Keys and values of every position seen so far, per layer, plus the tokens they came from
//! (so that a new request can reuse the longest common prefix). Where the keys and values
//! live (CPU vectors, GPU buffers) is the backend's business.

use crate::backend::cpu::Cpu;
use crate::backend::Backend;

pub struct KvCache<B: Backend = Cpu> {
    pub(crate) layers: Vec<B::Kv>,
    pub(crate) kv_width: usize,
    tokens: Vec<u32>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(backend: &B, n_layer: usize, kv_width: usize) -> Self {
        KvCache {
            layers: (0..n_layer).map(|_| backend.new_kv()).collect(),
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
    pub fn truncate(&mut self, backend: &B, n: usize) {
        if n >= self.tokens.len() {
            return;
        }
        self.rollback_layers(backend, n);
    }

    /// Cuts every layer back to `n` positions, also when a failed step left them longer
    /// than the token list.
    pub(crate) fn rollback_layers(&mut self, backend: &B, n: usize) {
        self.tokens.truncate(n);
        for kv in &mut self.layers {
            backend.truncate_kv(kv, n, self.kv_width);
        }
    }

    pub fn clear(&mut self, backend: &B) {
        self.truncate(backend, 0);
    }

    /// Length of the common prefix between the cache and `ids`.
    pub fn common_prefix(&self, ids: &[u32]) -> usize {
        self.tokens.iter().zip(ids).take_while(|(a, b)| a == b).count()
    }

    pub fn bytes(&self, backend: &B) -> usize {
        self.layers.iter().map(|kv| backend.kv_bytes(kv)).sum()
    }
}
