//! The operations the decoder is written against. The CPU implementation runs them at once
//! on `Vec<f32>`s; the GPU one records them into a command buffer and only the logits come
//! back. A faster kernel or another backend replaces an operation here, never the model code.

pub mod cpu;
pub mod gpu;
pub mod kernels;
pub mod llama_cpp;
pub mod pool;

use crate::error::Result;
use crate::model::config::Activation;
use candle_core::quantized::QTensor;
use std::sync::Arc;

pub use crate::gguf::Streamed;

pub use cpu::{AttentionShape, RopeStyle, Rotation};

/// One implementation of the decoder's operations. Activations are `rows × width` row-major;
/// the decoder passes the row count where a backend cannot know it from the buffer alone.
pub trait Backend {
    /// Activations of some rows.
    type Act;
    /// A weight matrix `out × in`, kept in its GGUF block type.
    type Matrix;
    /// A weight vector (norm weights), f32.
    type Vector;
    /// The token embedding table (rows looked up, never expanded).
    type Table;
    /// One layer's cached keys and values.
    type Kv;

    fn matrix(&self, w: Arc<QTensor>, bias: Option<Vec<f32>>) -> Result<Self::Matrix>;
    fn vector(&self, v: Vec<f32>) -> Result<Self::Vector>;
    fn table(&self, t: Arc<QTensor>) -> Result<Self::Table>;
    /// A table whose rows the loader packed for the CPU kernels (see `kernels::packed`).
    fn packed_table(&self, _t: Arc<QTensor>) -> Result<Self::Table> {
        Err(crate::error::Error::InvalidRequest(
            "this backend cannot read a table packed for the CPU".into(),
        ))
    }
    /// The embedding table used as the output projection (tied weights: one copy).
    fn tied_output(&self, t: &Self::Table) -> Result<Self::Matrix>;
    /// A matrix the backend took while the file was still streaming in (the GPU uploads
    /// each tensor as it completes), with `bias` attached and its `[out, in]` dims.
    /// `streamed` is what the load's sink made ([`crate::gguf::Gguf::streamed`]).
    fn preloaded(
        &self,
        _streamed: &mut Streamed,
        _name: &str,
        _bias: Option<Vec<f32>>,
    ) -> Result<Option<(Self::Matrix, [usize; 2])>> {
        Ok(None)
    }
    /// The embedding table, if it was taken while streaming.
    fn preloaded_table(&self, _streamed: &mut Streamed, _name: &str) -> Result<Option<(Self::Table, [usize; 2])>> {
        Ok(None)
    }
    fn new_kv(&self) -> Self::Kv;
    /// Keeps the first `n` positions of a layer's cache.
    fn truncate_kv(&self, kv: &mut Self::Kv, n: usize, kv_width: usize);
    fn kv_bytes(&self, kv: &Self::Kv) -> usize;

    /// The embedding rows of `ids`, times `scale` when given.
    fn embed(&self, t: &Self::Table, ids: &[u32], scale: Option<f32>) -> Result<Self::Act>;
    /// A copy of `x` with every `w`-wide segment RMS-normalised and weighted by `w`.
    fn rms_norm(&self, x: &Self::Act, w: &Self::Vector, eps: f32) -> Result<Self::Act>;
    fn rms_norm_in_place(&self, x: &mut Self::Act, w: &Self::Vector, eps: f32) -> Result<()>;
    fn linear(&self, w: &Self::Matrix, x: &Self::Act, rows: usize) -> Result<Self::Act>;
    /// Splits every row of `x` into column ranges of the given widths.
    fn split(&self, x: &Self::Act, rows: usize, widths: [usize; 3]) -> Result<[Self::Act; 3]>;
    #[allow(clippy::too_many_arguments)]
    fn rope(
        &self,
        x: &mut Self::Act,
        rows: usize,
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        rot: &Rotation,
        style: RopeStyle,
    ) -> Result<()>;
    /// Appends `k` and `v` (rows at `pos0..`) to the layer's cache and attends `q` over it.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        kv: &mut Self::Kv,
        pos0: usize,
        rows: usize,
        shape: &AttentionShape,
    ) -> Result<Self::Act>;
    fn add(&self, h: &mut Self::Act, a: &Self::Act) -> Result<()>;
    /// `act(g) * u`, element-wise.
    fn gate(&self, g: Self::Act, u: &Self::Act, act: Activation) -> Result<Self::Act>;
    /// Rows of `[gate | up]` (width `2 n_ff`) to rows of `act(gate) * up`.
    fn gate_fused(&self, y: &Self::Act, rows: usize, n_ff: usize, act: Activation) -> Result<Self::Act>;
    /// The last `keep` of `rows` rows of width `width`.
    fn last_rows(&self, x: &Self::Act, rows: usize, keep: usize, width: usize) -> Result<Self::Act>;
    fn softcap(&self, x: &mut Self::Act, cap: f32) -> Result<()>;
    /// `x *= s`, element-wise (Granite's residual and logit scales).
    fn scale(&self, x: &mut Self::Act, s: f32) -> Result<()>;
    /// Brings activations back to the CPU and ends the pass: the GPU backend waits for the
    /// device here and frees every other activation the pass made.
    fn read(&self, x: Self::Act) -> Result<Vec<f32>>;
    /// [`Backend::read`] for a thread that must not block: the browser's GPU answers from its
    /// event loop, so there the read is awaited. The CPU's activations are already here.
    fn read_awaited(&self, x: Self::Act) -> impl std::future::Future<Output = Result<Vec<f32>>> {
        std::future::ready(self.read(x))
    }
}
