//! wasm SIMD128 versions of the scalar kernels (same signatures, same formulas): 16 lanes of
//! i8 products widened to i16 and summed pairwise into i32, scaled per block in f32.
//! Written for this project because candle has no SIMD path for Q4_1/Q5_0/Q5_1 on wasm
//! (87% of run time on SmolLM2) and its others dequantize more than they need to.

use super::q8::{BlockQ8, BlockQ8K};
use super::scalar::{f16_at, scale_min_k4};
use core::arch::wasm32::*;

#[inline(always)]
fn load(b: &[u8], at: usize) -> v128 {
    assert!(at + 16 <= b.len());
    // SAFETY: bounds checked above; wasm loads need no alignment.
    unsafe { v128_load(b.as_ptr().add(at) as *const v128) }
}

#[inline(always)]
fn load_i8(b: &[i8], at: usize) -> v128 {
    assert!(at + 16 <= b.len());
    // SAFETY: as above.
    unsafe { v128_load(b.as_ptr().add(at) as *const v128) }
}

/// Σ a[i]·b[i] over 16 signed bytes, as four i32 partial sums. |a·b| ≤ 128·127 fits i16.
#[inline(always)]
fn dot16(a: v128, b: v128) -> v128 {
    i32x4_add(
        i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(a, b)),
        i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(a, b)),
    )
}

#[inline(always)]
fn hsum_f32(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v)
}

#[inline(always)]
fn scaled(acc: v128, sumi: v128, scale: f32) -> v128 {
    f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(sumi), f32x4_splat(scale)))
}

pub fn dot_q4_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let (mask, eight) = (u8x16_splat(0x0F), i8x16_splat(8));
    for (w, a) in row.chunks_exact(18).zip(act) {
        let q = load(w, 2);
        let lo = i8x16_sub(v128_and(q, mask), eight);
        let hi = i8x16_sub(u8x16_shr(q, 4), eight);
        let s = i32x4_add(dot16(lo, load_i8(&a.qs, 0)), dot16(hi, load_i8(&a.qs, 16)));
        acc = scaled(acc, s, f16_at(w, 0) * a.d);
    }
    hsum_f32(acc)
}

pub fn dot_q4_1(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let mut mins = 0f32;
    let mask = u8x16_splat(0x0F);
    for (w, a) in row.chunks_exact(20).zip(act) {
        let q = load(w, 4);
        let s = i32x4_add(
            dot16(v128_and(q, mask), load_i8(&a.qs, 0)),
            dot16(u8x16_shr(q, 4), load_i8(&a.qs, 16)),
        );
        acc = scaled(acc, s, f16_at(w, 0) * a.d);
        mins += f16_at(w, 2) * a.s;
    }
    hsum_f32(acc) + mins
}

/// Spreads the bits of a byte over 8 bytes (bit i → byte i = 0x10), for the fifth bit of Q5.
const fn bit_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut v = 0u64;
        let mut i = 0;
        while i < 8 {
            if b & (1 << i) != 0 {
                v |= 0x10 << (8 * i);
            }
            i += 1;
        }
        t[b] = v;
        b += 1;
    }
    t
}
static BITS: [u64; 256] = bit_table();

#[inline(always)]
fn high_bits(qh: u32) -> (v128, v128) {
    let t = |i: u32| BITS[((qh >> (8 * i)) & 0xFF) as usize];
    (u64x2(t(0), t(1)), u64x2(t(2), t(3)))
}

pub fn dot_q5_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let (mask, sixteen) = (u8x16_splat(0x0F), i8x16_splat(16));
    for (w, a) in row.chunks_exact(22).zip(act) {
        let (h0, h1) = high_bits(u32::from_le_bytes([w[2], w[3], w[4], w[5]]));
        let q = load(w, 6);
        let lo = i8x16_sub(v128_or(v128_and(q, mask), h0), sixteen);
        let hi = i8x16_sub(v128_or(u8x16_shr(q, 4), h1), sixteen);
        let s = i32x4_add(dot16(lo, load_i8(&a.qs, 0)), dot16(hi, load_i8(&a.qs, 16)));
        acc = scaled(acc, s, f16_at(w, 0) * a.d);
    }
    hsum_f32(acc)
}

pub fn dot_q5_1(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let mut mins = 0f32;
    let mask = u8x16_splat(0x0F);
    for (w, a) in row.chunks_exact(24).zip(act) {
        let (h0, h1) = high_bits(u32::from_le_bytes([w[4], w[5], w[6], w[7]]));
        let q = load(w, 8);
        let lo = v128_or(v128_and(q, mask), h0);
        let hi = v128_or(u8x16_shr(q, 4), h1);
        let s = i32x4_add(dot16(lo, load_i8(&a.qs, 0)), dot16(hi, load_i8(&a.qs, 16)));
        acc = scaled(acc, s, f16_at(w, 0) * a.d);
        mins += f16_at(w, 2) * a.s;
    }
    hsum_f32(acc) + mins
}

pub fn dot_q8_0(row: &[u8], act: &[BlockQ8]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (w, a) in row.chunks_exact(34).zip(act) {
        let s = i32x4_add(
            dot16(load(w, 2), load_i8(&a.qs, 0)),
            dot16(load(w, 18), load_i8(&a.qs, 16)),
        );
        acc = scaled(acc, s, f16_at(w, 0) * a.d);
    }
    hsum_f32(acc)
}

pub fn dot_q4_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    dot_k_scale_min::<false>(row, act)
}

pub fn dot_q5_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    dot_k_scale_min::<true>(row, act)
}

/// Q4_K and Q5_K (see the scalar version): Q5_K ORs a fifth bit from its `qh` bytes in.
#[inline(always)]
fn dot_k_scale_min<const FIFTH_BIT: bool>(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let (block, qs_at) = if FIFTH_BIT { (176, 48) } else { (144, 16) };
    let mut sum = 0f32;
    let (mask, one, zero) = (u8x16_splat(0x0F), u8x16_splat(1), u8x16_splat(0));
    for (w, a) in row.chunks_exact(block).zip(act) {
        let scales = &w[4..16];
        let (h0, h1) = if FIFTH_BIT {
            (load(w, 16), load(w, 32))
        } else {
            (zero, zero)
        };
        let mut acc = i32x4_splat(0);
        let mut summ = 0i32;
        for c in 0..4 {
            let (sc_lo, m_lo) = scale_min_k4(2 * c, scales);
            let (sc_hi, m_hi) = scale_min_k4(2 * c + 1, scales);
            let (q0, q1) = (load(w, qs_at + 32 * c), load(w, qs_at + 16 + 32 * c));
            // The fifth bit of each value: bit 2c (low nibbles) or 2c + 1 (high nibbles) of qh.
            let bit = |h: v128, s: u32| {
                if FIFTH_BIT {
                    i8x16_shl(v128_and(u8x16_shr(h, s), one), 4)
                } else {
                    zero
                }
            };
            let s = 2 * c as u32;
            let base = 64 * c;
            let lo = i32x4_add(
                dot16(v128_or(v128_and(q0, mask), bit(h0, s)), load_i8(&a.qs, base)),
                dot16(v128_or(v128_and(q1, mask), bit(h1, s)), load_i8(&a.qs, base + 16)),
            );
            let hi = i32x4_add(
                dot16(v128_or(u8x16_shr(q0, 4), bit(h0, s + 1)), load_i8(&a.qs, base + 32)),
                dot16(v128_or(u8x16_shr(q1, 4), bit(h1, s + 1)), load_i8(&a.qs, base + 48)),
            );
            acc = i32x4_add(
                acc,
                i32x4_add(
                    i32x4_mul(lo, i32x4_splat(sc_lo as i32)),
                    i32x4_mul(hi, i32x4_splat(sc_hi as i32)),
                ),
            );
            let b = &a.bsums;
            summ += m_lo as i32 * (b[4 * c] + b[4 * c + 1]) as i32 + m_hi as i32 * (b[4 * c + 2] + b[4 * c + 3]) as i32;
        }
        sum += a.d * (f16_at(w, 0) * hsum_i32(acc) as f32 - f16_at(w, 2) * summ as f32);
    }
    sum
}

pub fn dot_q6_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    let (mask, three, bias) = (u8x16_splat(0x0F), u8x16_splat(3), i8x16_splat(32));
    for (w, a) in row.chunks_exact(210).zip(act) {
        let mut acc = i32x4_splat(0);
        for n in 0..2 {
            let (ql, qh, sc) = (64 * n, 128 + 32 * n, 192 + 8 * n);
            for g in 0..2 {
                let l0 = 16 * g;
                let (qa, qb, h) = (load(w, ql + l0), load(w, ql + 32 + l0), load(w, qh + l0));
                let bits = |shift: u32| i8x16_shl(v128_and(u8x16_shr(h, shift), three), 4);
                let q1 = i8x16_sub(v128_or(v128_and(qa, mask), bits(0)), bias);
                let q2 = i8x16_sub(v128_or(v128_and(qb, mask), bits(2)), bias);
                let q3 = i8x16_sub(v128_or(u8x16_shr(qa, 4), bits(4)), bias);
                let q4 = i8x16_sub(v128_or(u8x16_shr(qb, 4), bits(6)), bias);
                let aq = 128 * n + l0;
                let s = |k: usize| i32x4_splat(w[sc + g + k] as i8 as i32);
                acc = i32x4_add(acc, i32x4_mul(dot16(q1, load_i8(&a.qs, aq)), s(0)));
                acc = i32x4_add(acc, i32x4_mul(dot16(q2, load_i8(&a.qs, aq + 32)), s(2)));
                acc = i32x4_add(acc, i32x4_mul(dot16(q3, load_i8(&a.qs, aq + 64)), s(4)));
                acc = i32x4_add(acc, i32x4_mul(dot16(q4, load_i8(&a.qs, aq + 96)), s(6)));
            }
        }
        sum += a.d * f16_at(w, 208) * hsum_i32(acc) as f32;
    }
    sum
}

pub fn dot_q3_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    let (three, four, zero) = (u8x16_splat(3), i8x16_splat(4), i8x16_splat(0));
    for (w, a) in row.chunks_exact(110).zip(act) {
        let scales = super::scalar::q3_k_scales(&w[96..108]);
        let hm = [load(w, 0), load(w, 16)];
        let mut acc = i32x4_splat(0);
        for n in 0..2 {
            let q = [load(w, 32 + 32 * n), load(w, 48 + 32 * n)];
            for j in 0..4 {
                let bit = u8x16_splat(1 << (4 * n + j));
                for (h, (&qh, &mh)) in q.iter().zip(&hm).enumerate() {
                    let v = v128_and(u8x16_shr(qh, 2 * j as u32), three);
                    // Values whose high bit is clear are 4 lower.
                    let clear = i8x16_eq(v128_and(mh, bit), zero);
                    let v = i8x16_sub(v, v128_and(clear, four));
                    let part = dot16(v, load_i8(&a.qs, 128 * n + 32 * j + 16 * h));
                    acc = i32x4_add(acc, i32x4_mul(part, i32x4_splat(scales[8 * n + 2 * j + h] as i32)));
                }
            }
        }
        sum += a.d * f16_at(w, 108) * hsum_i32(acc) as f32;
    }
    sum
}

pub fn dot_q2_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    let three = u8x16_splat(3);
    for (w, a) in row.chunks_exact(84).zip(act) {
        let scales = &w[0..16];
        let mut acc = i32x4_splat(0);
        let mut summ = 0i32;
        for n in 0..2 {
            let q = [load(w, 16 + 32 * n), load(w, 32 + 32 * n)];
            for j in 0..4 {
                for (h, &qh) in q.iter().enumerate() {
                    let g = 8 * n + 2 * j + h;
                    let v = v128_and(u8x16_shr(qh, 2 * j as u32), three);
                    let part = dot16(v, load_i8(&a.qs, 128 * n + 32 * j + 16 * h));
                    acc = i32x4_add(acc, i32x4_mul(part, i32x4_splat((scales[g] & 0x0F) as i32)));
                    summ += (scales[g] >> 4) as i32 * a.bsums[g] as i32;
                }
            }
        }
        sum += a.d * (f16_at(w, 80) * hsum_i32(acc) as f32 - f16_at(w, 82) * summ as f32);
    }
    sum
}

/// Eight f16 values (one v128) to two f32x4. The exponent is rebased by a multiply, which
/// also turns f16 subnormals into the right f32 values; inf/NaN (never in weights) are not kept.
#[inline(always)]
fn f16x8_to_f32(h: v128) -> (v128, v128) {
    let magic = f32x4_splat(f32::from_bits(0x7780_0000)); // 2^112
    let widen = |v: v128| {
        let sign = i32x4_shl(v128_and(v, u32x4_splat(0x8000)), 16);
        let body = f32x4_mul(i32x4_shl(v128_and(v, u32x4_splat(0x7FFF)), 13), magic);
        v128_or(body, sign)
    };
    (widen(u32x4_extend_low_u16x8(h)), widen(u32x4_extend_high_u16x8(h)))
}

#[inline(always)]
fn load_f32(a: &[f32], at: usize) -> v128 {
    assert!(at + 4 <= a.len());
    // SAFETY: bounds checked above.
    unsafe { v128_load(a.as_ptr().add(at) as *const v128) }
}

fn dot_half(row: &[u8], act: &[f32], widen: impl Fn(v128) -> (v128, v128), one: impl Fn(&[u8]) -> f32) -> f32 {
    let n = act.len().min(row.len() / 2);
    let mut acc = [f32x4_splat(0.0), f32x4_splat(0.0)];
    let mut i = 0;
    while i + 8 <= n {
        let (lo, hi) = widen(load(row, 2 * i));
        acc[0] = f32x4_add(acc[0], f32x4_mul(lo, load_f32(act, i)));
        acc[1] = f32x4_add(acc[1], f32x4_mul(hi, load_f32(act, i + 4)));
        i += 8;
    }
    let mut sum = hsum_f32(f32x4_add(acc[0], acc[1]));
    while i < n {
        sum += one(&row[2 * i..2 * i + 2]) * act[i];
        i += 1;
    }
    sum
}

pub fn dot_f16(row: &[u8], act: &[f32]) -> f32 {
    dot_half(row, act, f16x8_to_f32, |b| f16_at(b, 0))
}

pub fn dot_bf16(row: &[u8], act: &[f32]) -> f32 {
    let widen = |h: v128| {
        (
            i32x4_shl(u32x4_extend_low_u16x8(h), 16),
            i32x4_shl(u32x4_extend_high_u16x8(h), 16),
        )
    };
    dot_half(row, act, widen, |b| {
        f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
    })
}
