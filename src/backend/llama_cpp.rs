//! llama.cpp's CPU arithmetic, step for step, for the CPU backend when asked
//! ([`use_llama_cpp_numerics`], `CANDLELIT_LLAMA_CPP_NUMERICS=1`, the CLI's
//! `--numerics llama-cpp`).
//!
//! The engine's own arithmetic (the default) is the browser's and the GPU's, chosen for
//! SIMD128 and WGSL; it agrees with llama.cpp to a few tenths of a logit. With 8-bit
//! activation codes any last-bit difference can move a code and grow through the layers, so
//! matching llama.cpp's argmax at near-ties (tests/parity.rs) needs its exact steps. These
//! are the steps of llama.cpp's portable x86-64 build (SSE2, no FMA, no F16C, no AVX: what
//! `scripts/make_fixtures.py` builds from llama-cpp-python's sources), whose kernels are
//! ggml's reference ones; each SIMD build of llama.cpp rounds in its own way (its AVX2
//! batched and token-by-token passes disagree with each other at 3.6% of SmolLM2's
//! positions). The libm functions both call (`tanhf`, `sinf`, `cosf`, `powf`) are the
//! platform's: glibc natively, as llama.cpp's.
//!
//! Not followed (the engine's arithmetic runs there): YaRN's angles and RoPE attention
//! factors, F16/BF16 weights (llama.cpp rounds the activations to f16 for them), Q2_K and
//! Q3_K, and the last `n_ff mod 4` SiLU values of a row, which llama.cpp takes from libm's
//! `expf` (every model here has a multiple of 4).

use super::kernels::q8::BlockQ8K;
use super::kernels::scalar::{f16_at, scale_min_k4};
use half::f16;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static ON: AtomicBool = AtomicBool::new(false);

/// Makes the CPU backend compute as llama.cpp's portable build does (see the module's
/// comment); read at every operation.
pub fn use_llama_cpp_numerics(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    ON.load(Ordering::Relaxed) || *ENV.get_or_init(|| std::env::var_os("CANDLELIT_LLAMA_CPP_NUMERICS").is_some())
}

/// ggml's `ggml_v_expf`, the SSE2 form without FMA (every product rounded before its sum),
/// one lane: the exponentials of its softmax and SiLU.
pub fn v_expf(x: f32) -> f32 {
    let c = |bits: u32| f32::from_bits(bits);
    let r = c(0x4b40_0000);
    let z = x * c(0x3fb8_aa3b) + r;
    let n = z - r;
    let b = x - n * c(0x3f31_7200);
    let b = b - n * c(0x35bf_be8e);
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let p = (c(0x3c07_2010) * b + c(0x3d2b_9f17)) * u + (c(0x3e2a_af33) * b + c(0x3eff_fedb));
    let j = p * u + c(0x3f7f_fff6) * b;
    if n.abs() <= 126.0 {
        return j * k + k;
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        (s2 * j + s2) * s1
    }
}

/// `g = silu(g) · u` as `ggml_vec_swiglu_f32` (each value by itself, so any split of the
/// rows gives the same bits).
pub fn swiglu(g: &mut [f32], u: &[f32]) {
    for (g, u) in g.iter_mut().zip(u) {
        let x = *g;
        *g = x / (1.0 + v_expf(0.0 - x)) * u;
    }
}

/// `g = gelu(g) · u` as `ggml_vec_geglu_f32`: GELU looked up by the f16 of its input in a
/// table of f16 results (ggml's `GGML_GELU_FP16`), computed with libm's `tanhf`.
pub fn geglu(g: &mut [f32], u: &[f32]) {
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let x = f16::from_bits(bits).to_f32();
                let inner = 0.797_884_6_f32 * x * (1.0 + 0.044715_f32 * x * x);
                f16::from_f32(0.5 * x * (1.0 + inner.tanh()))
            })
            .collect()
    });
    for (g, u) in g.iter_mut().zip(u) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[f16::from_f32(x).to_bits() as usize].to_f32() * u
        };
    }
}

/// RMSNorm as ggml's: the squares summed in double.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let sum: f64 = row.iter().map(|v| (v * v) as f64).sum();
        let mean = (sum / row.len() as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, w) in row.iter_mut().zip(w) {
            *v = *v * scale * w;
        }
    }
}

/// How llama.cpp derives a layer's rotary angles: θ starts at the position and is multiplied
/// by `theta_scale` from one pair to the next (so θ_i is not position · theta_scale^i to the
/// bit); pair i turns by `freq_scale · θ_i / factors[i]`.
#[derive(Clone, Debug)]
pub struct AngleRecurrence {
    pub theta_scale: f32,
    pub freq_scale: f32,
    pub factors: Option<Vec<f32>>,
}

impl AngleRecurrence {
    /// (cos, sin) of every pair at `pos`.
    pub fn cos_sin(&self, pos: usize, pairs: usize, out: &mut Vec<(f32, f32)>) {
        out.clear();
        let mut theta = pos as f32;
        for i in 0..pairs {
            let ff = self.factors.as_ref().map_or(1.0, |f| f[i]);
            let angle = self.freq_scale * (theta / ff);
            out.push((angle.cos(), angle.sin()));
            theta *= self.theta_scale;
        }
    }
}

/// One query head's attention as llama.cpp's non-flash path: `K·q` with q rounded to f16 and
/// the products summed in double, the softmax's exponentials by [`v_expf`] summed four at a
/// time (positions counted from 0: llama.cpp's vectors) into a double, weights scaled by the
/// rounded reciprocal of that sum and rounded to f16, `V·w` summed in double.
#[allow(clippy::too_many_arguments)]
pub fn attend_head<'a>(
    q: &[f32],
    first: usize,
    last: usize,
    key: impl Fn(usize) -> &'a [f16],
    value: impl Fn(usize) -> &'a [f16],
    scale: f32,
    softcap: Option<f32>,
    o: &mut [f32],
) {
    let qh: Vec<f32> = q.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    // Masked positions (before `first`, or padding after `last`) weigh exactly 0.
    let len = (last + 1).next_multiple_of(4);
    let mut w = vec![0f32; len];
    let mut max = f32::NEG_INFINITY;
    for (p, s) in w.iter_mut().enumerate().take(last + 1).skip(first) {
        let dot: f64 = qh.iter().zip(key(p)).map(|(a, b)| (a * b.to_f32()) as f64).sum();
        let mut d = dot as f32 * scale;
        if let Some(c) = softcap {
            d = (d * (1.0 / c)).tanh() * c;
        }
        *s = d;
        max = max.max(d);
    }
    let mut sum = 0f64;
    for (i, four) in w.chunks_exact_mut(4).enumerate() {
        for (j, s) in four.iter_mut().enumerate() {
            let p = 4 * i + j;
            *s = if p >= first && p <= last { v_expf(*s - max) } else { 0.0 };
        }
        sum += ((four[0] + four[1]) + (four[2] + four[3])) as f64;
    }
    let inv = (1.0 / sum) as f32;
    let wh: Vec<f32> = w[first..=last]
        .iter()
        .map(|&x| f16::from_f32(x * inv).to_f32())
        .collect();
    for (d, o) in o.iter_mut().enumerate() {
        let acc: f64 = wh
            .iter()
            .enumerate()
            .map(|(i, &a)| (a * value(first + i)[d].to_f32()) as f64)
            .sum();
        *o = acc as f32;
    }
}

/// ggml's `ggml_vec_dot_f32` without SIMD: F32 weights times f32 activations, summed in
/// double.
pub fn dot_f32(row: &[u8], act: &[f32]) -> f32 {
    let sum: f64 = row
        .chunks_exact(4)
        .zip(act)
        .map(|(w, a)| (f32::from_le_bytes([w[0], w[1], w[2], w[3]]) * a) as f64)
        .sum();
    sum as f32
}

/// ggml's `quantize_row_q8_K_ref`: the scale maps the largest-magnitude value to -127 and the
/// codes are rounded half to even.
pub fn quantize_q8k(x: &[f32], out: &mut Vec<BlockQ8K>) {
    super::kernels::q8::quantize_q8k_by(x, out, -127.0, f32::round_ties_even)
}

/// Unpacks one super-block into its values and scales; returns d, dmin, how many values share
/// a scale and Σ bsums · minimums.
type Decode = fn(&[u8], &BlockQ8K, &mut [i8; 256], &mut [i32; 16]) -> (f32, f32, i32, i32);

/// ggml's reference k-quant dot product: integer sums in eight lanes (value i in lane i % 8)
/// scaled per block into eight f32 sums, the minimums' part in one more, added up last.
fn lanes_dot(row: &[u8], act: &[BlockQ8K], block: usize, decode: Decode) -> f32 {
    let (mut sums, mut sumf) = ([0f32; 8], 0f32);
    let (mut vals, mut scales) = ([0i8; 256], [0i32; 16]);
    for (w, a) in row.chunks_exact(block).zip(act) {
        let (d, dmin, per_scale, summ) = decode(w, a, &mut vals, &mut scales);
        let mut aux = [0i32; 8];
        for (i, (&v, &q)) in vals.iter().zip(&a.qs).enumerate() {
            aux[i % 8] += scales[i / per_scale as usize] * (v as i32 * q as i32);
        }
        let d = d * a.d;
        for (s, &x) in sums.iter_mut().zip(&aux) {
            *s += d * x as f32;
        }
        sumf -= dmin * a.d * summ as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

fn decode_q4_5_k<const FIFTH_BIT: bool>(
    w: &[u8],
    a: &BlockQ8K,
    vals: &mut [i8; 256],
    scales: &mut [i32; 16],
) -> (f32, f32, i32, i32) {
    let (block, qs_at) = if FIFTH_BIT { (176, 48) } else { (144, 16) };
    let qs = &w[qs_at..block];
    let mut summ = 0;
    for c in 0..4 {
        for h in 0..2 {
            let (sc, m) = scale_min_k4(2 * c + h, &w[4..16]);
            scales[2 * c + h] = sc as i32;
            summ += m as i32 * (a.bsums[4 * c + 2 * h] + a.bsums[4 * c + 2 * h + 1]) as i32;
            for l in 0..32 {
                let nib = if h == 0 {
                    qs[32 * c + l] & 0x0F
                } else {
                    qs[32 * c + l] >> 4
                };
                let fifth = if FIFTH_BIT {
                    ((w[16 + l] >> (2 * c + h)) & 1) << 4
                } else {
                    0
                };
                vals[64 * c + 32 * h + l] = (nib | fifth) as i8;
            }
        }
    }
    (f16_at(w, 0), f16_at(w, 2), 32, summ)
}

pub fn dot_q4_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    lanes_dot(row, act, 144, decode_q4_5_k::<false>)
}

pub fn dot_q5_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    lanes_dot(row, act, 176, decode_q4_5_k::<true>)
}

pub fn dot_q6_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    lanes_dot(row, act, 210, decode_q6_k)
}

fn decode_q6_k(w: &[u8], _: &BlockQ8K, vals: &mut [i8; 256], scales: &mut [i32; 16]) -> (f32, f32, i32, i32) {
    for n in 0..2 {
        let ql = &w[64 * n..64 * n + 64];
        let qh = &w[128 + 32 * n..128 + 32 * n + 32];
        for l in 0..32 {
            let v = &mut vals[128 * n..128 * n + 128];
            v[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            v[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            v[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            v[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    for (s, &b) in scales.iter_mut().zip(&w[192..208]) {
        *s = b as i8 as i32;
    }
    (f16_at(w, 208), 0.0, 16, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_exp_within_two_ulp_and_flushes_like_ggml() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = v_expf(x) as f64;
            let ulp = f32::EPSILON as f64 * want;
            assert!((got - want).abs() <= 2.0 * ulp, "exp({x}) = {got}, want {want}");
            x += 0.013;
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(100.0), f32::INFINITY);
    }

    #[test]
    fn q8k_maps_the_largest_magnitude_to_127_and_rounds_half_to_even() {
        let mut x = [0f32; 256];
        x[..6].copy_from_slice(&[-127.0, 2.5, 3.5, -2.5, 0.5, 126.0]);
        let mut out = vec![];
        quantize_q8k(&x, &mut out);
        // iscale = -127 / -127 = 1: codes are the values, ties to even.
        assert_eq!(&out[0].qs[..6], &[-127, 2, 4, -2, 0, 126]);
        assert_eq!(out[0].d, 1.0);
        x[0] = 127.0;
        quantize_q8k(&x, &mut out);
        assert_eq!(&out[0].qs[..6], &[-127, -2, -4, 2, 0, -126]);
        assert_eq!(out[0].bsums[0], -127 - 2 - 4 + 2 - 126);
    }
}
