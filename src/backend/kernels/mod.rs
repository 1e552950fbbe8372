//! Our own fused dequantize-and-dot kernels on raw GGUF blocks. Activations are quantized
//! once per row (as llama.cpp does) and every weight row is multiplied with all activation
//! rows while it is in cache, so prefill does one pass over the weights, not one per token.
//!
//! On wasm32 with SIMD128 these replace candle's kernels. Natively candle's kernels take
//! Q8_0 and the k-quants (see [`preferred`]); the 32-value types run the scalar references,
//! or their AVX2 forms (`avx2`) on x86-64 CPUs that have it. Every SIMD form equals its
//! reference bit for bit; the references are tested against candle's dequantization.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod native;
pub mod packed;
pub mod packed_k;
pub mod q8;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;

use candle_core::quantized::GgmlDType;
use q8::{BlockQ8, BlockQ8K};

#[cfg(target_arch = "x86_64")]
use native as fast;
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
use scalar as fast;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use simd128 as fast;

/// Whether a native build runs its AVX2 kernels for the 32-value types (x86-64 CPUs with
/// AVX2, unless `CANDLELIT_NO_AVX2` is set); the browser builds have their SIMD128 ones.
pub fn native_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx2::enabled();
    #[allow(unreachable_code)]
    false
}

/// Every block type these kernels multiply.
pub const SUPPORTED: [GgmlDType; 12] = [
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

/// Whether our kernels beat candle's for a block type on this target: everywhere in the
/// browser (candle has no SIMD128 path worth the name), natively for the 32-value types but
/// Q8_0 (ours have AVX2 forms; candle's generic code multiplied Q4_1, Q5_0 and Q5_1 2.5×
/// slower than even our scalar references on SmolLM2) and for F16 and BF16, which candle
/// converts slowly (SmolLM2 F16 decode 2.4 → 26.6 tok/s, BF16 10.7 → 43 tok/s). Ours give
/// the browser kernels' bits; candle's for Q8_0 and the k-quants round differently (with
/// ours for every type natively, Gemma 3 decoded at 19 tok/s instead of 24, and its greedy
/// continuation of "The capital of France is" parted from llama.cpp's at a near-tie).
pub fn preferred(dtype: GgmlDType) -> bool {
    if super::llama_cpp::enabled() {
        return kernel(dtype, false).is_some();
    }
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) || browser_kernels() {
        kernel(dtype, true).is_some()
    } else {
        matches!(
            dtype,
            GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::F16 | GgmlDType::BF16
        )
    }
}

static BROWSER_KERNELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Natively, multiply every block type with our kernels (their bits are the browser's and the
/// GPU's; where there is no AVX2 form, the scalar references run) instead of candle's for
/// Q8_0 and the k-quants: the CPU that the GPU backend is checked against bit for bit. Also
/// `CANDLELIT_BROWSER_KERNELS=1`. Read at every product.
pub fn use_browser_kernels(on: bool) {
    BROWSER_KERNELS.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn browser_kernels() -> bool {
    static ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    BROWSER_KERNELS.load(std::sync::atomic::Ordering::Relaxed)
        || *ENV.get_or_init(|| std::env::var_os("CANDLELIT_BROWSER_KERNELS").is_some())
}

pub type Four<B> = fn(&[u8], [&[B]; 4]) -> [f32; 4];

/// One weight row · one activation row, and (where a kernel has it) · four activation rows
/// at once, for prefill: each weight block is then unpacked once for four rows.
pub struct Kern<B> {
    pub one: fn(&[u8], &[B]) -> f32,
    pub four: Option<Four<B>>,
}

impl<B> Clone for Kern<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Kern<B> {}

#[derive(Clone, Copy)]
pub enum Dot {
    Q8(Kern<BlockQ8>),
    Q8K(Kern<BlockQ8K>),
    /// 16-bit float weights take the activations as they are.
    F32(Kern<f32>),
}

/// The kernel for a block type, with the bytes and elements of one block.
pub fn kernel(dtype: GgmlDType, simd: bool) -> Option<(Dot, usize, usize)> {
    use GgmlDType as T;
    let pick = |f, s| Dot::Q8(choose(simd, f, s, four_q8(dtype)));
    let pick_k = |f, s| Dot::Q8K(choose(simd, f, s, four_q8k(dtype)));
    let pick_f = |f, s| Dot::F32(choose(simd, f, s, None));
    if !simd && super::llama_cpp::enabled() {
        use super::llama_cpp as l;
        match dtype {
            T::Q4K => return Some((pick_k(l::dot_q4_k, l::dot_q4_k), 144, 256)),
            T::Q5K => return Some((pick_k(l::dot_q5_k, l::dot_q5_k), 176, 256)),
            T::Q6K => return Some((pick_k(l::dot_q6_k, l::dot_q6_k), 210, 256)),
            T::F32 => return Some((pick_f(l::dot_f32, l::dot_f32), 4, 1)),
            _ => {}
        }
    }
    Some(match dtype {
        T::F16 => (pick_f(fast::dot_f16, scalar::dot_f16), 2, 1),
        T::BF16 => (pick_f(fast::dot_bf16, scalar::dot_bf16), 2, 1),
        T::Q4_0 => (pick(fast::dot_q4_0, scalar::dot_q4_0), 18, 32),
        T::Q4_1 => (pick(fast::dot_q4_1, scalar::dot_q4_1), 20, 32),
        T::Q5_0 => (pick(fast::dot_q5_0, scalar::dot_q5_0), 22, 32),
        T::Q5_1 => (pick(fast::dot_q5_1, scalar::dot_q5_1), 24, 32),
        T::Q8_0 => (pick(fast::dot_q8_0, scalar::dot_q8_0), 34, 32),
        T::Q2K => (pick_k(fast::dot_q2_k, scalar::dot_q2_k), 84, 256),
        T::Q3K => (pick_k(fast::dot_q3_k, scalar::dot_q3_k), 110, 256),
        T::Q4K => (pick_k(fast::dot_q4_k, scalar::dot_q4_k), 144, 256),
        T::Q5K => (pick_k(fast::dot_q5_k, scalar::dot_q5_k), 176, 256),
        T::Q6K => (pick_k(fast::dot_q6_k, scalar::dot_q6_k), 210, 256),
        _ => return None,
    })
}

/// The SIMD kernel (with its four-row form, if any) or the scalar reference.
fn choose<B>(
    simd: bool,
    fast: fn(&[u8], &[B]) -> f32,
    scalar: fn(&[u8], &[B]) -> f32,
    four: Option<Four<B>>,
) -> Kern<B> {
    if simd {
        Kern { one: fast, four }
    } else {
        Kern {
            one: scalar,
            four: None,
        }
    }
}

/// The four-row kernels: the SIMD ones of the types prefill spends its time in.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn four_q8(dtype: GgmlDType) -> Option<Four<BlockQ8>> {
    use GgmlDType as T;
    Some(match dtype {
        T::Q4_0 => simd128::dot_q4_0_x4,
        T::Q4_1 => simd128::dot_q4_1_x4,
        T::Q5_0 => simd128::dot_q5_0_x4,
        T::Q5_1 => simd128::dot_q5_1_x4,
        T::Q8_0 => simd128::dot_q8_0_x4,
        _ => return None,
    })
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn four_q8k(dtype: GgmlDType) -> Option<Four<BlockQ8K>> {
    use GgmlDType as T;
    Some(match dtype {
        T::Q4K => simd128::dot_q4_k_x4,
        T::Q5K => simd128::dot_q5_k_x4,
        T::Q6K => simd128::dot_q6_k_x4,
        _ => return None,
    })
}

#[cfg(target_arch = "x86_64")]
fn four_q8(dtype: GgmlDType) -> Option<Four<BlockQ8>> {
    use GgmlDType as T;
    if !avx2::enabled() {
        return None;
    }
    Some(match dtype {
        T::Q4_0 => avx2::dot_q4_0_x4,
        T::Q4_1 => avx2::dot_q4_1_x4,
        T::Q5_0 => avx2::dot_q5_0_x4,
        T::Q5_1 => avx2::dot_q5_1_x4,
        _ => return None,
    })
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
fn four_q8(_: GgmlDType) -> Option<Four<BlockQ8>> {
    None
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn four_q8k(_: GgmlDType) -> Option<Four<BlockQ8K>> {
    None
}

/// A weight matrix: `out_dim` rows of `in_dim` values in blocks, as they sit in the GGUF
/// file or, where `packed`, rearranged at load by [`pack`].
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    pub dtype: GgmlDType,
    pub data: &'a [u8],
    pub out_dim: usize,
    pub in_dim: usize,
    pub packed: bool,
}

/// How this build packs a block type at load, where its kernels read it faster so: the
/// 32-value types by quartets of rows (`packed`), the k-quants block by block (`packed_k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    Quartets(packed::Layout),
    Blocks,
}

/// Whether this build multiplies `dtype` faster with its rows packed at load: the
/// relaxed-SIMD build, for the types whose quads it multiplies.
pub fn packable(dtype: GgmlDType) -> Option<Packing> {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    {
        if simd128::quad_weights(dtype).is_some() {
            return packed::Layout::of(dtype).map(Packing::Quartets);
        }
        if simd128::kquad_sub(dtype).is_some() && packed_k::block_bytes(dtype).is_some() {
            return Some(Packing::Blocks);
        }
    }
    let _ = dtype;
    None
}

/// Bytes of one row of `in_dim` values, if `in_dim` is a whole number of blocks.
pub fn row_bytes(dtype: GgmlDType, in_dim: usize) -> Option<usize> {
    let elems = dtype.block_size();
    (in_dim.is_multiple_of(elems) && in_dim > 0).then(|| in_dim / elems * dtype.type_size())
}

/// Packs a matrix's rows in place for this build's kernels; false (and nothing changed)
/// where it gains nothing or the data does not fit its shape (quartets need rows in fours).
pub fn pack(dtype: GgmlDType, data: &mut [u8], in_dim: usize) -> bool {
    let Some(row_bytes) = row_bytes(dtype, in_dim) else {
        return false;
    };
    if !data.len().is_multiple_of(row_bytes) {
        return false;
    }
    match packable(dtype) {
        Some(Packing::Quartets(layout)) if data.len().is_multiple_of(4 * row_bytes) => {
            packed::pack(layout, data, row_bytes);
            true
        }
        Some(Packing::Blocks) => packed_k::pack(dtype, data),
        _ => false,
    }
}

/// The file's layout again for a matrix [`pack`] packed.
pub fn unpack(dtype: GgmlDType, data: &mut [u8], in_dim: usize) -> bool {
    let Some(row_bytes) = row_bytes(dtype, in_dim) else {
        return false;
    };
    match packed::Layout::of(dtype) {
        Some(layout) if data.len().is_multiple_of(4 * row_bytes) => {
            packed::unpack(layout, data, row_bytes);
            true
        }
        Some(_) => false,
        None => packed_k::unpack(dtype, data),
    }
}

/// Row `r` of a matrix [`pack`] packed, in the file's layout (`out`: one row's bytes).
pub fn file_row(dtype: GgmlDType, data: &[u8], in_dim: usize, r: usize, out: &mut [u8]) -> bool {
    let Some(row_bytes) = row_bytes(dtype, in_dim) else {
        return false;
    };
    if out.len() != row_bytes {
        return false;
    }
    match packed::Layout::of(dtype) {
        Some(layout) => {
            let Some(quartet) = data.get(r / 4 * 4 * row_bytes..(r / 4 + 1) * 4 * row_bytes) else {
                return false;
            };
            packed::file_row(layout, quartet, row_bytes, r % 4, out);
            true
        }
        None => {
            let Some(row) = data.get(r * row_bytes..(r + 1) * row_bytes) else {
                return false;
            };
            out.copy_from_slice(row);
            packed_k::unpack(dtype, out)
        }
    }
}

/// `out[r][o] = W[o] · x[r]` for `rows` activation rows of `in_dim`. Returns false when the
/// block type has no kernel here (the caller then uses candle's).
pub fn matmul(w: &Weights, x: &[f32], rows: usize, out: &mut [f32], simd: bool) -> bool {
    let llama_cpp = super::llama_cpp::enabled();
    let simd = simd && !llama_cpp;
    let Some((dot, block_bytes, block_elems)) = kernel(w.dtype, simd) else {
        return false;
    };
    // Packed rows only the relaxed build's quad kernels read.
    if w.packed && !(simd && packable(w.dtype).is_some()) {
        return false;
    }
    if !w.in_dim.is_multiple_of(block_elems) || w.data.len() != w.out_dim * w.in_dim / block_elems * block_bytes {
        return false;
    }
    let row_bytes = w.in_dim / block_elems * block_bytes;
    let work = (w.out_dim * w.in_dim * rows) as f64;
    // Rows packed by quartets are split between threads by whole quartets.
    let unit = match packable(w.dtype) {
        Some(Packing::Quartets(_)) if w.packed => 4,
        _ => 1,
    };
    let mut by_rows =
        |f: &(dyn Fn(&[u8], &mut [f32]) + Sync)| multiply(w.data, row_bytes, rows, w.out_dim, unit, work, out, f);
    match dot {
        Dot::Q8(f) => {
            let acts = quantize_rows(
                x,
                w.in_dim,
                rows,
                if simd { q8::quantize_q8 } else { q8::quantize_q8_ref },
            );
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            if let (true, true, Some(kind)) = (simd, rows >= 4 || w.packed, simd128::quad_weights(w.dtype)) {
                let groups = (w.in_dim / 32).div_ceil(4);
                let mut quads = Vec::with_capacity(rows * groups);
                for row in acts.chunks_exact(w.in_dim / 32) {
                    simd128::quad_acts(row, kind, &mut quads);
                }
                if rows >= 4 {
                    by_rows(&|part, res| simd128::quad_rows(kind, w.packed, part, row_bytes, &quads, groups, res));
                } else {
                    by_rows(&|part, res| (kind.decode)(kind, part, row_bytes, &quads, groups, res));
                }
                return true;
            }
            by_rows(&|part, res| dot_rows(part, row_bytes, &acts, w.in_dim / 32, f, res));
        }
        Dot::Q8K(f) => {
            let acts = quantize_rows(
                x,
                w.in_dim,
                rows,
                match (simd, llama_cpp) {
                    (true, _) => q8::quantize_q8k,
                    (false, true) => super::llama_cpp::quantize_q8k,
                    (false, false) => q8::quantize_q8k_ref,
                },
            );
            // Prefill multiplies k-quant super-blocks as quads in both wasm builds; decode does
            // only where the weights are packed (the relaxed build). The SIMD128 build unpacks
            // each weight row from the file's layout, which pays from 16 prompt rows on (A/B
            // of the two SIMD128 builds in one V8, 2048 × 2048: Q4_K 0.99× at 8 rows, 1.09× at
            // 32, 1.12× at 128; Q6_K 1.01×, 1.13×; Q5_K 1.21×, 1.38× at 768 × 128).
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            let as_quads = rows >= if w.packed { 1 } else { FILE_KQUAD_ROWS };
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            if let (true, true, Some(sub)) = (simd, as_quads, simd128::kquad_sub(w.dtype)) {
                let mut quads = Vec::with_capacity(acts.len());
                for row in acts.chunks_exact(w.in_dim / 256) {
                    simd128::kquad_acts(row, sub, &mut quads);
                }
                let blocks = w.in_dim / 256;
                if rows >= 4 {
                    by_rows(&|part, res| simd128::kquad_rows(w.dtype, w.packed, part, row_bytes, &quads, blocks, res));
                    return true;
                }
                #[cfg(target_feature = "relaxed-simd")]
                {
                    by_rows(&|part, res| simd128::kquad_decode(w.dtype, part, row_bytes, &quads, blocks, res));
                    return true;
                }
            }
            by_rows(&|part, res| dot_rows(part, row_bytes, &acts, w.in_dim / 256, f, res));
        }
        Dot::F32(f) => by_rows(&|part, res| dot_rows(part, row_bytes, &x[..rows * w.in_dim], w.in_dim, f, res)),
    }
    true
}

/// Prompt rows from which the SIMD128 build multiplies k-quants in the file's layout as quads.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const FILE_KQUAD_ROWS: usize = 16;

/// Every activation row quantized; prefill's rows are shared out (each row by itself, so
/// the split does not change any bit).
fn quantize_rows<B: Copy + Send + Sync>(x: &[f32], in_dim: usize, rows: usize, q: fn(&[f32], &mut Vec<B>)) -> Vec<B> {
    let mut first = Vec::new();
    if rows == 0 {
        return first;
    }
    q(&x[..in_dim], &mut first);
    let (blocks, Some(&zero)) = (first.len(), first.first()) else {
        return first;
    };
    let mut all = vec![zero; rows * blocks];
    all[..blocks].copy_from_slice(&first);
    let quantize = |r: usize, out: &mut [B]| {
        let mut one = Vec::with_capacity(blocks);
        q(&x[(r + 1) * in_dim..(r + 2) * in_dim], &mut one);
        out.copy_from_slice(&one);
    };
    let rest = &mut all[blocks..];
    if rows >= 8 && super::pool::threads() > 1 {
        // About ten operations a value, in the pool's multiply-adds.
        let grain = (rows - 1).div_ceil(super::pool::threads() * 2);
        super::pool::for_each_piece(rest, blocks, grain, 10.0 * (rows * in_dim) as f64, quantize);
    } else {
        rest.chunks_exact_mut(blocks)
            .enumerate()
            .for_each(|(r, out)| quantize(r, out));
    }
    all
}

/// `out[r][o]` for `rows` activation rows: `dot(weight rows, res)` fills `res[weight row *
/// rows + activation row]` for a range of weight rows. `work`: multiply-adds, for the pool's
/// measurements.
#[allow(clippy::too_many_arguments)]
fn multiply(
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    out_dim: usize,
    unit: usize,
    work: f64,
    out: &mut [f32],
    dot: &(dyn Fn(&[u8], &mut [f32]) + Sync),
) {
    // Contiguous ranges of weight rows per task, a few tasks per thread so that a thread
    // slowed by another process leaves its share to the others. A task below ~16 KB of
    // weights costs more to hand over than it saves.
    let threads = super::pool::threads();
    let per_task = if threads > 1 {
        out_dim
            .div_ceil(threads * 4)
            .max((16 << 10) / (row_bytes * rows).max(1))
            .max(1)
            .next_multiple_of(unit)
    } else {
        out_dim
    };
    // Results per weight row; in decode (one row) that is already `out`'s layout.
    let mut by_weight = if rows == 1 {
        Vec::new()
    } else {
        vec![0f32; out_dim * rows]
    };
    let res = if rows == 1 {
        &mut out[..out_dim]
    } else {
        &mut by_weight[..]
    };
    super::pool::for_each_piece(res, per_task * rows, 1, work, |t, res| {
        dot(&w[t * per_task * row_bytes..][..res.len() / rows * row_bytes], res)
    });
    if rows > 1 {
        transpose_into(&by_weight, rows, out_dim, out);
    }
}

/// For each weight row of `w`, its products with every activation row, written as
/// `res[weight row * rows + activation row]`: the weight row stays in cache for all of them,
/// four activation rows at a time where the kernel can.
fn dot_rows<B>(w: &[u8], row_bytes: usize, acts: &[B], blocks: usize, f: Kern<B>, res: &mut [f32]) {
    let rows = acts.len() / blocks;
    // No list of row slices: this runs once per matrix product, hundreds of times a token.
    let row = |r: usize| &acts[r * blocks..(r + 1) * blocks];
    let quads = if f.four.is_some() { rows / 4 * 4 } else { 0 };
    for (wr, res) in w.chunks_exact(row_bytes).zip(res.chunks_exact_mut(rows)) {
        if let Some(four) = f.four {
            for (q, out) in res[..quads].chunks_exact_mut(4).enumerate() {
                out.copy_from_slice(&four(wr, [row(4 * q), row(4 * q + 1), row(4 * q + 2), row(4 * q + 3)]));
            }
        }
        for (r, v) in res.iter_mut().enumerate().skip(quads) {
            *v = (f.one)(wr, row(r));
        }
    }
}

/// `[out_dim][rows]` into `[rows][out_dim]`, eight activation rows at a time: each pass
/// reads 32 contiguous bytes per weight row and writes its eight rows front to back (element
/// by element, the strided writes were an eighth of Gemma 3's prefill). On one thread: on
/// two it was slower, and its time would skew the pool's measure of work per millisecond.
fn transpose_into(by_weight: &[f32], rows: usize, out_dim: usize, out: &mut [f32]) {
    const ROWS: usize = 8;
    for (t, piece) in out[..rows * out_dim].chunks_mut(ROWS * out_dim).enumerate() {
        let first = t * ROWS;
        let n = piece.len() / out_dim;
        for (o, src) in by_weight.chunks_exact(rows).enumerate() {
            for (i, v) in src[first..first + n].iter().enumerate() {
                piece[i * out_dim + o] = *v;
            }
        }
    }
}

/// Runs the fast kernel and the scalar reference on the same data and returns the worst
/// difference, relative to the typical output size. Used to test the SIMD kernels where
/// they run (in the browser), on random and real blocks.
/// Both `rows` rows (prefill's kernels) and the first row alone (decode's) are checked.
/// Packed weights are unpacked for the reference.
pub fn compare_with_reference(w: &Weights, x: &[f32], rows: usize) -> Option<f64> {
    let mut file_layout = vec![];
    let reference = if w.packed {
        file_layout.extend_from_slice(w.data);
        if !unpack(w.dtype, &mut file_layout, w.in_dim) {
            return None;
        }
        Weights {
            data: &file_layout,
            packed: false,
            ..*w
        }
    } else {
        *w
    };
    let mut worst: Option<f64> = None;
    for n in [rows, 1] {
        let mut fast_out = vec![0f32; n * w.out_dim];
        let mut ref_out = vec![0f32; n * w.out_dim];
        if !matmul(w, x, n, &mut fast_out, true) {
            return None;
        }
        matmul(&reference, x, n, &mut ref_out, false);
        worst = Some(worst.unwrap_or(0.0).max(worst_difference(&fast_out, &ref_out)));
    }
    worst
}

/// The largest |fast − reference|, relative to the reference's mean magnitude.
fn worst_difference(fast: &[f32], reference: &[f32]) -> f64 {
    let scale = reference.iter().map(|v| v.abs() as f64).sum::<f64>() / reference.len() as f64 + 1e-12;
    fast.iter()
        .zip(reference)
        .map(|(a, b)| (*a as f64 - *b as f64).abs() / scale)
        .fold(0.0, f64::max)
}

/// The other Q8_0 kernel (the one machines without VNNI run) against the reference.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn sign_moved_error(w: &Weights, x: &[f32], rows: usize) -> f64 {
    let mut fast_out = vec![0f32; rows * w.out_dim];
    let mut ref_out = vec![0f32; rows * w.out_dim];
    let acts = quantize_rows(x, w.in_dim, rows, q8::quantize_q8);
    let row_bytes = w.in_dim / 32 * 34;
    let kern = Kern {
        one: simd128::dot_q8_0_sign_moved,
        four: None,
    };
    let dot = |part: &[u8], res: &mut [f32]| dot_rows(part, row_bytes, &acts, w.in_dim / 32, kern, res);
    multiply(w.data, row_bytes, rows, w.out_dim, 1, 0.0, &mut fast_out, &dot);
    matmul(w, x, rows, &mut ref_out, false);
    worst_difference(&fast_out, &ref_out)
}

/// The fast kernels against the references on random weights of every supported type.
pub fn self_test_random(seed: u64) -> Vec<(String, f64)> {
    use candle_core::{Device, Tensor};
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    // 17 rows: four-row groups and a tail; the SIMD128 build's k-quant quads from 16 rows.
    let (n, k, rows) = (40, 768, 17);
    let w_values: Vec<f32> = (0..n * 800).map(|_| next()).collect();
    let x: Vec<f32> = (0..rows * 800).map(|_| next() * 4.0).collect();
    let mut out = vec![];
    let Ok(wt) = Tensor::from_vec(w_values[..n * k].to_vec(), (n, k), &Device::Cpu) else {
        return out;
    };
    for dtype in SUPPORTED {
        if let Ok(q) = candle_core::quantized::QTensor::quantize(&wt, dtype) {
            if let Ok(data) = q.data() {
                let w = Weights {
                    dtype,
                    data: &data,
                    out_dim: n,
                    in_dim: k,
                    packed: false,
                };
                if let Some(err) = compare_with_reference(&w, &x, rows) {
                    out.push((format!("{dtype:?}"), err));
                }
                // 800 wide as well: 25 blocks a row for the quartets (packed groups and a tail
                // of one block); not a whole number of k-quant blocks, so those are skipped.
                for k in [k, 800] {
                    let Ok(wt) = Tensor::from_vec(w_values[..n * k].to_vec(), (n, k), &Device::Cpu) else {
                        continue;
                    };
                    let Some(mut data) = candle_core::quantized::QTensor::quantize(&wt, dtype)
                        .and_then(|q| q.data().map(|d| d.to_vec()))
                        .ok()
                    else {
                        continue;
                    };
                    if pack(dtype, &mut data, k) {
                        let w = Weights {
                            dtype,
                            data: &data,
                            out_dim: n,
                            in_dim: k,
                            packed: true,
                        };
                        if let Some(err) = compare_with_reference(&w, &x[..rows * k], rows) {
                            out.push((format!("{dtype:?} packed, {k} wide"), err));
                        }
                    }
                }
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                if dtype == GgmlDType::Q8_0 {
                    out.push(("Q8_0 (signs moved)".into(), sign_moved_error(&w, &x, rows)));
                }
            }
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    out.extend(attention_differences(&mut next));
    out
}

/// The SIMD attention (query heads that share a KV head taken together) against the
/// per-head scalar loops, which it must equal bit for bit (same order of additions), for
/// 4, 3, 2 and 1 heads per task, with and without a sliding window and soft-capping: five
/// query rows after six cached positions, so key blocks of four and a scalar tail both run.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn attention_differences(next: &mut impl FnMut() -> f32) -> Vec<(String, f64)> {
    use crate::backend::cpu::{attention_by, AttentionShape};
    use half::f16;
    let (hd, n_kv_head, pos0, rows) = (64, 2, 6, 5);
    let cases = [
        (4, None, None),
        (3, Some(7), None),
        (2, None, Some(30.0)),
        (1, Some(3), None),
    ];
    let mut out = vec![];
    for (group, window, softcap) in cases {
        let n_head = group * n_kv_head;
        let shape = AttentionShape {
            n_head,
            n_kv_head,
            head_dim: hd,
            scale: 0.125,
            softcap,
            window,
        };
        let mut values = |len: usize, scale: f32| (0..len).map(|_| next() * scale).collect::<Vec<f32>>();
        let q = values(rows * n_head * hd, 2.0);
        let cache = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<f16>>();
        let k = cache(values((pos0 + rows) * n_kv_head * hd, 2.0));
        let v = cache(values((pos0 + rows) * n_kv_head * hd, 3.0));
        let fast = attention_by(&q, &k, &v, pos0, &shape, group, true);
        let slow = attention_by(&q, &k, &v, pos0, &shape, 1, false);
        let err = fast
            .iter()
            .zip(&slow)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        out.push((format!("attention in groups of {group}"), err));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Embedding lookups read single rows back out of packed tables of either packing.
    #[test]
    fn file_row_and_unpack_give_back_the_files_rows() {
        for (dtype, in_dim) in [(GgmlDType::Q4_1, 160), (GgmlDType::Q8_0, 96), (GgmlDType::Q6K, 512)] {
            let row = row_bytes(dtype, in_dim).unwrap();
            let file = packed::random_bytes(8 * row, 0x2545_F491_4F6C_DD1D);
            let mut data = file.clone();
            match packed::Layout::of(dtype) {
                Some(layout) => packed::pack(layout, &mut data, row),
                None => assert!(packed_k::pack(dtype, &mut data)),
            }
            assert_ne!(data, file, "{dtype:?}");
            let mut out = vec![0u8; row];
            for r in 0..8 {
                assert!(file_row(dtype, &data, in_dim, r, &mut out), "{dtype:?} row {r}");
                assert!(out == file[r * row..(r + 1) * row], "{dtype:?} row {r}");
            }
            assert!(
                !file_row(dtype, &data, in_dim, 8, &mut out),
                "{dtype:?}: a row past the end"
            );
            assert!(unpack(dtype, &mut data, in_dim));
            assert!(data == file, "{dtype:?}");
        }
    }
}
