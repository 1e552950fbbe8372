//! Activation quantization, done once per activation row and reused for every weight row.
//! `BlockQ8` (32 values) pairs with the 32-element weight blocks, `BlockQ8K` (256 values,
//! with sums per 16) with the k-quants, as in ggml.

use half::f16;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
pub struct BlockQ8 {
    pub qs: [i8; 32],
    /// Scale, rounded through f16 like ggml's `block_q8_1.d`.
    pub d: f32,
    /// `d * Σ qs`, rounded through f16 like ggml's `block_q8_1.s`.
    pub s: f32,
    /// `Σ qs` exactly, for kernels that multiply offset codes (`Σ (w − off)·a = Σ w·a − off·Σ a`).
    pub sum: i32,
    /// `d` of this block and the next three (0 past the row's end): the SIMD kernels scale
    /// four blocks at once and take their four scales in one load.
    pub d4: [f32; 4],
    /// `s` of this block and the next three, likewise.
    pub s4: [f32; 4],
}

impl BlockQ8 {
    pub const ZERO: BlockQ8 = BlockQ8 {
        qs: [0; 32],
        d: 0.0,
        s: 0.0,
        sum: 0,
        d4: [0.0; 4],
        s4: [0.0; 4],
    };
}

#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
pub struct BlockQ8K {
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
    pub d: f32,
}

/// [`quantize_q8_ref`], four values at a time in the browser (same bits).
pub fn quantize_q8(x: &[f32], out: &mut Vec<BlockQ8>) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd128::quantize_q8(x, out);
    #[allow(unreachable_code)]
    quantize_q8_ref(x, out)
}

/// [`quantize_q8k_ref`], four values at a time in the browser (same bits).
pub fn quantize_q8k(x: &[f32], out: &mut Vec<BlockQ8K>) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd128::quantize_q8k(x, out);
    #[allow(unreachable_code)]
    quantize_q8k_ref(x, out)
}

/// ggml's `quantize_row_q8_1_ref` (also what Q8_0 activations look like, plus `s`).
pub fn quantize_q8_ref(x: &[f32], out: &mut Vec<BlockQ8>) {
    out.clear();
    for chunk in x.chunks_exact(32) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; 32];
        let mut sum = 0i32;
        for (q, v) in qs.iter_mut().zip(chunk) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        out.push(BlockQ8 {
            qs,
            d: f16::from_f32(d).to_f32(),
            s: f16::from_f32(sum as f32 * d).to_f32(),
            sum,
            d4: [0.0; 4],
            s4: [0.0; 4],
        });
    }
    fill_fours(out);
}

/// Each block's `d4` and `s4` from its own and the next three blocks'.
pub fn fill_fours(out: &mut [BlockQ8]) {
    for i in 0..out.len() {
        for j in 0..4 {
            out[i].d4[j] = out.get(i + j).map_or(0.0, |b| b.d);
            out[i].s4[j] = out.get(i + j).map_or(0.0, |b| b.s);
        }
    }
}

/// ggml's `quantize_row_q8_K_ref` as it was: the scale maps the largest-magnitude value to
/// -128 (llama.cpp now maps it to -127, see `llama_cpp::quantize_q8k`).
pub fn quantize_q8k_ref(x: &[f32], out: &mut Vec<BlockQ8K>) {
    quantize_q8k_by(x, out, -128.0, f32::round)
}

/// Q8_K blocks whose largest-magnitude value becomes code `top`, the codes rounded by `round`.
#[inline(always)]
pub fn quantize_q8k_by(x: &[f32], out: &mut Vec<BlockQ8K>, top: f32, round: impl Fn(f32) -> f32) {
    out.clear();
    for chunk in x.chunks_exact(256) {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in chunk {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let mut b = BlockQ8K {
            qs: [0; 256],
            bsums: [0; 16],
            d: 0.0,
        };
        if amax != 0.0 {
            let iscale = top / max;
            for (q, v) in b.qs.iter_mut().zip(chunk) {
                *q = (round(iscale * v) as i32).min(127) as i8;
            }
            for (g, s) in b.bsums.iter_mut().enumerate() {
                *s = b.qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
            }
            b.d = 1.0 / iscale;
        }
        out.push(b);
    }
}
