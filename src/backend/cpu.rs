//! CPU operations on row-major `f32` activations (`rows × width`).

use super::Backend;
use crate::error::Result;
use crate::model::config::Activation;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;
use std::sync::Arc;

/// A weight matrix `out × in`, kept in its GGUF block type.
#[derive(Clone)]
pub struct Linear {
    w: Store,
    bias: Option<Vec<f32>>,
    pub out_dim: usize,
    pub in_dim: usize,
}

#[derive(Clone)]
enum Store {
    /// As in the file, for our kernels or candle's.
    File(QMatMul),
    /// Rows rearranged for this build's kernels (see `kernels::packed`), same size.
    Packed { dtype: GgmlDType, data: PackedBytes },
}

type KernelBytes<'a> = (GgmlDType, std::borrow::Cow<'a, [u8]>, bool);

#[derive(Clone)]
enum PackedBytes {
    /// A matrix packed when the backend took it.
    Own(Arc<Vec<u8>>),
    /// The embedding table, packed in place by the loader (it doubles as the output).
    Table(Arc<QTensor>),
}

impl PackedBytes {
    fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        Ok(match self {
            PackedBytes::Own(v) => std::borrow::Cow::Borrowed(&v[..]),
            PackedBytes::Table(t) => t.data()?,
        })
    }
}

/// The embedding table, as the file has it or packed by the loader.
#[derive(Clone)]
pub struct Table {
    t: Arc<QTensor>,
    packed: bool,
}

impl Linear {
    pub fn new(w: Arc<QTensor>, bias: Option<Vec<f32>>) -> Result<Self> {
        let (out_dim, in_dim) = w.shape().dims2()?;
        // QMatMul::from_arc would expand F16/BF16 matrices to f32 (twice the memory);
        // keep every block type as it is: candle's kernels multiply them directly.
        Ok(Linear {
            w: Store::File(QMatMul::QTensor(w)),
            bias,
            out_dim,
            in_dim,
        })
    }

    /// Like [`Linear::new`], with the rows packed for this build's kernels where that makes
    /// them faster. The tensor's bytes move into the packed copy one matrix at a time (the
    /// tensor is dropped), so loading stays near the file's size.
    pub fn packed(w: Arc<QTensor>, bias: Option<Vec<f32>>) -> Result<Self> {
        let (out_dim, in_dim) = w.shape().dims2()?;
        let dtype = w.dtype();
        if super::kernels::packable(dtype).is_none() {
            return Self::new(w, bias);
        }
        let mut data = w.data()?.to_vec();
        drop(w);
        if !super::kernels::pack(dtype, &mut data, in_dim) {
            return Err(crate::error::Error::Metadata(format!(
                "a {dtype:?} matrix of {out_dim} × {in_dim} holds {} bytes",
                data.len()
            )));
        }
        Ok(Linear {
            w: Store::Packed {
                dtype,
                data: PackedBytes::Own(Arc::new(data)),
            },
            bias,
            out_dim,
            in_dim,
        })
    }

    /// The block type and bytes our kernels read (and whether they are packed); with
    /// `preferred`, only where ours beat candle's on this target.
    fn kernel_bytes(&self, preferred: bool) -> Result<Option<KernelBytes<'_>>> {
        Ok(match &self.w {
            Store::Packed { dtype, data } => Some((*dtype, data.bytes()?, true)),
            Store::File(QMatMul::QTensor(w)) if !preferred || super::kernels::preferred(w.dtype()) => {
                Some((w.dtype(), w.data()?, false))
            }
            Store::File(_) => None,
        })
    }

    /// `x` holds `rows` vectors of `in_dim`; returns `rows` vectors of `out_dim`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        if let Some((dtype, data, packed)) = self.kernel_bytes(true)? {
            let mut y = vec![0f32; rows * self.out_dim];
            let weights = super::kernels::Weights {
                dtype,
                data: &data,
                out_dim: self.out_dim,
                in_dim: self.in_dim,
                packed,
            };
            if super::kernels::matmul(&weights, x, rows, &mut y, true) {
                self.add_bias(&mut y);
                return Ok(y);
            }
        }
        self.forward_candle(x, rows)
    }

    fn forward_candle(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let Store::File(w) = &self.w else {
            return Err(crate::error::Error::Metadata(
                "packed weights without the kernels that read them".into(),
            ));
        };
        let t = Tensor::from_slice(x, (rows, self.in_dim), &Device::Cpu)?;
        let mut y = w.forward(&t)?.flatten_all()?.to_vec1::<f32>()?;
        self.add_bias(&mut y);
        Ok(y)
    }

    /// The fast kernel against the scalar reference on this weight (see `kernels`).
    pub fn kernel_self_test(&self, x: &[f32], rows: usize) -> Option<(String, f64)> {
        let (dtype, data, packed) = self.kernel_bytes(false).ok()??;
        let weights = super::kernels::Weights {
            dtype,
            data: &data,
            out_dim: self.out_dim,
            in_dim: self.in_dim,
            packed,
        };
        let err = super::kernels::compare_with_reference(&weights, x, rows)?;
        Some((format!("{dtype:?}{}", if packed { " packed" } else { "" }), err))
    }

    fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(self.out_dim) {
                for (v, b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
        }
    }
}

/// Dequantizes a small tensor (norm weights, biases) to f32.
pub fn to_f32(t: &QTensor) -> Result<Vec<f32>> {
    Ok(t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Looks up and dequantizes only the embedding rows that `ids` use.
pub fn embedding_rows(table: &QTensor, ids: &[u32]) -> Result<Vec<f32>> {
    let ids = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
    Ok(table.embedding(&ids)?.flatten_all()?.to_vec1::<f32>()?)
}

/// [`embedding_rows`] from a packed table: the rows are put back in the file's layout and
/// dequantized by candle, so the values are the same bits.
fn packed_embedding_rows(table: &QTensor, ids: &[u32]) -> Result<Vec<f32>> {
    let (rows, width) = table.shape().dims2()?;
    let dtype = table.dtype();
    let row_bytes = super::kernels::row_bytes(dtype, width)
        .ok_or_else(|| crate::error::Error::Metadata(format!("a {dtype:?} table {width} wide")))?;
    let data = table.data()?;
    let mut file = vec![0u8; ids.len() * row_bytes];
    for (&id, out) in ids.iter().zip(file.chunks_exact_mut(row_bytes)) {
        let id = id as usize;
        if id >= rows {
            return Err(crate::error::Error::InvalidRequest(format!(
                "token {id} is not in the vocabulary of {rows}"
            )));
        }
        if !super::kernels::file_row(dtype, &data, width, id, out) {
            return Err(crate::error::Error::Metadata(format!(
                "row {id} of a packed {dtype:?} table of {rows} × {width}"
            )));
        }
    }
    let storage = candle_core::quantized::QStorage::from_data(std::borrow::Cow::Owned(file), &Device::Cpu, dtype)?;
    to_f32(&QTensor::new(storage, (ids.len(), width))?)
}

/// RMSNorm of every `w.len()`-wide row of `x`, in place.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    if super::llama_cpp::enabled() {
        return super::llama_cpp::rms_norm(x, w, eps);
    }
    for row in x.chunks_exact_mut(w.len()) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for (v, w) in row.iter_mut().zip(w) {
            *v = *v * scale * w;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeStyle {
    /// Rotates adjacent pairs (x[2i], x[2i+1]): llama.cpp's "normal" type (Llama files).
    Interleaved,
    /// Rotates x[i] with x[i + d/2]: llama.cpp's "neox" type (Qwen, Gemma, Phi-3).
    Halves,
}

/// One layer's rotary frequencies.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// Angle per position of each rotated pair (`rot_dim / 2` entries).
    pub inv_freq: Vec<f32>,
    /// llama.cpp's way to the same angles, for its numerics (none for YaRN's).
    pub recurrence: Option<super::llama_cpp::AngleRecurrence>,
}

impl Rotation {
    pub fn new(inv_freq: Vec<f32>) -> Self {
        Rotation {
            inv_freq,
            recurrence: None,
        }
    }
}

/// Rotary position embedding for `n_heads` heads of `head_dim` in each row of `x`;
/// row `r` is at position `pos0 + r`.
pub fn rope(x: &mut [f32], n_heads: usize, head_dim: usize, pos0: usize, rot: &Rotation, style: RopeStyle) {
    let inv_freq = &rot.inv_freq;
    let half = inv_freq.len();
    let recurrence = rot.recurrence.as_ref().filter(|_| super::llama_cpp::enabled());
    let mut cs = vec![(0f32, 0f32); half];
    for (r, row) in x.chunks_exact_mut(n_heads * head_dim).enumerate() {
        let pos = (pos0 + r) as f32;
        if let Some(rec) = recurrence {
            rec.cos_sin(pos0 + r, half, &mut cs);
        } else {
            for (c, f) in cs.iter_mut().zip(inv_freq) {
                let (s, co) = (pos * f).sin_cos();
                *c = (co, s);
            }
        }
        for head in row.chunks_exact_mut(head_dim) {
            for (i, &(c, s)) in cs.iter().enumerate() {
                let (a, b) = match style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
}

pub fn silu(x: f32) -> f32 {
    super::kernels::scalar::silu(x)
}

pub fn softcap(x: &mut [f32], cap: f32) {
    for v in x {
        *v = super::kernels::scalar::tanh(*v / cap) * cap;
    }
}

pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Shape of one attention call.
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
    /// Keys further back than this many positions are not attended to (Gemma's local layers).
    pub window: Option<usize>,
}

/// Causal attention of `q` (rows at positions `pos0..`, `n_head × head_dim` each) over the
/// cached keys and values (`[position][kv head][head_dim]`, positions `0..` covering every query).
///
/// Like llama.cpp's CPU path, queries and attention weights are rounded to f16 before they
/// meet the f16 cache; the products accumulate in f32.
pub fn attention(q: &[f32], k: &[f16], v: &[f16], pos0: usize, s: &AttentionShape) -> Vec<f32> {
    attention_by(q, k, v, pos0, s, heads_per_task(s), SIMD)
}

const SIMD: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

/// How many query heads one task runs together. In the browser the heads that share a KV
/// head (up to four) go through its keys and values once for all of them: each f16 row is
/// widened and transposed once instead of once per head (Gemma 3 has four query heads per
/// KV head, SmolLM2 three). Natively the scalar loops gain nothing from it.
fn heads_per_task(s: &AttentionShape) -> usize {
    let shared = s.n_head / s.n_kv_head.max(1);
    match SIMD {
        true => [4, 3, 2].into_iter().find(|g| shared.is_multiple_of(*g)).unwrap_or(1),
        false => 1,
    }
}

/// [`attention`] with `group` query heads per task (a divisor of the heads per KV head)
/// and the SIMD sums or the scalar loops: every choice gives the same bits.
pub fn attention_by(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: &AttentionShape,
    group: usize,
    simd: bool,
) -> Vec<f32> {
    let (hd, n_head) = (s.head_dim, s.n_head);
    let mut out = vec![0f32; q.len()];
    let per_row = n_head / group;
    // One task per (row, group of heads): each writes its own slice of `out`, so the result
    // does not depend on how the tasks are spread over threads.
    let task = |i: usize, o: &mut [f32]| {
        let (r, h0) = (i / per_row, i % per_row * group);
        let at = Query { pos: pos0 + r, r, h0 };
        match group {
            4 => attend::<4>(q, k, v, &at, s, simd, o),
            3 => attend::<3>(q, k, v, &at, s, simd, o),
            2 => attend::<2>(q, k, v, &at, s, simd, o),
            _ => attend::<1>(q, k, v, &at, s, simd, o),
        }
    };
    // A task per few heads; worth handing over only with enough positions to go through.
    let rows = q.len() / (n_head * hd);
    let work = rows * n_head * (pos0 + rows) * hd;
    if super::pool::threads() > 1 && work >= 1 << 15 {
        let grain = (per_row * rows).div_ceil(super::pool::threads() * 4);
        super::pool::for_each_piece(&mut out, group * hd, grain, 2.0 * work as f64, task);
        return out;
    }
    out.chunks_mut(group * hd).enumerate().for_each(|(i, o)| task(i, o));
    out
}

/// Query row `r` at position `pos`, heads `h0..` of it.
struct Query {
    pos: usize,
    r: usize,
    h0: usize,
}

/// Heads `h0..h0 + G` of one query row (they share a KV head) over the cached keys and
/// values. Like llama.cpp, the query is rounded to f16 before the dot products (its K·Q
/// runs in f16) and so are the softmax weights before they multiply V.
#[allow(clippy::too_many_arguments)]
fn attend<const G: usize>(q: &[f32], k: &[f16], v: &[f16], at: &Query, s: &AttentionShape, simd: bool, o: &mut [f32]) {
    let hd = s.head_dim;
    let kv_width = s.n_kv_head * hd;
    let kvh = at.h0 / (s.n_head / s.n_kv_head);
    let first = match s.window {
        Some(w) if at.pos + 1 > w => at.pos + 1 - w,
        _ => 0,
    };
    let row = |p: usize| p * kv_width + kvh * hd;
    if super::llama_cpp::enabled() {
        for (j, o) in o.chunks_exact_mut(hd).enumerate() {
            let q_at = (at.r * s.n_head + at.h0 + j) * hd;
            let (key, value) = (|p| &k[row(p)..row(p) + hd], |p| &v[row(p)..row(p) + hd]);
            super::llama_cpp::attend_head(&q[q_at..q_at + hd], first, at.pos, key, value, s.scale, s.softcap, o);
        }
        return;
    }
    let qv: [Vec<f32>; G] = std::array::from_fn(|j| {
        let q_at = (at.r * s.n_head + at.h0 + j) * hd;
        q[q_at..q_at + hd].iter().map(|&x| round_f16(x)).collect()
    });
    let mut scores: [Vec<f32>; G] = std::array::from_fn(|_| Vec::with_capacity(at.pos + 1 - first));
    key_dots(&qv, first..at.pos + 1, |p| &k[row(p)..row(p) + hd], simd, &mut scores);
    for sc in scores.iter_mut() {
        softmax_f16(sc, s.scale, s.softcap, simd);
    }
    weighted_values(o, &scores, |i| &v[row(first + i)..row(first + i) + hd], simd);
}

/// Scores to attention weights: scaled (and soft-capped), softmax, rounded to f16.
fn softmax_f16(scores: &mut [f32], scale: f32, softcap: Option<f32>, simd: bool) {
    let mut max = f32::NEG_INFINITY;
    for d in scores.iter_mut() {
        *d *= scale;
        if let Some(c) = softcap {
            *d = super::kernels::scalar::tanh(*d / c) * c;
        }
        max = max.max(*d);
    }
    // In the browser the exponentials and the rounding (software routines there, a third of
    // the attention time) run four at a time, by the same steps as this scalar form.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if simd {
        return super::kernels::simd128::exp_normalize_f16(scores, max);
    }
    let _ = simd;
    let mut sum = 0.0;
    for sc in scores.iter_mut() {
        *sc = super::kernels::scalar::exp(*sc - max);
        sum += *sc;
    }
    for sc in scores.iter_mut() {
        *sc = round_f16(*sc / sum);
    }
}

/// `q_j · key(p)` for every position and each of the G queries, each summed in element order
/// in one running sum: an eight-lane sum decoded 10% faster natively but moved the
/// teacher-forced logits away from llama.cpp's (tests/parity.rs failed on both models). The
/// SIMD form keeps that order by giving each of four keys its own lane, so it is
/// bit-identical to the scalar one.
fn key_dots<'a, const G: usize>(
    q: &[Vec<f32>; G],
    positions: std::ops::Range<usize>,
    key: impl Fn(usize) -> &'a [f16],
    simd: bool,
    out: &mut [Vec<f32>; G],
) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let rest = {
        let mut p = positions.start;
        let qs: [&[f32]; G] = std::array::from_fn(|j| &q[j][..]);
        while simd && qs[0].len().is_multiple_of(8) && p + 4 <= positions.end {
            let sums = super::kernels::simd128::dot_keys4(qs, [key(p), key(p + 1), key(p + 2), key(p + 3)]);
            for (o, s) in out.iter_mut().zip(sums) {
                o.extend(s);
            }
            p += 4;
        }
        p
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let rest = {
        let _ = simd;
        positions.start
    };
    for p in rest..positions.end {
        for (q, o) in q.iter().zip(out.iter_mut()) {
            o.push(q.iter().zip(key(p)).map(|(a, b)| a * widen(*b)).sum::<f32>());
        }
    }
}

/// `o_j += Σ w_j[i] · value(i)` for each of the G heads (`o` holds them one after another),
/// each element summed in position order.
fn weighted_values<'a, const G: usize>(
    o: &mut [f32],
    w: &[Vec<f32>; G],
    value: impl Fn(usize) -> &'a [f16],
    simd: bool,
) {
    let hd = o.len() / G;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if simd && hd.is_multiple_of(8) {
        let ws: [&[f32]; G] = std::array::from_fn(|j| &w[j][..]);
        return super::kernels::simd128::add_weighted_rows(o, ws, value);
    }
    let _ = simd;
    for (o, w) in o.chunks_exact_mut(hd).zip(w) {
        for (i, &w) in w.iter().enumerate() {
            for (a, b) in o.iter_mut().zip(value(i)) {
                *a += w * widen(*b);
            }
        }
    }
}

#[inline(always)]
fn widen(x: f16) -> f32 {
    super::kernels::scalar::f16_bits_to_f32(x.to_bits())
}

fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// The CPU backend: every operation runs at once, activations are plain `Vec<f32>`s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu;

impl Backend for Cpu {
    type Act = Vec<f32>;
    type Matrix = Linear;
    type Vector = Vec<f32>;
    type Table = Table;
    /// Keys and values as `[position][kv head][head_dim]` in f16, like llama.cpp's default
    /// cache: half the memory, and the same rounding as the reference we test against.
    type Kv = (Vec<f16>, Vec<f16>);

    fn matrix(&self, w: Arc<QTensor>, bias: Option<Vec<f32>>) -> Result<Linear> {
        Linear::packed(w, bias)
    }
    fn vector(&self, v: Vec<f32>) -> Result<Vec<f32>> {
        Ok(v)
    }
    fn table(&self, t: Arc<QTensor>) -> Result<Table> {
        Ok(Table { t, packed: false })
    }
    fn packed_table(&self, t: Arc<QTensor>) -> Result<Table> {
        Ok(Table { t, packed: true })
    }
    fn tied_output(&self, t: &Table) -> Result<Linear> {
        if !t.packed {
            return Linear::new(t.t.clone(), None);
        }
        let (out_dim, in_dim) = t.t.shape().dims2()?;
        Ok(Linear {
            w: Store::Packed {
                dtype: t.t.dtype(),
                data: PackedBytes::Table(t.t.clone()),
            },
            bias: None,
            out_dim,
            in_dim,
        })
    }
    fn new_kv(&self) -> Self::Kv {
        (Vec::new(), Vec::new())
    }
    fn truncate_kv(&self, kv: &mut Self::Kv, n: usize, kv_width: usize) {
        kv.0.truncate(n * kv_width);
        kv.1.truncate(n * kv_width);
    }
    fn kv_bytes(&self, kv: &Self::Kv) -> usize {
        (kv.0.capacity() + kv.1.capacity()) * 2
    }
    fn embed(&self, t: &Table, ids: &[u32], scale: Option<f32>) -> Result<Vec<f32>> {
        let mut h = if t.packed {
            packed_embedding_rows(&t.t, ids)?
        } else {
            embedding_rows(&t.t, ids)?
        };
        if let Some(s) = scale {
            h.iter_mut().for_each(|v| *v *= s);
        }
        Ok(h)
    }
    fn rms_norm(&self, x: &Vec<f32>, w: &Vec<f32>, eps: f32) -> Result<Vec<f32>> {
        let mut y = x.clone();
        rms_norm(&mut y, w, eps);
        Ok(y)
    }
    fn rms_norm_in_place(&self, x: &mut Vec<f32>, w: &Vec<f32>, eps: f32) -> Result<()> {
        rms_norm(x, w, eps);
        Ok(())
    }
    fn linear(&self, w: &Linear, x: &Vec<f32>, rows: usize) -> Result<Vec<f32>> {
        w.forward(x, rows)
    }
    fn split(&self, x: &Vec<f32>, rows: usize, widths: [usize; 3]) -> Result<[Vec<f32>; 3]> {
        let mut out = widths.map(|w| Vec::with_capacity(rows * w));
        let width: usize = widths.iter().sum();
        for row in x.chunks_exact(width) {
            let mut at = 0;
            for (o, w) in out.iter_mut().zip(widths) {
                o.extend_from_slice(&row[at..at + w]);
                at += w;
            }
        }
        Ok(out)
    }
    fn rope(
        &self,
        x: &mut Vec<f32>,
        _rows: usize,
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        rot: &Rotation,
        style: RopeStyle,
    ) -> Result<()> {
        rope(x, n_heads, head_dim, pos0, rot, style);
        Ok(())
    }
    fn attention(
        &self,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        kv: &mut Self::Kv,
        pos0: usize,
        _rows: usize,
        shape: &AttentionShape,
    ) -> Result<Vec<f32>> {
        kv.0.extend(k.iter().map(|&x| f16::from_f32(x)));
        kv.1.extend(v.iter().map(|&x| f16::from_f32(x)));
        Ok(attention(q, &kv.0, &kv.1, pos0, shape))
    }
    fn add(&self, h: &mut Vec<f32>, a: &Vec<f32>) -> Result<()> {
        add_in_place(h, a);
        Ok(())
    }
    fn gate(&self, mut g: Vec<f32>, u: &Vec<f32>, act: Activation) -> Result<Vec<f32>> {
        // Prefill's activations (rows × n_ff) are shared out in pieces of 8192; each value
        // is done by itself, so the split does not change any bit. ~20 operations a value.
        const PIECE: usize = 8192;
        if g.len() >= 2 * PIECE && super::pool::threads() > 1 {
            let work = 20.0 * g.len() as f64;
            super::pool::for_each_piece(&mut g, PIECE, 1, work, |i, g| {
                gate_in_place(g, &u[i * PIECE..i * PIECE + g.len()], act)
            });
        } else {
            gate_in_place(&mut g, u, act);
        }
        Ok(g)
    }
    fn gate_fused(&self, y: &Vec<f32>, rows: usize, n_ff: usize, act: Activation) -> Result<Vec<f32>> {
        let mut g = Vec::with_capacity(rows * n_ff);
        for row in y.chunks_exact(2 * n_ff) {
            let (gate, up) = row.split_at(n_ff);
            let at = g.len();
            g.extend_from_slice(gate);
            gate_in_place(&mut g[at..], up, act);
        }
        Ok(g)
    }
    fn last_rows(&self, x: &Vec<f32>, rows: usize, keep: usize, width: usize) -> Result<Vec<f32>> {
        Ok(x[(rows - keep) * width..].to_vec())
    }
    fn softcap(&self, x: &mut Vec<f32>, cap: f32) -> Result<()> {
        softcap(x, cap);
        Ok(())
    }
    fn scale(&self, x: &mut Vec<f32>, s: f32) -> Result<()> {
        x.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }
    fn read(&self, x: Vec<f32>) -> Result<Vec<f32>> {
        Ok(x)
    }
}

/// `g = act(g) · u`, with exponentials of our own (see `scalar::gelu_by_exp`); in the
/// browser four at a time (the same bits).
fn gate_in_place(g: &mut [f32], u: &[f32], act: Activation) {
    if super::llama_cpp::enabled() {
        return match act {
            Activation::Silu => super::llama_cpp::swiglu(g, u),
            Activation::GeluTanh => super::llama_cpp::geglu(g, u),
        };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::kernels::simd128::gate(g, u, matches!(act, Activation::GeluTanh));
    #[allow(unreachable_code)]
    {
        let f = activation(act);
        for (g, u) in g.iter_mut().zip(u) {
            *g = f(*g) * u;
        }
    }
}

pub fn activation(act: Activation) -> fn(f32) -> f32 {
    match act {
        Activation::Silu => silu,
        // GELU's tanh from our `exp`: the platform's `tanh` differs between native builds,
        // the browser and the GPU, ours does not.
        Activation::GeluTanh => super::kernels::scalar::gelu_by_exp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: &[f32]) -> Vec<f16> {
        x.iter().map(|&v| f16::from_f32(v)).collect()
    }

    #[test]
    fn attention_with_one_key_returns_its_value() {
        let s = AttentionShape {
            n_head: 2,
            n_kv_head: 1,
            head_dim: 2,
            scale: 1.0,
            softcap: None,
            window: None,
        };
        let out = attention(&[1.0, 0.0, 0.0, 1.0], &h(&[0.5, 0.5]), &h(&[3.0, -1.0]), 0, &s);
        assert_eq!(out, vec![3.0, -1.0, 3.0, -1.0]);
    }

    #[test]
    fn sliding_window_ignores_old_keys() {
        let s = AttentionShape {
            n_head: 1,
            n_kv_head: 1,
            head_dim: 1,
            scale: 1.0,
            softcap: None,
            window: Some(1),
        };
        // Query at position 1 with a window of one sees only key 1.
        let out = attention(&[1.0], &h(&[100.0, 0.0]), &h(&[7.0, 2.0]), 1, &s);
        assert_eq!(out, vec![2.0]);
    }

    #[test]
    fn rope_styles_rotate_different_pairs() {
        let inv = Rotation::new(vec![1.0f32, 0.0]);
        let mut a = [1.0, 0.0, 1.0, 0.0];
        rope(&mut a, 1, 4, 1, &inv, RopeStyle::Interleaved);
        assert!((a[0] - 1f32.cos()).abs() < 1e-6 && (a[1] - 1f32.sin()).abs() < 1e-6);
        let mut b = [1.0, 0.0, 0.0, 0.0];
        rope(&mut b, 1, 4, 1, &inv, RopeStyle::Halves);
        assert!((b[0] - 1f32.cos()).abs() < 1e-6 && (b[2] - 1f32.sin()).abs() < 1e-6);
    }
}
