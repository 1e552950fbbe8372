//! wasm SIMD128 versions of the scalar kernels (same signatures, same formulas): 16 lanes of
//! i8 products summed into i32 (widening multiplies, or relaxed SIMD's dot products where the
//! build enables `relaxed-simd`, with the same integers in the same lanes), scaled per block.
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
#[cfg(not(target_feature = "relaxed-simd"))]
#[inline(always)]
fn dot16(a: v128, b: v128) -> v128 {
    i32x4_add(
        i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(a, b)),
        i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(a, b)),
    )
}

/// Relaxed SIMD's pair sums (`pmaddubsw` on x86: i16 lane k = bytes 2k and 2k+1) as
/// `dot16`'s lanes: lane j = pairs j and j + 4.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn pairs_to_lanes(p: v128) -> v128 {
    i32x4_add(i32x4_extend_low_i16x8(p), i32x4_extend_high_i16x8(p))
}

/// Σ (w[i] − OFF)·a[i] over 16 bytes as four i32 partial sums laid out as `dot16`'s, for the
/// unsigned codes (0..=127) every quantization but Q8_0 stores. Both builds put the same
/// integers in the same lanes, so the kernels that scale each lane in f32 round alike and
/// both builds give the same text. Relaxed SIMD forms the pair sums in one instruction
/// (`i16x8.relaxed_dot_i8x16_i7x16_s`) instead of two widening multiplies and two pairwise
/// adds; exact, because the codes never set the top bit and a pair is at most 2·128·63.
#[inline(always)]
fn dot_codes<const OFF: i8>(w: v128, a: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let p = i16x8_relaxed_dot_i8x16_i7x16(a, w);
        if OFF == 0 {
            pairs_to_lanes(p)
        } else {
            pairs_to_lanes(i16x8_sub(p, i16x8_relaxed_dot_i8x16_i7x16(a, i8x16_splat(OFF))))
        }
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        dot16(if OFF == 0 { w } else { i8x16_sub(w, i8x16_splat(OFF)) }, a)
    }
}

/// `dot_codes` for the k-quants, which add their lanes as integers before any rounding, so
/// the lanes may split the sum any way: with relaxed SIMD, one
/// `i32x4.relaxed_dot_i8x16_i7x16_add` (x86: `vpdpbusd`) per 16 bytes.
#[inline(always)]
fn sum_codes<const OFF: i8>(w: v128, a: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let zero = i32x4_splat(0);
        let d = i32x4_relaxed_dot_i8x16_i7x16_add(a, w, zero);
        if OFF == 0 {
            d
        } else {
            i32x4_sub(d, i32x4_relaxed_dot_i8x16_i7x16_add(a, i8x16_splat(OFF), zero))
        }
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        dot16(if OFF == 0 { w } else { i8x16_sub(w, i8x16_splat(OFF)) }, a)
    }
}

/// Σ w[i]·a[i] over 16 bytes of signed weights (Q8_0), in `dot16`'s lanes. The relaxed form
/// moves each weight's sign onto its activation, as llama.cpp's x86 kernels do, so that the
/// weight operand is |w| ≤ 127 (a file holding −128 gets an implementation-defined sum,
/// never a trap).
#[inline(always)]
fn dot_signed(w: v128, a: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let signed_a = i8x16_relaxed_laneselect(i8x16_neg(a), a, i8x16_lt(w, i8x16_splat(0)));
        pairs_to_lanes(i16x8_relaxed_dot_i8x16_i7x16(signed_a, i8x16_abs(w)))
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        dot16(w, a)
    }
}

#[inline(always)]
fn hsum_f32(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v)
}

/// One 32-value block's codes (values 0..16 and 16..32), scale and minimum, times N
/// activation rows. Prefill passes four rows, so each block is unpacked once for all four;
/// each row's sums are formed exactly as with one row, so results do not depend on N.
#[inline(always)]
fn dot_blocks32<const N: usize>(
    row: &[u8],
    act: [&[BlockQ8]; N],
    block_bytes: usize,
    has_min: bool,
    unpack: impl Fn(&[u8]) -> (v128, v128, f32, f32),
    dot: impl Fn(v128, v128) -> v128,
) -> [f32; N] {
    let mut acc = [f32x4_splat(0.0); N];
    let mut mins = [0f32; N];
    for (i, w) in row.chunks_exact(block_bytes).enumerate() {
        let (lo, hi, d, m) = unpack(w);
        for n in 0..N {
            let a = &act[n][i];
            let s = i32x4_add(dot(lo, load_i8(&a.qs, 0)), dot(hi, load_i8(&a.qs, 16)));
            acc[n] = f32x4_add(acc[n], f32x4_mul(f32x4_convert_i32x4(s), f32x4_splat(d * a.d)));
            if has_min {
                mins[n] += m * a.s;
            }
        }
    }
    core::array::from_fn(|n| {
        if has_min {
            hsum_f32(acc[n]) + mins[n]
        } else {
            hsum_f32(acc[n])
        }
    })
}

/// The kernel for one activation row (decode) and for four (prefill) from one generic body.
macro_rules! one_and_four {
    ($one:ident, $four:ident, $rows:ident, $act:ty) => {
        pub fn $one(row: &[u8], act: &[$act]) -> f32 {
            $rows::<1>(row, [act])[0]
        }
        pub fn $four(row: &[u8], act: [&[$act]; 4]) -> [f32; 4] {
            $rows::<4>(row, act)
        }
    };
}

one_and_four!(dot_q4_0, dot_q4_0_x4, q4_0_rows, BlockQ8);
one_and_four!(dot_q4_1, dot_q4_1_x4, q4_1_rows, BlockQ8);
one_and_four!(dot_q5_0, dot_q5_0_x4, q5_0_rows, BlockQ8);
one_and_four!(dot_q5_1, dot_q5_1_x4, q5_1_rows, BlockQ8);
one_and_four!(dot_q8_0, dot_q8_0_x4, q8_0_rows, BlockQ8);
one_and_four!(dot_q4_k, dot_q4_k_x4, q4_k_rows, BlockQ8K);
one_and_four!(dot_q5_k, dot_q5_k_x4, q5_k_rows, BlockQ8K);
one_and_four!(dot_q6_k, dot_q6_k_x4, q6_k_rows, BlockQ8K);

#[inline(always)]
fn nibbles(q: v128) -> (v128, v128) {
    (v128_and(q, u8x16_splat(0x0F)), u8x16_shr(q, 4))
}

#[inline(always)]
fn q4_0_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    let unpack = |w: &[u8]| {
        let (lo, hi) = nibbles(load(w, 2));
        (lo, hi, f16_at(w, 0), 0.0)
    };
    dot_blocks32(row, act, 18, false, unpack, dot_codes::<8>)
}

#[inline(always)]
fn q4_1_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    let unpack = |w: &[u8]| {
        let (lo, hi) = nibbles(load(w, 4));
        (lo, hi, f16_at(w, 0), f16_at(w, 2))
    };
    dot_blocks32(row, act, 20, true, unpack, dot_codes::<0>)
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

/// Q5_0 and Q5_1: nibbles plus a fifth bit from `qh`; Q5_1 has a minimum.
#[inline(always)]
fn q5_unpack(w: &[u8], has_min: bool) -> (v128, v128, f32, f32) {
    let at = if has_min { 4 } else { 2 };
    let (h0, h1) = high_bits(u32::from_le_bytes([w[at], w[at + 1], w[at + 2], w[at + 3]]));
    let (lo, hi) = nibbles(load(w, at + 4));
    let m = if has_min { f16_at(w, 2) } else { 0.0 };
    (v128_or(lo, h0), v128_or(hi, h1), f16_at(w, 0), m)
}

#[inline(always)]
fn q5_0_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot_blocks32(row, act, 22, false, |w| q5_unpack(w, false), dot_codes::<16>)
}

#[inline(always)]
fn q5_1_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot_blocks32(row, act, 24, true, |w| q5_unpack(w, true), dot_codes::<0>)
}

#[inline(always)]
fn q8_0_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot_blocks32(
        row,
        act,
        34,
        false,
        |w| (load(w, 2), load(w, 18), f16_at(w, 0), 0.0),
        dot_signed,
    )
}

#[inline(always)]
fn q4_k_rows<const N: usize>(row: &[u8], act: [&[BlockQ8K]; N]) -> [f32; N] {
    k_scale_min_rows::<false, N>(row, act)
}

#[inline(always)]
fn q5_k_rows<const N: usize>(row: &[u8], act: [&[BlockQ8K]; N]) -> [f32; N] {
    k_scale_min_rows::<true, N>(row, act)
}

/// Q4_K and Q5_K (see the scalar version): Q5_K ORs a fifth bit from its `qh` bytes in.
#[inline(always)]
fn k_scale_min_rows<const FIFTH_BIT: bool, const N: usize>(row: &[u8], act: [&[BlockQ8K]; N]) -> [f32; N] {
    let (block, qs_at) = if FIFTH_BIT { (176, 48) } else { (144, 16) };
    let mut sum = [0f32; N];
    let (one, zero) = (u8x16_splat(1), u8x16_splat(0));
    for (i, w) in row.chunks_exact(block).enumerate() {
        let scales = &w[4..16];
        let (h0, h1) = if FIFTH_BIT {
            (load(w, 16), load(w, 32))
        } else {
            (zero, zero)
        };
        let mut acc = [i32x4_splat(0); N];
        let mut summ = [0i32; N];
        for c in 0..4 {
            let (sc_lo, m_lo) = scale_min_k4(2 * c, scales);
            let (sc_hi, m_hi) = scale_min_k4(2 * c + 1, scales);
            let ((l0, u0), (l1, u1)) = (nibbles(load(w, qs_at + 32 * c)), nibbles(load(w, qs_at + 16 + 32 * c)));
            // The fifth bit of each value: bit 2c (low nibbles) or 2c + 1 (high nibbles) of qh.
            let bit = |h: v128, s: u32| {
                if FIFTH_BIT {
                    i8x16_shl(v128_and(u8x16_shr(h, s), one), 4)
                } else {
                    zero
                }
            };
            let s = 2 * c as u32;
            let codes = [
                v128_or(l0, bit(h0, s)),
                v128_or(l1, bit(h1, s)),
                v128_or(u0, bit(h0, s + 1)),
                v128_or(u1, bit(h1, s + 1)),
            ];
            let base = 64 * c;
            for n in 0..N {
                let a = &act[n][i];
                let lo = i32x4_add(
                    sum_codes::<0>(codes[0], load_i8(&a.qs, base)),
                    sum_codes::<0>(codes[1], load_i8(&a.qs, base + 16)),
                );
                let hi = i32x4_add(
                    sum_codes::<0>(codes[2], load_i8(&a.qs, base + 32)),
                    sum_codes::<0>(codes[3], load_i8(&a.qs, base + 48)),
                );
                acc[n] = i32x4_add(
                    acc[n],
                    i32x4_add(
                        i32x4_mul(lo, i32x4_splat(sc_lo as i32)),
                        i32x4_mul(hi, i32x4_splat(sc_hi as i32)),
                    ),
                );
                let b = &a.bsums;
                summ[n] +=
                    m_lo as i32 * (b[4 * c] + b[4 * c + 1]) as i32 + m_hi as i32 * (b[4 * c + 2] + b[4 * c + 3]) as i32;
            }
        }
        let (d, dmin) = (f16_at(w, 0), f16_at(w, 2));
        for n in 0..N {
            sum[n] += act[n][i].d * (d * hsum_i32(acc[n]) as f32 - dmin * summ[n] as f32);
        }
    }
    sum
}

#[inline(always)]
fn q6_k_rows<const N: usize>(row: &[u8], act: [&[BlockQ8K]; N]) -> [f32; N] {
    let mut sum = [0f32; N];
    let three = u8x16_splat(3);
    for (i, w) in row.chunks_exact(210).enumerate() {
        let mut acc = [i32x4_splat(0); N];
        for half in 0..2 {
            let (ql, qh, sc) = (64 * half, 128 + 32 * half, 192 + 8 * half);
            for g in 0..2 {
                let l0 = 16 * g;
                let ((a_lo, a_hi), (b_lo, b_hi)) = (nibbles(load(w, ql + l0)), nibbles(load(w, ql + 32 + l0)));
                let h = load(w, qh + l0);
                let bits = |shift: u32| i8x16_shl(v128_and(u8x16_shr(h, shift), three), 4);
                let codes = [
                    v128_or(a_lo, bits(0)),
                    v128_or(b_lo, bits(2)),
                    v128_or(a_hi, bits(4)),
                    v128_or(b_hi, bits(6)),
                ];
                let aq = 128 * half + l0;
                for n in 0..N {
                    let a = &act[n][i];
                    for (k, &code) in codes.iter().enumerate() {
                        let scale = i32x4_splat(w[sc + g + 2 * k] as i8 as i32);
                        let part = sum_codes::<32>(code, load_i8(&a.qs, aq + 32 * k));
                        acc[n] = i32x4_add(acc[n], i32x4_mul(part, scale));
                    }
                }
            }
        }
        let d = f16_at(w, 208);
        for n in 0..N {
            sum[n] += act[n][i].d * d * hsum_i32(acc[n]) as f32;
        }
    }
    sum
}

pub fn dot_q3_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    let (three, four) = (u8x16_splat(3), u8x16_splat(4));
    for (w, a) in row.chunks_exact(110).zip(act) {
        let scales = super::scalar::q3_k_scales(&w[96..108]);
        let hm = [load(w, 0), load(w, 16)];
        let mut acc = i32x4_splat(0);
        for n in 0..2 {
            let q = [load(w, 32 + 32 * n), load(w, 48 + 32 * n)];
            for j in 0..4 {
                let bit = u8x16_splat(1 << (4 * n + j));
                for (h, (&qh, &mh)) in q.iter().zip(&hm).enumerate() {
                    // Two low bits, plus 4 where the high bit is set; the value is that minus 4.
                    let low = v128_and(u8x16_shr(qh, 2 * j as u32), three);
                    let high = v128_and(u8x16_ne(v128_and(mh, bit), u8x16_splat(0)), four);
                    let part = sum_codes::<4>(v128_or(low, high), load_i8(&a.qs, 128 * n + 32 * j + 16 * h));
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
                    let part = sum_codes::<0>(v, load_i8(&a.qs, 128 * n + 32 * j + 16 * h));
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
