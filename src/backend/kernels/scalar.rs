//! Scalar reference kernels: one weight row (raw GGUF blocks) · quantized activations.
//! They follow ggml's reference `vec_dot` formulas and are the oracle for the SIMD kernels.

// Indexed loops on purpose: they read like the ggml reference formulas they mirror.
#![allow(clippy::needless_range_loop)]

use super::q8::{BlockQ8, BlockQ8K};

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The exact integer sum Σ value·activation of one 32-value block, per block type.
fn sumi_q4_0(w: &[u8], a: &BlockQ8) -> i32 {
    let qs = &w[2..18];
    (0..16)
        .map(|j| ((qs[j] & 0x0F) as i32 - 8) * a.qs[j] as i32 + ((qs[j] >> 4) as i32 - 8) * a.qs[j + 16] as i32)
        .sum()
}

fn sumi_q4_1(w: &[u8], a: &BlockQ8) -> i32 {
    let qs = &w[4..20];
    (0..16)
        .map(|j| (qs[j] & 0x0F) as i32 * a.qs[j] as i32 + (qs[j] >> 4) as i32 * a.qs[j + 16] as i32)
        .sum()
}

fn q5_values(qh: u32, qs: &[u8], j: usize) -> (i32, i32) {
    let lo = (qs[j] & 0x0F) as i32 | ((((qh >> j) & 1) as i32) << 4);
    let hi = (qs[j] >> 4) as i32 | ((((qh >> (j + 16)) & 1) as i32) << 4);
    (lo, hi)
}

fn sumi_q5<const OFF: i32, const AT: usize>(w: &[u8], a: &BlockQ8) -> i32 {
    let qh = u32::from_le_bytes([w[AT], w[AT + 1], w[AT + 2], w[AT + 3]]);
    let qs = &w[AT + 4..AT + 20];
    (0..16)
        .map(|j| {
            let (lo, hi) = q5_values(qh, qs, j);
            (lo - OFF) * a.qs[j] as i32 + (hi - OFF) * a.qs[j + 16] as i32
        })
        .sum()
}

fn sumi_q8_0(w: &[u8], a: &BlockQ8) -> i32 {
    w[2..34]
        .iter()
        .zip(&a.qs)
        .map(|(&q, &x)| q as i8 as i32 * x as i32)
        .sum()
}

/// ggml's reference form: one running f32 sum over the blocks.
#[inline(always)]
fn dot_blocks(row: &[u8], act: &[BlockQ8], bytes: usize, has_min: bool, sumi: impl Fn(&[u8], &BlockQ8) -> i32) -> f32 {
    let mut sum = 0f32;
    for (w, a) in row.chunks_exact(bytes).zip(act) {
        let min = if has_min { f16_at(w, 2) * a.s } else { 0.0 };
        sum += f16_at(w, 0) * a.d * sumi(w, a) as f32 + min;
    }
    sum
}

pub fn dot_q4_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    dot_blocks(row, act, 18, false, sumi_q4_0)
}

pub fn dot_q4_1(row: &[u8], act: &[BlockQ8]) -> f32 {
    dot_blocks(row, act, 20, true, sumi_q4_1)
}

pub fn dot_q5_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    dot_blocks(row, act, 22, false, sumi_q5::<16, 2>)
}

pub fn dot_q5_1(row: &[u8], act: &[BlockQ8]) -> f32 {
    dot_blocks(row, act, 24, true, sumi_q5::<0, 4>)
}

pub fn dot_q8_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    dot_blocks(row, act, 34, false, sumi_q8_0)
}

/// The constants of [`exp`], shared with the SIMD kernels' `exp4` (same bits need the same
/// constants): the input range, ln 2 split in two for an exact reduction, and the
/// polynomial's coefficients, highest degree first.
pub(crate) const EXP_RANGE: (f32, f32) = (-87.33, 88.37);
pub(crate) const LN2_HI_LO: (f32, f32) = (0.693_359_4, -2.121_944_4e-4);
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];
/// GELU's tanh approximation: tanh(√(2/π) · (x + 0.044715 x³)).
pub(crate) const GELU_SCALE: f32 = 0.797_884_6;
pub(crate) const GELU_CUBE: f32 = 0.044715;

/// e^x by the same steps as the SIMD kernels' `exp4` (Cephes' `expf`), so that softmax
/// weights are the same bits natively and in the browser; within 2 ulp for x ≤ 0.
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_RANGE.0, EXP_RANGE.1);
    let n = (x * core::f32::consts::LOG2_E + 0.5).floor();
    let r = (x - n * LN2_HI_LO.0) - n * LN2_HI_LO.1;
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits((((n as i32) + 127) << 23) as u32)
}

/// SiLU with [`exp`]: the browser's vector form gives the same bits.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// GELU (tanh approximation) with tanh(t) = 1 − 2 / (e^2t + 1) by [`exp`], as the browser
/// computes it four at a time (its libm `tanhf` took a tenth of Gemma 3's prefill there).
/// Only 1 + tanh is used, so the formula's loss of relative precision near 0 does not show.
pub fn gelu_by_exp(x: f32) -> f32 {
    let t = GELU_SCALE * (x + GELU_CUBE * x * x * x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * t) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// tanh with [`exp`], as `sign(x) · (1 − e) / (1 + e)`, e = e^−2|x| (no overflow): the soft-caps
/// use it so that native builds, the browser and the GPU give the same bits (the platforms'
/// `tanh` differ). Near 0 its error is absolute (about 1e-7), not relative: a soft-cap
/// multiplies it by the cap, a few millionths of a logit.
pub fn tanh(x: f32) -> f32 {
    let e = exp(-2.0 * x.abs());
    let t = (1.0 - e) / (1.0 + e);
    if x < 0.0 {
        -t
    } else {
        t
    }
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K super-block.
#[inline]
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

pub fn dot_q4_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    dot_k_scale_min::<false>(row, act)
}

pub fn dot_q5_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    dot_k_scale_min::<true>(row, act)
}

/// Q4_K and Q5_K share their layout (d, dmin, 12 bytes of 6-bit scales and minimums, 4-bit
/// values); Q5_K adds 32 bytes of fifth bits before the values.
#[inline(always)]
fn dot_k_scale_min<const FIFTH_BIT: bool>(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let (block, qs_at) = if FIFTH_BIT { (176, 48) } else { (144, 16) };
    let mut sum = 0f32;
    for (w, a) in row.chunks_exact(block).zip(act) {
        let (d, dmin) = (f16_at(w, 0), f16_at(w, 2));
        let scales = &w[4..16];
        let qh = &w[16..48.min(block)];
        let qs = &w[qs_at..block];
        let (mut sumi, mut summ) = (0i32, 0i32);
        for c in 0..4 {
            let q = &qs[32 * c..32 * c + 32];
            let (sc_lo, m_lo) = scale_min_k4(2 * c, scales);
            let (sc_hi, m_hi) = scale_min_k4(2 * c + 1, scales);
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                let (h_lo, h_hi) = if FIFTH_BIT {
                    (((qh[l] >> (2 * c)) & 1) << 4, ((qh[l] >> (2 * c + 1)) & 1) << 4)
                } else {
                    (0, 0)
                };
                lo += ((q[l] & 0x0F) | h_lo) as i32 * a.qs[64 * c + l] as i32;
                hi += ((q[l] >> 4) | h_hi) as i32 * a.qs[64 * c + 32 + l] as i32;
            }
            sumi += sc_lo as i32 * lo + sc_hi as i32 * hi;
            let b = &a.bsums;
            summ += m_lo as i32 * (b[4 * c] + b[4 * c + 1]) as i32 + m_hi as i32 * (b[4 * c + 2] + b[4 * c + 3]) as i32;
        }
        sum += a.d * (d * sumi as f32 - dmin * summ as f32);
    }
    sum
}

pub fn dot_q6_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in row.chunks_exact(210).zip(act) {
        let d = f16_at(w, 208);
        let mut total = 0i32;
        for n in 0..2 {
            let ql = &w[64 * n..64 * n + 64];
            let qh = &w[128 + 32 * n..128 + 32 * n + 32];
            let sc = &w[192 + 8 * n..192 + 8 * n + 8];
            let aq = &a.qs[128 * n..128 * n + 128];
            let mut part = [0i32; 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                part[is] += q1 * aq[l] as i32;
                part[is + 2] += q2 * aq[l + 32] as i32;
                part[is + 4] += q3 * aq[l + 64] as i32;
                part[is + 6] += q4 * aq[l + 96] as i32;
            }
            for (p, &s) in part.iter().zip(sc) {
                total += p * s as i8 as i32;
            }
        }
        sum += a.d * d * total as f32;
    }
    sum
}

/// The sixteen 6-bit scales of a Q3_K super-block, unpacked from its 12 bytes (minus 32).
#[inline]
pub(crate) fn q3_k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

pub fn dot_q3_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in row.chunks_exact(110).zip(act) {
        let hmask = &w[0..32];
        let qs = &w[32..96];
        let scales = q3_k_scales(&w[96..108]);
        let d = f16_at(w, 108);
        let mut total = 0i32;
        for n in 0..2 {
            let q = &qs[32 * n..32 * n + 32];
            for j in 0..4 {
                let shift = 2 * j;
                let bit = 1u8 << (4 * n + j);
                for h in 0..2 {
                    let g = 8 * n + 2 * j + h;
                    let mut part = 0i32;
                    for l in 16 * h..16 * h + 16 {
                        let v = ((q[l] >> shift) & 3) as i32 - if hmask[l] & bit != 0 { 0 } else { 4 };
                        part += v * a.qs[128 * n + 32 * j + l] as i32;
                    }
                    total += scales[g] as i32 * part;
                }
            }
        }
        sum += a.d * d * total as f32;
    }
    sum
}

pub fn dot_q2_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in row.chunks_exact(84).zip(act) {
        let scales = &w[0..16];
        let qs = &w[16..80];
        let (d, dmin) = (f16_at(w, 80), f16_at(w, 82));
        let (mut sumi, mut summ) = (0i32, 0i32);
        for n in 0..2 {
            let q = &qs[32 * n..32 * n + 32];
            for j in 0..4 {
                for h in 0..2 {
                    let g = 8 * n + 2 * j + h;
                    let mut part = 0i32;
                    for l in 16 * h..16 * h + 16 {
                        part += ((q[l] >> (2 * j)) & 3) as i32 * a.qs[128 * n + 32 * j + l] as i32;
                    }
                    sumi += (scales[g] & 0x0F) as i32 * part;
                    summ += (scales[g] >> 4) as i32 * a.bsums[g] as i32;
                }
            }
        }
        sum += a.d * (d * sumi as f32 - dmin * summ as f32);
    }
    sum
}

/// F16 weights · f32 activations (no activation quantization: f16 keeps 11 bits, more than
/// a Q8 activation block would).
pub fn dot_f16(row: &[u8], act: &[f32]) -> f32 {
    dot_16bit(row, act, f16_bits_to_f32)
}

pub fn dot_bf16(row: &[u8], act: &[f32]) -> f32 {
    dot_16bit(row, act, |b| f32::from_bits((b as u32) << 16))
}

/// Eight independent partial sums: a single running f32 sum is a dependency chain the
/// compiler may not reorder, eight lanes let it use SIMD registers natively.
#[inline(always)]
fn dot_16bit(row: &[u8], act: &[f32], widen: impl Fn(u16) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let (w8, a8) = (row.chunks_exact(16), act.chunks_exact(8));
    let (w_rest, a_rest) = (w8.remainder(), a8.remainder());
    for (w, a) in w8.zip(a8) {
        for l in 0..8 {
            acc[l] += widen(u16::from_le_bytes([w[2 * l], w[2 * l + 1]])) * a[l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (w, a) in w_rest.chunks_exact(2).zip(a_rest) {
        sum += widen(u16::from_le_bytes([w[0], w[1]])) * a;
    }
    sum
}

/// Branch-free f16 → f32 (exact for every finite value, subnormals included; inf/NaN are
/// not kept, and weights and scales have none): the compiler vectorises it, where `half`'s
/// software conversion (wasm, x86 without F16C) made native F16 decode 4× slower than BF16
/// and took 17% of SmolLM2's decode time in block scales alone. The exponent is rebased by
/// an integer addition and subnormals are 2^-14 · (1.m) − 2^-14, so no subnormal f32 is an
/// operand on the way (x86 takes a microcode assist for each: Gemma 3's Q6_K scales are
/// almost all f16 subnormals).
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let body = (h & 0x7FFF) << 13;
    let normal = f32::from_bits(body + (112 << 23));
    let subnormal = f32::from_bits(body + (113 << 23)) - f32::from_bits(113 << 23);
    let v = if body < 1 << 23 { subnormal } else { normal };
    f32::from_bits(v.to_bits() | ((h & 0x8000) << 16))
}

#[cfg(test)]
mod f16_tests {
    #[test]
    fn branch_free_f16_conversion_is_exact_for_finite_values() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            if want.is_finite() {
                assert_eq!(super::f16_bits_to_f32(bits).to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }
}
