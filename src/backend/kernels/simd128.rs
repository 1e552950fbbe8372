//! wasm SIMD128 versions of the scalar kernels (same signatures, same results bit for bit):
//! 16 lanes of i8 products summed into exact i32 block sums (widening multiplies, or relaxed
//! SIMD's dot products where the build enables `relaxed-simd`), scaled per block and added
//! in the scalar kernels' order.
//! Written for this project because candle has no SIMD path for Q4_1/Q5_0/Q5_1 on wasm
//! (87% of run time on SmolLM2) and its others dequantize more than they need to.

use super::q8::{BlockQ8, BlockQ8K};
use super::scalar::{f16_at, scale_min_k4, EXP_POLY, EXP_RANGE, GELU_CUBE, GELU_SCALE, LN2_HI_LO};
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

/// Each lane plus the four products of its four bytes, `a` signed and `w` in 0..=127: the
/// quads' dot product. Relaxed SIMD has it as one instruction; the SIMD128 build forms the
/// same sums from widened products and two shuffles (exact: every product and sum fits).
/// Either way a block's integer sum is the same, so both builds give the same bits.
#[inline(always)]
fn dot_quads(a: v128, w: v128, acc: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i32x4_relaxed_dot_i8x16_i7x16_add(a, w, acc)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let l = i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(a, w));
        let h = i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(a, w));
        i32x4_add(
            acc,
            i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(l, h), i32x4_shuffle::<1, 3, 5, 7>(l, h)),
        )
    }
}

/// Σ (w[i] − OFF)·a[i] over a 32-value block (codes `lo`, `hi`) as four i32 partial sums,
/// for the unsigned codes (0..=31) every quantization but Q8_0 stores. The lanes may split the
/// sum any way (the caller adds them as integers): with relaxed SIMD, one
/// `i32x4.relaxed_dot_i8x16_i7x16_add` per 16 bytes (x86: `vpdpbusd` or `pmaddubsw` +
/// `pmaddwd`), exact because the codes never set the top bit, and the offset comes off once
/// per block as `OFF·Σa` (`sum` is `Σa`) instead of once per byte.
#[inline(always)]
fn block_codes<const OFF: i32>(lo: v128, hi: v128, a: &BlockQ8) -> v128 {
    const { assert!(OFF % 4 == 0) };
    #[cfg(target_feature = "relaxed-simd")]
    {
        let start = i32x4_splat(-(OFF / 4) * a.sum);
        i32x4_relaxed_dot_i8x16_i7x16_add(
            load_i8(&a.qs, 16),
            hi,
            i32x4_relaxed_dot_i8x16_i7x16_add(load_i8(&a.qs, 0), lo, start),
        )
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let off = i8x16_splat(OFF as i8);
        i32x4_add(
            dot16(i8x16_sub(lo, off), load_i8(&a.qs, 0)),
            dot16(i8x16_sub(hi, off), load_i8(&a.qs, 16)),
        )
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

/// Σ w[i]·a[i] over a block of 32 signed weights (Q8_0) as four i32 partial sums, any lanes.
/// Relaxed SIMD's dot product wants its second operand in 0..=127. Where this machine's
/// relaxed dot product is found to multiply bytes 128..=255 as unsigned without saturating
/// (x86 with VNNI: `vpdpbusd`), the weights are biased to `w + 128` (one xor) and `128·Σa`
/// comes off once per block; elsewhere (ARM's signed `sdot`, x86's saturating `pmaddubsw`)
/// each weight's sign moves onto its activation, as llama.cpp's x86 kernels do, so that the
/// weight operand is |w| ≤ 127. Either way the integer sum is exact (a file holding −128
/// gets an implementation-defined sum, never a trap).
#[inline(always)]
fn block_signed<const UNSIGNED: bool>(lo: v128, hi: v128, a: &BlockQ8) -> v128 {
    let (a_lo, a_hi) = (load_i8(&a.qs, 0), load_i8(&a.qs, 16));
    #[cfg(target_feature = "relaxed-simd")]
    {
        if UNSIGNED {
            let bias = u8x16_splat(0x80);
            let start = i32x4_splat(-32 * a.sum);
            i32x4_relaxed_dot_i8x16_i7x16_add(
                a_hi,
                v128_xor(hi, bias),
                i32x4_relaxed_dot_i8x16_i7x16_add(a_lo, v128_xor(lo, bias), start),
            )
        } else {
            let signed = |w: v128, a: v128| i8x16_relaxed_laneselect(i8x16_neg(a), a, i8x16_lt(w, i8x16_splat(0)));
            i32x4_relaxed_dot_i8x16_i7x16_add(
                signed(hi, a_hi),
                i8x16_abs(hi),
                i32x4_relaxed_dot_i8x16_i7x16_add(signed(lo, a_lo), i8x16_abs(lo), i32x4_splat(0)),
            )
        }
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        i32x4_add(dot16(lo, a_lo), dot16(hi, a_hi))
    }
}

/// Whether `i32x4.relaxed_dot_i8x16_i7x16_add` multiplies second-operand bytes 128..=255 as
/// unsigned values without saturating here (the relaxed SIMD spec leaves it to the machine;
/// the answer is fixed for a machine, so it is asked once).
#[cfg(target_feature = "relaxed-simd")]
pub fn unsigned_dot_exact() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
    static ANSWER: AtomicU8 = AtomicU8::new(0);
    match ANSWER.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let w = core::hint::black_box(u8x16_splat(0xFF));
            let exact = [127i8, -127].iter().all(|&x| {
                let a = core::hint::black_box(i8x16_splat(x));
                let d = i32x4_relaxed_dot_i8x16_i7x16_add(a, w, i32x4_splat(1));
                let want = 1 + 4 * 255 * x as i32;
                i32x4_all_true(i32x4_eq(d, i32x4_splat(want)))
            });
            ANSWER.store(if exact { 1 } else { 2 }, Relaxed);
            exact
        }
    }
}

#[cfg(not(target_feature = "relaxed-simd"))]
pub fn unsigned_dot_exact() -> bool {
    false
}

#[inline(always)]
fn hsum_f32(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v)
}

/// Four blocks' integer sums into one vector: lane k = block k's whole sum.
#[inline(always)]
fn block_totals(s: [v128; 4]) -> v128 {
    let pairs = |a: v128, b: v128| i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
    let (t01, t23) = (pairs(s[0], s[1]), pairs(s[2], s[3]));
    i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(t01, t23),
        i32x4_shuffle::<2, 3, 6, 7>(t01, t23),
    )
}

/// The scales of four blocks `block_bytes` apart (f16 at each block's start) as f32x4.
#[inline(always)]
fn scales4(w: &[u8], at: usize, block_bytes: usize) -> v128 {
    let h = |j: usize| u16::from_le_bytes([w[at + j * block_bytes], w[at + j * block_bytes + 1]]) as u32;
    f16x4_to_f32(u32x4(h(0), h(1), h(2), h(3)))
}

struct Group<'a, const N: usize, U, S> {
    act: [&'a [BlockQ8]; N],
    block_bytes: usize,
    has_min: bool,
    unpack: &'a U,
    sums: &'a S,
}

impl<const N: usize, U, S> Group<'_, N, U, S>
where
    U: Fn(&[u8]) -> (v128, v128),
    S: Fn(v128, v128, &BlockQ8) -> v128,
{
    /// Four blocks (`w`, from block `first` of the row) times the N activation rows.
    #[inline(always)]
    fn add(&self, w: &[u8], first: usize, sum: &mut [f32; N]) {
        let bb = self.block_bytes;
        let b = |j: usize| &w[j * bb..(j + 1) * bb];
        let codes = [
            (self.unpack)(b(0)),
            (self.unpack)(b(1)),
            (self.unpack)(b(2)),
            (self.unpack)(b(3)),
        ];
        let dw = scales4(w, 0, bb);
        for (act, sum) in self.act.iter().zip(sum.iter_mut()) {
            let a = |j: usize| act.get(first + j).unwrap_or(&BlockQ8::ZERO);
            let s = block_totals([
                (self.sums)(codes[0].0, codes[0].1, a(0)),
                (self.sums)(codes[1].0, codes[1].1, a(1)),
                (self.sums)(codes[2].0, codes[2].1, a(2)),
                (self.sums)(codes[3].0, codes[3].1, a(3)),
            ]);
            let da = load_f32(&a(0).d4, 0);
            let mut t = f32x4_mul(f32x4_convert_i32x4(s), f32x4_mul(dw, da));
            if self.has_min {
                t = f32x4_add(t, f32x4_mul(scales4(w, 2, bb), load_f32(&a(0).s4, 0)));
            }
            // One running sum over the blocks in order, as the scalar reference adds them.
            *sum += f32x4_extract_lane::<0>(t);
            *sum += f32x4_extract_lane::<1>(t);
            *sum += f32x4_extract_lane::<2>(t);
            *sum += f32x4_extract_lane::<3>(t);
        }
    }
}

/// The 32-value block types, four blocks at a time: each block's integer sum is exact however
/// its lanes split it, so the four sums are gathered into one vector (lane k = block k),
/// scaled there, and added to one running sum in block order, exactly as the scalar
/// reference adds them: the SIMD128, relaxed and native builds give the same bits (adding
/// four lanes of partial sums instead was 8% faster on Gemma's output matrix but moved
/// the logits, at a near-tie, away from llama.cpp's). A row's last blocks (fewer than four)
/// are padded with zero blocks. Prefill passes four rows, so each block is unpacked once
/// for all four; each row's sums are formed exactly as with one row.
#[inline(always)]
fn dot_blocks32<const N: usize>(
    row: &[u8],
    act: [&[BlockQ8]; N],
    block_bytes: usize,
    has_min: bool,
    unpack: impl Fn(&[u8]) -> (v128, v128),
    sums: impl Fn(v128, v128, &BlockQ8) -> v128,
) -> [f32; N] {
    let mut sum = [0f32; N];
    let blocks = row.len() / block_bytes;
    let full = blocks / 4 * 4;
    let group = Group {
        act,
        block_bytes,
        has_min,
        unpack: &unpack,
        sums: &sums,
    };
    for (g, w) in row[..full * block_bytes].chunks_exact(4 * block_bytes).enumerate() {
        group.add(w, 4 * g, &mut sum);
    }
    if full < blocks {
        let mut padded = [0u8; 4 * 34];
        let tail = &row[full * block_bytes..];
        padded[..tail.len()].copy_from_slice(tail);
        group.add(&padded[..4 * block_bytes], full, &mut sum);
    }
    sum
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
        (lo, hi)
    };
    dot_blocks32(row, act, 18, false, unpack, block_codes::<8>)
}

#[inline(always)]
fn q4_1_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    let unpack = |w: &[u8]| {
        let (lo, hi) = nibbles(load(w, 4));
        (lo, hi)
    };
    dot_blocks32(row, act, 20, true, unpack, block_codes::<0>)
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
fn q5_unpack(w: &[u8], has_min: bool) -> (v128, v128) {
    let at = if has_min { 4 } else { 2 };
    let (h0, h1) = high_bits(u32::from_le_bytes([w[at], w[at + 1], w[at + 2], w[at + 3]]));
    let (lo, hi) = nibbles(load(w, at + 4));
    (v128_or(lo, h0), v128_or(hi, h1))
}

#[inline(always)]
fn q5_0_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot_blocks32(row, act, 22, false, |w| q5_unpack(w, false), block_codes::<16>)
}

#[inline(always)]
fn q5_1_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot_blocks32(row, act, 24, true, |w| q5_unpack(w, true), block_codes::<0>)
}

#[inline(always)]
fn q8_0_rows<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    let unpack = |w: &[u8]| (load(w, 2), load(w, 18));
    if unsigned_dot_exact() {
        dot_blocks32(row, act, 34, false, unpack, block_signed::<true>)
    } else {
        dot_blocks32(row, act, 34, false, unpack, block_signed::<false>)
    }
}

/// Q8_0 with each weight's sign moved onto its activation, whatever this machine's relaxed
/// dot product does with bytes 128..=255: the kernel machines without VNNI run, tested
/// wherever the tests run.
pub fn dot_q8_0_sign_moved(row: &[u8], act: &[BlockQ8]) -> f32 {
    dot_blocks32(
        row,
        [act],
        34,
        false,
        |w: &[u8]| (load(w, 2), load(w, 18)),
        block_signed::<false>,
    )[0]
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
                        let part = sum_codes::<0>(code, load_i8(&a.qs, aq + 32 * k));
                        acc[n] = i32x4_add(acc[n], i32x4_mul(part, scale));
                    }
                }
            }
        }
        // The codes are the values + 32: take 32 · Σ scale · (sum of the 16 activations) off
        // once per block, from the activation block's sums, instead of once per 16 values.
        let scales = load(w, 192);
        let (s_lo, s_hi) = (i16x8_extend_low_i8x16(scales), i16x8_extend_high_i8x16(scales));
        let d = f16_at(w, 208);
        for n in 0..N {
            let a = &act[n][i];
            // SAFETY: `bsums` is 16 i16 (32 bytes); wasm loads need no alignment.
            let (b_lo, b_hi) = unsafe {
                let p = a.bsums.as_ptr() as *const v128;
                (v128_load(p), v128_load(p.add(1)))
            };
            let offset = i32x4_add(i32x4_dot_i16x8(s_lo, b_lo), i32x4_dot_i16x8(s_hi, b_hi));
            let total = hsum_i32(acc[n]) - 32 * hsum_i32(offset);
            sum[n] += a.d * d * total as f32;
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

/// f16 magnitudes (`(h & 0x7FFF) << 13` in i32 lanes) as f32, exactly: the exponent rebased
/// by an integer addition, and subnormals (exponent 0) as 2^-14 · (1.m) − 2^-14, so that no
/// subnormal f32 is ever an operand. Rebasing by a multiply with 2^112 made the subnormals
/// f32 subnormals on the way, each a microcode assist on x86: Gemma 3's Q6_K `ffn_down`
/// scales are almost all f16 subnormals, and that product ran 3x slower than its Q4_K twin.
/// inf/NaN (never in weights) are not kept.
#[inline(always)]
fn f16_body_to_f32(body: v128) -> v128 {
    let normal = i32x4_add(body, i32x4_splat(112 << 23));
    let lifted = i32x4_add(body, i32x4_splat(113 << 23));
    let subnormal = f32x4_sub(lifted, f32x4_splat(f32::from_bits(113 << 23)));
    v128_bitselect(subnormal, normal, i32x4_lt(body, i32x4_splat(1 << 23)))
}

/// Eight f16 values (one v128) to two f32x4, exactly (see `f16_body_to_f32`): for 16-bit
/// float weights, where values below 2^-14 are common.
#[inline(always)]
fn f16x8_to_f32(h: v128) -> (v128, v128) {
    // Sign-extended, each value's sign is bit 31 and its body lands in bits 13..28 shifted.
    let widen = |x: v128| {
        let body = v128_and(i32x4_shl(x, 13), u32x4_splat(0x0FFF_E000));
        v128_or(f16_body_to_f32(body), v128_and(x, u32x4_splat(0x8000_0000)))
    };
    (widen(i32x4_extend_low_i16x8(h)), widen(i32x4_extend_high_i16x8(h)))
}

/// [`f16x8_to_f32`] by a multiply with 2^112, which passes f16 subnormals through f32
/// subnormals (exact, but a microcode assist each on x86). For the KV cache, whose values
/// are activations, below 2^-14 about once in 20000, and for the packed groups' scales:
/// there the exact form cost 4–10% of each product, and a test per group for subnormal
/// scales cost more than it saved (Gemma 3's 32-value types have none; its Q6_K scales,
/// mostly subnormal, are read by `f16_at`, which is exact).
#[inline(always)]
fn f16x8_to_f32_by_multiply(h: v128) -> (v128, v128) {
    // Sign-extending each value puts its sign in bit 31 and copies of it in bits 28..=30,
    // where the f32 exponent lands; clearing those leaves sign and body.
    let magic = f32x4_splat(f32::from_bits(0x7780_0000)); // 2^112
    let widen = |x: v128| f32x4_mul(v128_and(i32x4_shl(x, 13), u32x4_splat(0x8FFF_E000)), magic);
    (widen(i32x4_extend_low_i16x8(h)), widen(i32x4_extend_high_i16x8(h)))
}

/// Four f16 scales (in the low halves of u32 lanes) to f32x4, by the multiply of
/// [`f16x8_to_f32_by_multiply`].
#[inline(always)]
fn f16x4_to_f32(v: v128) -> v128 {
    let magic = f32x4_splat(f32::from_bits(0x7780_0000)); // 2^112
    let sign = i32x4_shl(v128_and(v, u32x4_splat(0x8000)), 16);
    let body = f32x4_mul(i32x4_shl(v128_and(v, u32x4_splat(0x7FFF)), 13), magic);
    v128_or(body, sign)
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

/// Eight f16 values of the KV cache at `at` as two f32x4.
#[inline(always)]
fn load_f16x8(h: &[half::f16], at: usize) -> (v128, v128) {
    assert!(at + 8 <= h.len());
    // SAFETY: bounds checked above; f16 is two bytes, wasm loads need no alignment.
    f16x8_to_f32_by_multiply(unsafe { v128_load(h.as_ptr().add(at) as *const v128) })
}

/// Lane j of result k = lane k of input j.
#[inline(always)]
fn transpose4(r: [v128; 4]) -> [v128; 4] {
    let (ab_lo, ab_hi) = (
        i32x4_shuffle::<0, 4, 1, 5>(r[0], r[1]),
        i32x4_shuffle::<2, 6, 3, 7>(r[0], r[1]),
    );
    let (cd_lo, cd_hi) = (
        i32x4_shuffle::<0, 4, 1, 5>(r[2], r[3]),
        i32x4_shuffle::<2, 6, 3, 7>(r[2], r[3]),
    );
    [
        i32x4_shuffle::<0, 1, 4, 5>(ab_lo, cd_lo),
        i32x4_shuffle::<2, 3, 6, 7>(ab_lo, cd_lo),
        i32x4_shuffle::<0, 1, 4, 5>(ab_hi, cd_hi),
        i32x4_shuffle::<2, 3, 6, 7>(ab_hi, cd_hi),
    ]
}

/// `q_j · key` for G queries and four f16 keys, each in one running sum in element order,
/// exactly as the scalar loop sums it: lane l of result j is query j's sum with key l
/// (`q_j.len()` a multiple of 8). The G queries share each widened, transposed key block.
#[inline(always)]
pub fn dot_keys4<const G: usize>(q: [&[f32]; G], keys: [&[half::f16]; 4]) -> [[f32; 4]; G] {
    let hd = q[0].len();
    assert!(q.iter().all(|q| q.len() == hd));
    let mut acc = [f32x4_splat(-0.0); G];
    for i in (0..hd).step_by(8) {
        let rows = keys.map(|k| load_f16x8(k, i));
        let lo = transpose4([rows[0].0, rows[1].0, rows[2].0, rows[3].0]);
        let hi = transpose4([rows[0].1, rows[1].1, rows[2].1, rows[3].1]);
        for (m, t) in lo.into_iter().chain(hi).enumerate() {
            for (acc, q) in acc.iter_mut().zip(q) {
                *acc = f32x4_add(*acc, f32x4_mul(f32x4_splat(q[i + m]), t));
            }
        }
    }
    acc.map(|a| {
        [
            f32x4_extract_lane::<0>(a),
            f32x4_extract_lane::<1>(a),
            f32x4_extract_lane::<2>(a),
            f32x4_extract_lane::<3>(a),
        ]
    })
}

/// `o_j += Σ w_j[i] · value(i)` for G heads (`o` holds them one after another) over f16
/// value rows, eight elements at a time, each summed in position order as the scalar loop
/// does (head size a multiple of 8). The G heads share each widened value block.
#[inline(always)]
pub fn add_weighted_rows<'a, const G: usize>(o: &mut [f32], w: [&[f32]; G], value: impl Fn(usize) -> &'a [half::f16]) {
    let hd = o.len() / G;
    let n = w[0].len();
    assert!(w.iter().all(|w| w.len() == n));
    for c in (0..hd).step_by(8) {
        let mut acc: [(v128, v128); G] =
            std::array::from_fn(|j| (load_f32(o, j * hd + c), load_f32(o, j * hd + c + 4)));
        for i in 0..n {
            let (vl, vh) = load_f16x8(value(i), c);
            for (acc, w) in acc.iter_mut().zip(w) {
                let wv = f32x4_splat(w[i]);
                acc.0 = f32x4_add(acc.0, f32x4_mul(wv, vl));
                acc.1 = f32x4_add(acc.1, f32x4_mul(wv, vh));
            }
        }
        for (j, acc) in acc.into_iter().enumerate() {
            store_f32(&mut o[j * hd + c..], acc.0);
            store_f32(&mut o[j * hd + c + 4..], acc.1);
        }
    }
}

/// e^x, four at a time (Cephes' `expf`: x = n·ln 2 + r, a degree-6 polynomial in r, times
/// 2^n); within 2 ulp of the true value over the range softmax uses (x ≤ 0).
#[inline(always)]
fn exp4(x: v128) -> v128 {
    let x = f32x4_max(f32x4_min(x, f32x4_splat(EXP_RANGE.1)), f32x4_splat(EXP_RANGE.0));
    let n = f32x4_floor(f32x4_add(
        f32x4_mul(x, f32x4_splat(core::f32::consts::LOG2_E)),
        f32x4_splat(0.5),
    ));
    let r = f32x4_sub(
        f32x4_sub(x, f32x4_mul(n, f32x4_splat(LN2_HI_LO.0))),
        f32x4_mul(n, f32x4_splat(LN2_HI_LO.1)),
    );
    let mut p = f32x4_splat(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = f32x4_add(f32x4_mul(p, r), f32x4_splat(c));
    }
    let y = f32x4_add(f32x4_add(f32x4_mul(p, f32x4_mul(r, r)), r), f32x4_splat(1.0));
    let pow2 = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127)), 23);
    f32x4_mul(y, pow2)
}

/// Values in 0..=1 rounded to the nearest f16 (ties to even), as f32: the mantissa is cut
/// to 10 bits, or for f16's subnormals (below 2^-14) to multiples of 2^-24 by adding and
/// taking off 0.75, whose f32 spacing is 2^-24.
#[inline(always)]
fn round_f16_unit(x: v128) -> v128 {
    let odd = v128_and(u32x4_shr(x, 13), u32x4_splat(1));
    let normal = v128_andnot(i32x4_add(i32x4_add(x, u32x4_splat(0xFFF)), odd), u32x4_splat(0x1FFF));
    let tiny = f32x4_sub(f32x4_add(x, f32x4_splat(0.75)), f32x4_splat(0.75));
    v128_bitselect(tiny, normal, f32x4_lt(x, f32x4_splat(6.103_515_6e-5)))
}

/// `g[i] = act(g[i]) · u[i]` for SiLU or GELU, four at a time, by the same steps as
/// `scalar::silu` and `scalar::gelu_by_exp` (which do the last few).
pub fn gate(g: &mut [f32], u: &[f32], gelu: bool) {
    let n = g.len().min(u.len());
    let (one, two, half) = (f32x4_splat(1.0), f32x4_splat(2.0), f32x4_splat(0.5));
    let mut i = 0;
    while i + 4 <= n {
        let x = load_f32(g, i);
        let a = if gelu {
            let cube = f32x4_mul(f32x4_mul(f32x4_mul(f32x4_splat(GELU_CUBE), x), x), x);
            let t = f32x4_mul(f32x4_splat(GELU_SCALE), f32x4_add(x, cube));
            let e = exp4(f32x4_mul(two, t));
            let tanh = f32x4_sub(one, f32x4_div(two, f32x4_add(e, one)));
            f32x4_mul(f32x4_mul(half, x), f32x4_add(one, tanh))
        } else {
            f32x4_div(x, f32x4_add(one, exp4(f32x4_neg(x))))
        };
        store_f32(&mut g[i..], f32x4_mul(a, load_f32(u, i)));
        i += 4;
    }
    for (g, u) in g[i..n].iter_mut().zip(&u[i..n]) {
        let a = if gelu {
            super::scalar::gelu_by_exp(*g)
        } else {
            super::scalar::silu(*g)
        };
        *g = a * u;
    }
}

/// `Σ e^(v − max)` over `x`, four lanes of partial sums.
pub fn sum_exp(x: &[f32], max: f32) -> f32 {
    let m = f32x4_splat(max);
    let mut acc = f32x4_splat(0.0);
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        acc = f32x4_add(acc, exp4(f32x4_sub(load_f32(c, 0), m)));
    }
    hsum_f32(acc)
        + chunks
            .remainder()
            .iter()
            .map(|v| super::scalar::exp(v - max))
            .sum::<f32>()
}

/// The largest value of `x`, NaNs skipped as `f32::max` skips them: four independent
/// chains of `f32x4.pmax` (`a < b ? b : a`, so a NaN in `x` never replaces the maximum).
pub fn max_value(x: &[f32]) -> f32 {
    let mut acc = [f32x4_splat(f32::NEG_INFINITY); 4];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = f32x4_pmax(*a, load_f32(c, 4 * k));
        }
    }
    let v = f32x4_pmax(f32x4_pmax(acc[0], acc[1]), f32x4_pmax(acc[2], acc[3]));
    [
        f32x4_extract_lane::<0>(v),
        f32x4_extract_lane::<1>(v),
        f32x4_extract_lane::<2>(v),
        f32x4_extract_lane::<3>(v),
    ]
    .into_iter()
    .chain(chunks.remainder().iter().copied())
    .fold(f32::NEG_INFINITY, f32::max)
}

/// The first index of `x` holding `value`, sixteen values compared at a time.
pub fn first_index_of(x: &[f32], value: f32) -> Option<usize> {
    let v = f32x4_splat(value);
    let mut chunks = x.chunks_exact(16);
    let mut at = 0;
    for c in &mut chunks {
        let hit = |k: usize| f32x4_eq(load_f32(c, 4 * k), v);
        if v128_any_true(v128_or(v128_or(hit(0), hit(1)), v128_or(hit(2), hit(3)))) {
            return c.iter().position(|&y| y == value).map(|i| at + i);
        }
        at += 16;
    }
    chunks.remainder().iter().position(|&y| y == value).map(|i| at + i)
}

/// Softmax of `scores` (their maximum given), each weight rounded to f16.
pub fn exp_normalize_f16(scores: &mut [f32], max: f32) {
    let m = f32x4_splat(max);
    map4(scores, |v| exp4(f32x4_sub(v, m)));
    // One running sum in order, as the scalar form adds them.
    let mut sum = 0f32;
    for &v in scores.iter() {
        sum += v;
    }
    let total = f32x4_splat(sum);
    map4(scores, |v| round_f16_unit(f32x4_div(v, total)));
}

/// `x[i] = f(x[i])`, four at a time; the last few go through `f` in a zero-padded vector.
#[inline(always)]
fn map4(x: &mut [f32], f: impl Fn(v128) -> v128) {
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        store_f32(c, f(load_f32(c, 0)));
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut t = [0f32; 4];
        t[..tail.len()].copy_from_slice(tail);
        let v = f(load_f32(&t, 0));
        store_f32(&mut t, v);
        tail.copy_from_slice(&t[..tail.len()]);
    }
}

#[inline(always)]
fn store_f32(a: &mut [f32], v: v128) {
    assert!(a.len() >= 4);
    // SAFETY: bounds checked above.
    unsafe { v128_store(a.as_mut_ptr() as *mut v128, v) }
}

/// Four 32-value blocks with their values interleaved four at a time (vector c holds values
/// 4c..4c+3 of block 0, then of blocks 1, 2, 3; c = 0..8), for prefill's products (both
/// builds) and the relaxed build's decode of packed rows: one [`dot_quads`] adds each block's
/// four values into that block's own lane, so the four block sums come out gathered (with
/// relaxed SIMD, with no shuffles at all). The SIMD128 build does not pack: its decode reads
/// the file's layout, where quads bought nothing without relaxed SIMD's dot product
/// (SmolLM2 decode 61 → 58 tok/s with packed quads; prefill 106 → 128).
/// Activations: `d` and `s` are the blocks' scales and scaled sums, `start` −off · their
/// exact sums (the weights' code offset taken off once per block, where the dot products
/// start); weights: `d` the scales, `s` the minimums (Q4_1, Q5_1), codes unsigned, `start` 0.
#[derive(Clone, Copy)]
pub struct Quad {
    qs: [v128; 8],
    d: v128,
    s: v128,
    start: v128,
}

/// Vectors `lo` (values 0..16) and `hi` (16..32) of four blocks, interleaved into a quad.
#[inline(always)]
fn interleave(lo: [v128; 4], hi: [v128; 4], d: v128, s: v128, start: v128) -> Quad {
    let (l, h) = (transpose4(lo), transpose4(hi));
    Quad {
        qs: [l[0], l[1], l[2], l[3], h[0], h[1], h[2], h[3]],
        d,
        s,
        start,
    }
}

/// An activation row (blocks from `quantize_q8`) as quads for weights of `kind`; the last is
/// padded with zero blocks.
pub fn quad_acts(row: &[BlockQ8], kind: QuadWeights, out: &mut Vec<Quad>) {
    for g in (0..row.len()).step_by(4) {
        let b = |j: usize| row.get(g + j).unwrap_or(&BlockQ8::ZERO);
        let lo = [0, 1, 2, 3].map(|j| load_i8(&b(j).qs, 0));
        let hi = [0, 1, 2, 3].map(|j| load_i8(&b(j).qs, 16));
        let start = i32x4_mul(i32x4(b(0).sum, b(1).sum, b(2).sum, b(3).sum), i32x4_splat(-kind.off));
        out.push(interleave(lo, hi, load_f32(&b(0).d4, 0), load_f32(&b(0).s4, 0), start));
    }
}

/// How a block type's weights become quads: block size, minimum or not, the offset taken off
/// every code, and the unpacking of one block into its 32 codes.
type Unpack = fn(&[u8]) -> (v128, v128);

#[derive(Clone, Copy)]
pub struct QuadWeights {
    pub block_bytes: usize,
    has_min: bool,
    off: i32,
    unpack: Unpack,
    /// A group of four blocks packed at load (see `packed`) as a quad.
    packed: fn(&[u8]) -> Quad,
    /// [`packed_rows`] for this block type.
    pub decode: Decode,
}

/// Packed weight rows times a few activation rows (see [`packed_rows`]).
pub type Decode = fn(QuadWeights, &[u8], usize, &[Quad], usize, &mut [f32]);

/// The block types prefill multiplies as quads (Q8_0 only where its weights can be biased to
/// unsigned codes, see [`block_signed`]; elsewhere its signs would move per activation row).
pub fn quad_weights(dtype: candle_core::quantized::GgmlDType) -> Option<QuadWeights> {
    use candle_core::quantized::GgmlDType as T;
    // One row per type: block bytes, minimum, fifth bits, Q8_0, the codes' offset, and the
    // unpacking of a block in the file's layout; the packed kernels take the same constants.
    macro_rules! kind {
        ($bb:expr, $min:literal, $fifth:literal, $q8:literal, $off:literal, $unpack:expr) => {
            (
                $bb,
                $min,
                $off,
                $unpack as Unpack,
                packed_quad::<$min, $fifth, $q8> as fn(&[u8]) -> Quad,
                packed_rows::<$min, $fifth, $q8> as Decode,
            )
        };
    }
    let (block_bytes, has_min, off, unpack, packed, decode) = match dtype {
        T::Q4_0 => kind!(18, false, false, false, 8, |w| nibbles(load(w, 2))),
        T::Q4_1 => kind!(20, true, false, false, 0, |w| nibbles(load(w, 4))),
        T::Q5_0 => kind!(22, false, true, false, 16, |w| q5_unpack(w, false)),
        T::Q5_1 => kind!(24, true, true, false, 0, |w| q5_unpack(w, true)),
        // Biased to unsigned codes, where the dot product takes them as unsigned.
        T::Q8_0 if unsigned_dot_exact() => kind!(34, false, false, true, 128, |w| {
            let bias = u8x16_splat(0x80);
            (v128_xor(load(w, 2), bias), v128_xor(load(w, 18), bias))
        }),
        _ => return None,
    };
    Some(QuadWeights {
        block_bytes,
        has_min,
        off,
        unpack,
        packed,
        decode,
    })
}

/// A group of four blocks packed at load (layout in `packed`) as a weight quad: the scales
/// (and minimums) in one load, the codes with no shuffles. Q8_0's codes come biased to
/// unsigned from the packing, as [`quad_weights`] biases them.
#[inline(always)]
fn packed_quad<const MIN: bool, const FIFTH: bool, const Q8: bool>(g: &[u8]) -> Quad {
    let (d, m) = f16x8_to_f32_by_multiply(load(g, 0));
    let qh_at = 8 + 8 * MIN as usize;
    let qs_at = qh_at + 16 * FIFTH as usize;
    let mut qs = [i32x4_splat(0); 8];
    if Q8 {
        // Stored biased to unsigned by the packing.
        for (v, q) in qs.iter_mut().enumerate() {
            *q = load(g, qs_at + 16 * v);
        }
    } else {
        // The fifth bits by table lookups: spreading them with a swizzle and a compare per
        // vector instead was 0.74x as fast in V8.
        for p in 0..4 {
            let (lo, hi) = nibbles(load(g, qs_at + 16 * p));
            (qs[p], qs[p + 4]) = if FIFTH {
                let at = qh_at + 4 * p;
                let (h0, h1) = high_bits(u32::from_le_bytes([g[at], g[at + 1], g[at + 2], g[at + 3]]));
                (v128_or(lo, h0), v128_or(hi, h1))
            } else {
                (lo, hi)
            };
        }
    }
    Quad {
        qs,
        d,
        s: if MIN { m } else { f32x4_splat(0.0) },
        start: i32x4_splat(0),
    }
}

/// One weight quad times one activation quad: the four blocks' scaled results (lane k =
/// block k), each formed exactly as the scalar reference forms it.
#[inline(always)]
fn quad_result<const MIN: bool>(w: &Quad, a: &Quad) -> v128 {
    // Two chains of dot products, which the integer sums may split any way.
    let mut acc = [a.start, i32x4_splat(0)];
    for c in 0..8 {
        acc[c % 2] = dot_quads(a.qs[c], w.qs[c], acc[c % 2]);
    }
    let t = f32x4_mul(f32x4_convert_i32x4(i32x4_add(acc[0], acc[1])), f32x4_mul(w.d, a.d));
    if MIN {
        f32x4_add(t, f32x4_mul(w.s, a.s))
    } else {
        t
    }
}

/// Packed weight rows (`w`: quartets of rows of `row_bytes`, see `packed`) times each
/// activation row of `acts` (`groups` quads a row), written as `res[weight row * rows +
/// activation row]`: the decode product. A quartet's four rows go together, their running
/// sums in the lanes of one vector: each group's four block results per row are transposed
/// so that one vector addition adds every row's next block, in block order as the scalar
/// reference does (lane m does exactly row m's additions). The left-over blocks' groups
/// already hold one block of each row per lane; they meet the activation's block repeated
/// in all four lanes.
fn packed_rows<const MIN: bool, const FIFTH: bool, const Q8: bool>(
    kind: QuadWeights,
    w: &[u8],
    row_bytes: usize,
    acts: &[Quad],
    groups: usize,
    res: &mut [f32],
) {
    let (bb, rows) = (kind.block_bytes, acts.len() / groups.max(1));
    let gb = 4 * bb;
    let (full, left) = (row_bytes / gb, row_bytes % gb / bb);
    if rows == 0 || full + (left > 0) as usize != groups {
        return;
    }
    let repeated: Vec<[Quad; 3]> = (0..rows)
        .map(|r| std::array::from_fn(|k| repeat_lane(&acts[(r + 1) * groups - 1], k)))
        .collect();
    let group = |quartet: &[u8], i: usize| packed_quad::<MIN, FIFTH, Q8>(&quartet[i * gb..(i + 1) * gb]);
    for (qi, quartet) in w.chunks_exact(4 * row_bytes).enumerate() {
        for (r, repeated) in repeated.iter().enumerate() {
            let a = &acts[r * groups..(r + 1) * groups];
            let mut sum = f32x4_splat(0.0);
            for (g, a) in a[..full].iter().enumerate() {
                let t = std::array::from_fn(|m| quad_result::<MIN>(&group(quartet, 4 * g + m), a));
                for block in transpose4(t) {
                    sum = f32x4_add(sum, block);
                }
            }
            for (k, a) in repeated.iter().enumerate().take(left) {
                sum = f32x4_add(sum, quad_result::<MIN>(&group(quartet, 4 * full + k), a));
            }
            let lanes = [
                f32x4_extract_lane::<0>(sum),
                f32x4_extract_lane::<1>(sum),
                f32x4_extract_lane::<2>(sum),
                f32x4_extract_lane::<3>(sum),
            ];
            for (m, v) in lanes.into_iter().enumerate() {
                res[(4 * qi + m) * rows + r] = v;
            }
        }
    }
}

/// Block `k` of an activation quad in all four lanes.
fn repeat_lane(a: &Quad, k: usize) -> Quad {
    // Byte indices 4k..4k+3, in every lane.
    let b = 4 * k as u8;
    let pick = u32x4_splat(u32::from_le_bytes([b, b + 1, b + 2, b + 3]));
    let splat = |v: v128| i8x16_swizzle(v, pick);
    // Block k's values 4c..4c+3 sit in lane k of vector c: repeated, every lane holds them.
    Quad {
        qs: a.qs.map(splat),
        d: splat(a.d),
        s: splat(a.s),
        start: splat(a.start),
    }
}

/// Up to four blocks in the file's layout (zero blocks after the last) as a weight quad.
fn file_quad(kind: QuadWeights, blocks: &[u8]) -> Quad {
    let bb = kind.block_bytes;
    let mut padded = [0u8; 4 * 34];
    let n = blocks.len().min(4 * bb);
    padded[..n].copy_from_slice(&blocks[..n]);
    let four = &padded[..4 * bb];
    let codes = [0, 1, 2, 3].map(|j| (kind.unpack)(&four[j * bb..(j + 1) * bb]));
    let min = if kind.has_min {
        scales4(four, 2, bb)
    } else {
        f32x4_splat(0.0)
    };
    let (lo, hi) = (codes.map(|c| c.0), codes.map(|c| c.1));
    interleave(lo, hi, scales4(four, 0, bb), min, i32x4_splat(0))
}

/// Each weight row of `w` (rows of `row_bytes`) times every activation row (`acts`: `groups`
/// quads per row), written as `res[weight row * rows + activation row]`. Each weight row is
/// unpacked into quads once for all activation rows; two weight rows then meet four
/// activation rows at a time (eight independent sums hide the latency of each one's chain
/// of dot products and additions). Every block's integer sum is exact and is scaled and
/// added in block order to one running sum, as the scalar reference does: the same bits as
/// the one-row kernels.
pub fn quad_rows(
    kind: QuadWeights,
    packed: bool,
    w: &[u8],
    row_bytes: usize,
    acts: &[Quad],
    groups: usize,
    res: &mut [f32],
) {
    let rows = acts.len() / groups;
    let mut quads = [Vec::with_capacity(groups), Vec::with_capacity(groups)];
    let row = |r: usize| &acts[r * groups..(r + 1) * groups];
    for (pair, (wr, res)) in w.chunks(2 * row_bytes).zip(res.chunks_mut(2 * rows)).enumerate() {
        for (m, q) in quads.iter_mut().enumerate().take(wr.len() / row_bytes) {
            let i = 2 * pair + m;
            if packed {
                let quartet = &w[i / 4 * 4 * row_bytes..][..4 * row_bytes];
                unpack_packed_row(kind, quartet, i % 4, row_bytes, groups, q);
            } else {
                unpack_row(kind, &w[i * row_bytes..(i + 1) * row_bytes], groups, q);
            }
        }
        let full = rows / 4 * 4;
        for r in (0..full).step_by(4) {
            let four = [row(r), row(r + 1), row(r + 2), row(r + 3)];
            if wr.len() == 2 * row_bytes {
                let [a, b] = quad_dots::<2, 4>(kind, [&quads[0], &quads[1]], four);
                res[r..r + 4].copy_from_slice(&a);
                res[rows + r..rows + r + 4].copy_from_slice(&b);
            } else {
                res[r..r + 4].copy_from_slice(&quad_dots::<1, 4>(kind, [&quads[0]], four)[0]);
            }
        }
        for r in full..rows {
            for (m, q) in quads.iter().enumerate().take(wr.len() / row_bytes) {
                res[m * rows + r] = quad_dots::<1, 1>(kind, [q], [row(r)])[0][0];
            }
        }
    }
}

/// One weight row as quads (the last padded with zero blocks).
fn unpack_row(kind: QuadWeights, wr: &[u8], groups: usize, quads: &mut Vec<Quad>) {
    let gb = 4 * kind.block_bytes;
    quads.clear();
    for g in 0..groups {
        quads.push(file_quad(
            kind,
            &wr[(g * gb).min(wr.len())..((g + 1) * gb).min(wr.len())],
        ));
    }
}

/// Row `m` of a packed quartet (see `packed`) as quads, its left-over blocks gathered into
/// the last (padded with zero blocks).
fn unpack_packed_row(
    kind: QuadWeights,
    quartet: &[u8],
    m: usize,
    row_bytes: usize,
    groups: usize,
    quads: &mut Vec<Quad>,
) {
    let (bb, gb) = (kind.block_bytes, 4 * kind.block_bytes);
    let (full, left) = (row_bytes / gb, row_bytes % gb / bb);
    quads.clear();
    for g in 0..full.min(groups) {
        quads.push((kind.packed)(&quartet[(4 * g + m) * gb..(4 * g + m + 1) * gb]));
    }
    if left > 0 {
        // Left-over group k holds row m's block 4F + k in lane m: transposed, row m's
        // left-over blocks are one quad's lanes (zero blocks after them).
        let zero = i32x4_splat(0);
        let g: [Quad; 4] = std::array::from_fn(|k| {
            if k < left {
                (kind.packed)(&quartet[(4 * full + k) * gb..(4 * full + k + 1) * gb])
            } else {
                Quad {
                    qs: [zero; 8],
                    d: zero,
                    s: zero,
                    start: zero,
                }
            }
        });
        let lane_m = |v: [v128; 4]| transpose4(v)[m];
        quads.push(Quad {
            qs: std::array::from_fn(|c| lane_m([g[0].qs[c], g[1].qs[c], g[2].qs[c], g[3].qs[c]])),
            d: lane_m([g[0].d, g[1].d, g[2].d, g[3].d]),
            s: lane_m([g[0].s, g[1].s, g[2].s, g[3].s]),
            start: zero,
        });
    }
}

#[inline(always)]
fn quad_dots<const M: usize, const N: usize>(kind: QuadWeights, w: [&[Quad]; M], act: [&[Quad]; N]) -> [[f32; N]; M] {
    match kind.has_min {
        true => quad_sums::<M, N, true>(w, act),
        false => quad_sums::<M, N, false>(w, act),
    }
}

/// The sums of `quad_dots`. Each (weight row, activation row) pair keeps one running sum in
/// block order; the four activation rows' sums sit in the lanes of one vector, and each
/// group's four block results are transposed so that one vector addition per block adds
/// every row's next block (lane n does exactly the scalar additions of row n).
#[inline(always)]
fn quad_sums<const M: usize, const N: usize, const MIN: bool>(w: [&[Quad]; M], act: [&[Quad]; N]) -> [[f32; N]; M] {
    const { assert!(N <= 4) };
    let mut sum = [f32x4_splat(0.0); M];
    let groups = w[0].len();
    assert!(w.iter().all(|w| w.len() == groups) && act.iter().all(|a| a.len() == groups));
    for g in 0..groups {
        // SAFETY: every slice holds `groups` quads (asserted above) and g < groups.
        let (wg, ag): ([&Quad; M], [&Quad; N]) = unsafe {
            (
                std::array::from_fn(|m| w[m].get_unchecked(g)),
                std::array::from_fn(|n| act[n].get_unchecked(g)),
            )
        };
        let mut acc: [[v128; N]; M] = [std::array::from_fn(|n| ag[n].start); M];
        for c in 0..8 {
            let wc: [v128; M] = std::array::from_fn(|m| wg[m].qs[c]);
            for (n, a) in ag.iter().enumerate() {
                let ac = a.qs[c];
                for m in 0..M {
                    acc[m][n] = dot_quads(ac, wc[m], acc[m][n]);
                }
            }
        }
        for m in 0..M {
            let wq = wg[m];
            let mut t = [f32x4_splat(0.0); 4];
            for n in 0..N {
                let a = ag[n];
                t[n] = f32x4_mul(f32x4_convert_i32x4(acc[m][n]), f32x4_mul(wq.d, a.d));
                if MIN {
                    t[n] = f32x4_add(t[n], f32x4_mul(wq.s, a.s));
                }
            }
            for block in transpose4(t) {
                sum[m] = f32x4_add(sum[m], block);
            }
        }
    }
    sum.map(|s| {
        let lanes = [
            f32x4_extract_lane::<0>(s),
            f32x4_extract_lane::<1>(s),
            f32x4_extract_lane::<2>(s),
            f32x4_extract_lane::<3>(s),
        ];
        std::array::from_fn(|n| lanes[n])
    })
}

/// A k-quant super-block (256 values) as the relaxed build multiplies it, its values
/// interleaved by sub-block (see `packed_k`): lane j of each dot product collects sub-block
/// j of a run of four (sub-blocks of 32 values for Q4_K/Q5_K, whose 16 vectors form two
/// runs; of 16 for Q6_K, four runs). Activations: `d`; `start`, each run's starting sums
/// (−32 · its sub-blocks' sums for Q6_K, whose codes are value + 32; else 0); `b16`, the
/// sums per 32 values as i16 lanes, for Q4_K/Q5_K's minimums.
#[derive(Clone, Copy)]
pub struct KQuad {
    qs: [v128; 16],
    start: [v128; 4],
    b16: v128,
    d: f32,
}

/// A weight super-block as a [`KQuad`]: codes, each run's scales as i32 lanes, the eight
/// minimums (Q4_K/Q5_K) as i16 lanes.
#[derive(Clone, Copy)]
struct KQuadW {
    qs: [v128; 16],
    sc: [v128; 4],
    mn: v128,
    d: f32,
    dmin: f32,
}

/// Sixteen vectors of 16 values (in order) interleaved by sub-blocks of `sub` values.
#[inline(always)]
fn interleave_k(v: [v128; 16], sub: usize) -> [v128; 16] {
    let mut out = v;
    for k in 0..4 {
        let t = if sub == 16 {
            transpose4([v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]])
        } else {
            // Run k / 2 (sub-blocks 4(k/2)..): first the values 0..16 of each, then 16..32.
            let (base, odd) = (8 * (k / 2), k % 2);
            transpose4([v[base + odd], v[base + 2 + odd], v[base + 4 + odd], v[base + 6 + odd]])
        };
        out[4 * k..4 * k + 4].copy_from_slice(&t);
    }
    out
}

/// The k-quant types multiplied as [`KQuad`]s (packed at load in the relaxed build, from the
/// file's layout in prefill of the SIMD128 build), with their sub-block size.
pub fn kquad_sub(dtype: candle_core::quantized::GgmlDType) -> Option<usize> {
    use candle_core::quantized::GgmlDType as T;
    match dtype {
        T::Q4K | T::Q5K => Some(32),
        T::Q6K => Some(16),
        _ => None,
    }
}

/// An activation row (blocks from `quantize_q8k`) as [`KQuad`]s for sub-blocks of `sub`.
pub fn kquad_acts(row: &[BlockQ8K], sub: usize, out: &mut Vec<KQuad>) {
    for b in row {
        let qs = interleave_k(std::array::from_fn(|i| load_i8(&b.qs, 16 * i)), sub);
        let s = |i: usize| b.bsums[i];
        let zero = i32x4_splat(0);
        let (start, b16) = if sub == 16 {
            let run = |k: usize| {
                let s = |j: usize| -32 * s(4 * k + j) as i32;
                i32x4(s(0), s(1), s(2), s(3))
            };
            ([run(0), run(1), run(2), run(3)], zero)
        } else {
            // |Σ| over 32 activations ≤ 32 · 127: an i16 holds it.
            let pair = |j: usize| s(2 * j) + s(2 * j + 1);
            let b16 = i16x8(pair(0), pair(1), pair(2), pair(3), pair(4), pair(5), pair(6), pair(7));
            ([zero; 4], b16)
        };
        out.push(KQuad { qs, start, b16, d: b.d });
    }
}

/// Q4_K/Q5_K's eight 6-bit scales (two runs of i32 lanes) and minimums (i16 lanes), from the
/// 12 bytes after `d` and `dmin` (see `scale_min_k4`): scale j < 4 is byte j's low six bits,
/// scale j ≥ 4 byte j + 4's low nibble and byte j − 4's top two bits; the minimums likewise
/// from bytes 4..8 and the high nibbles.
#[inline(always)]
fn k_scales_mins(w: &[u8]) -> ([v128; 2], v128) {
    let q = load(w, 4);
    // Lanes 0..8: the scales' low bits, lanes 8..16 the minimums'.
    let low = i8x16_shuffle::<0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 24, 25, 26, 27>(q, u8x16_shr(q, 4));
    let low = v128_and(
        low,
        u8x16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15),
    );
    let top = i8x16_shuffle::<16, 16, 16, 16, 0, 1, 2, 3, 16, 16, 16, 16, 4, 5, 6, 7>(u8x16_shr(q, 6), u8x16_splat(0));
    let x = v128_or(low, i8x16_shl(top, 4));
    let sc = u16x8_extend_low_u8x16(x);
    (
        [u32x4_extend_low_u16x8(sc), u32x4_extend_high_u16x8(sc)],
        u16x8_extend_high_u8x16(x),
    )
}

/// Q6_K's sixteen signed scales as four runs of i32 lanes.
#[inline(always)]
fn q6_k_scales(w: &[u8]) -> [v128; 4] {
    let s = load(w, 192);
    let (lo, hi) = (i16x8_extend_low_i8x16(s), i16x8_extend_high_i8x16(s));
    [
        i32x4_extend_low_i16x8(lo),
        i32x4_extend_high_i16x8(lo),
        i32x4_extend_low_i16x8(hi),
        i32x4_extend_high_i16x8(hi),
    ]
}

/// Bits `at..at + width` of every byte of `h`, moved to bit 4 up: a code's high bits.
#[inline(always)]
fn high_bits_at(h: v128, at: u32, mask: u8) -> v128 {
    let moved = if at <= 4 {
        i8x16_shl(h, 4 - at)
    } else {
        u8x16_shr(h, at - 4)
    };
    v128_and(moved, u8x16_splat(mask))
}

/// The high-bit vectors of a packed block: Q5_K's two, Q6_K's four.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn packed_k_high<const KIND: u8>(w: &[u8]) -> [v128; 4] {
    let zero = i32x4_splat(0);
    match KIND {
        5 => [load(w, 16), load(w, 32), zero, zero],
        6 => [load(w, 128), load(w, 144), load(w, 160), load(w, 176)],
        _ => [zero; 4],
    }
}

/// Code vectors P and P + 8 of a packed super-block (`KIND` 4, 5, 6: Q4_K, Q5_K, Q6_K; see
/// `packed_k`): one load, the nibbles, and the high bits from `h` ([`packed_k_high`]).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn packed_k_pair<const KIND: u8, const P: usize>(w: &[u8], h: &[v128; 4]) -> (v128, v128) {
    let p = P;
    let at = match KIND {
        4 => 16,
        5 => 48,
        _ => 0,
    };
    let (lo, hi) = nibbles(load(w, at + 16 * p));
    match KIND {
        5 => (
            v128_or(lo, high_bits_at(h[0], p as u32, 0x10)),
            v128_or(hi, high_bits_at(h[1], p as u32, 0x10)),
        ),
        // Vector u = 4k + c takes bits 2k, 2k + 1 of high vector c.
        6 => (
            v128_or(lo, high_bits_at(h[p % 4], 2 * (p / 4) as u32, 0x30)),
            v128_or(hi, high_bits_at(h[p % 4], 2 * (2 + p / 4) as u32, 0x30)),
        ),
        _ => (lo, hi),
    }
}

/// A packed super-block as a [`KQuadW`], for prefill.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn packed_kquad<const KIND: u8>(w: &[u8]) -> KQuadW {
    let h = packed_k_high::<KIND>(w);
    let mut qs = [i32x4_splat(0); 16];
    (qs[0], qs[8]) = packed_k_pair::<KIND, 0>(w, &h);
    (qs[1], qs[9]) = packed_k_pair::<KIND, 1>(w, &h);
    (qs[2], qs[10]) = packed_k_pair::<KIND, 2>(w, &h);
    (qs[3], qs[11]) = packed_k_pair::<KIND, 3>(w, &h);
    (qs[4], qs[12]) = packed_k_pair::<KIND, 4>(w, &h);
    (qs[5], qs[13]) = packed_k_pair::<KIND, 5>(w, &h);
    (qs[6], qs[14]) = packed_k_pair::<KIND, 6>(w, &h);
    (qs[7], qs[15]) = packed_k_pair::<KIND, 7>(w, &h);
    kquad_w::<KIND>(w, qs)
}

/// A [`KQuadW`] of the codes `qs` and the scales, minimums and factors of block `w`, which
/// sit in the same place in the file's layout and the packed one.
#[inline(always)]
fn kquad_w<const KIND: u8>(w: &[u8], qs: [v128; 16]) -> KQuadW {
    if KIND == 6 {
        return KQuadW {
            qs,
            sc: q6_k_scales(w),
            mn: i32x4_splat(0),
            d: f16_at(w, 208),
            dmin: 0.0,
        };
    }
    let ([s0, s1], mn) = k_scales_mins(w);
    let zero = i32x4_splat(0);
    KQuadW {
        qs,
        sc: [s0, s1, zero, zero],
        mn,
        d: f16_at(w, 0),
        dmin: f16_at(w, 2),
    }
}

/// A super-block in the file's layout as a [`KQuadW`]: its 256 codes in order as sixteen
/// vectors (`packed_k`'s `file_slot` says where each lives), interleaved by sub-block as the
/// activations are; the scales and factors are where a packed block has them too.
#[inline(always)]
fn file_kquad<const KIND: u8>(w: &[u8]) -> KQuadW {
    let mut v = [i32x4_splat(0); 16];
    if KIND == 6 {
        // Value 128n + 32q + l: low bits in `ql` byte 64n + 32(q % 2) + l, nibble q / 2;
        // high bits in `qh` byte 128 + 32n + l, bits 2q and 2q + 1.
        for n in 0..2 {
            for j in 0..2 {
                let qh = load(w, 128 + 32 * n + 16 * j);
                for q in 0..4 {
                    let (lo, hi) = nibbles(load(w, 64 * n + 32 * (q % 2) + 16 * j));
                    let low = if q < 2 { lo } else { hi };
                    v[8 * n + 2 * q + j] = v128_or(low, high_bits_at(qh, 2 * q as u32, 0x30));
                }
            }
        }
    } else {
        // Value 64c + 32h + l: nibble h of `qs` byte 32c + l; Q5_K's fifth bit is bit 2c + h of
        // `qh` byte l.
        let at = if KIND == 5 { 48 } else { 16 };
        let qh = if KIND == 5 {
            [load(w, 16), load(w, 32)]
        } else {
            [i32x4_splat(0); 2]
        };
        for c in 0..4 {
            for j in 0..2 {
                let (mut lo, mut hi) = nibbles(load(w, at + 32 * c + 16 * j));
                if KIND == 5 {
                    let qh = qh[j];
                    lo = v128_or(lo, high_bits_at(qh, 2 * c as u32, 0x10));
                    hi = v128_or(hi, high_bits_at(qh, 2 * c as u32 + 1, 0x10));
                }
                v[4 * c + j] = lo;
                v[4 * c + 2 + j] = hi;
            }
        }
    }
    let qs = interleave_k(v, if KIND == 6 { 16 } else { 32 });
    kquad_w::<KIND>(w, qs)
}

/// Code vectors P and P + 8 of a packed super-block times an activation block, added to
/// their runs' partial sums. P is a constant so that every index and shift is one: as a
/// loop counter, V8 ran Q6_K decode at 0.75x the file layout's speed.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn packed_k_step<const KIND: u8, const P: usize>(w: &[u8], h: &[v128; 4], a: &KQuad, part: &mut [v128; 4]) {
    let (lo, hi) = packed_k_pair::<KIND, P>(w, h);
    let (i, j) = if KIND == 6 {
        (P / 4, 2 + P / 4)
    } else {
        (P % 2, 2 + P % 2)
    };
    part[i] = i32x4_relaxed_dot_i8x16_i7x16_add(a.qs[P], lo, part[i]);
    part[j] = i32x4_relaxed_dot_i8x16_i7x16_add(a.qs[P + 8], hi, part[j]);
}

/// One packed weight row (see `packed_k`) times one activation row: decode's product. Each
/// run's dot products go straight into the lanes of its sub-blocks (two chains a run for
/// Q4_K/Q5_K, one per run for Q6_K), and one multiply per run applies four sub-blocks'
/// scales. The integer sums are exact; the float steps per super-block are the scalar
/// reference's.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn packed_k_row<const KIND: u8>(row: &[u8], act: &[KQuad]) -> f32 {
    let bb = match KIND {
        4 => 144,
        5 => 176,
        _ => 210,
    };
    let mut sum = 0f32;
    let zero = i32x4_splat(0);
    for (w, a) in row.chunks_exact(bb).zip(act) {
        let h = packed_k_high::<KIND>(w);
        let mut part = if KIND == 6 { a.start } else { [zero; 4] };
        packed_k_step::<KIND, 0>(w, &h, a, &mut part);
        packed_k_step::<KIND, 1>(w, &h, a, &mut part);
        packed_k_step::<KIND, 2>(w, &h, a, &mut part);
        packed_k_step::<KIND, 3>(w, &h, a, &mut part);
        packed_k_step::<KIND, 4>(w, &h, a, &mut part);
        packed_k_step::<KIND, 5>(w, &h, a, &mut part);
        packed_k_step::<KIND, 6>(w, &h, a, &mut part);
        packed_k_step::<KIND, 7>(w, &h, a, &mut part);
        if KIND == 6 {
            let sc = q6_k_scales(w);
            let total = i32x4_add(
                i32x4_add(i32x4_mul(part[0], sc[0]), i32x4_mul(part[1], sc[1])),
                i32x4_add(i32x4_mul(part[2], sc[2]), i32x4_mul(part[3], sc[3])),
            );
            sum += a.d * f16_at(w, 208) * hsum_i32(total) as f32;
        } else {
            let (sc, mn) = k_scales_mins(w);
            let sumi = hsum_i32(i32x4_add(
                i32x4_mul(i32x4_add(part[0], part[1]), sc[0]),
                i32x4_mul(i32x4_add(part[2], part[3]), sc[1]),
            ));
            let summ = hsum_i32(i32x4_dot_i16x8(mn, a.b16));
            sum += a.d * (f16_at(w, 0) * sumi as f32 - f16_at(w, 2) * summ as f32);
        }
    }
    sum
}

/// Packed k-quant weight rows of `row_bytes` times each activation row of `acts` (`blocks`
/// super-blocks a row), written as `res[weight row * rows + activation row]`.
#[cfg(target_feature = "relaxed-simd")]
pub fn kquad_decode(
    dtype: candle_core::quantized::GgmlDType,
    w: &[u8],
    row_bytes: usize,
    acts: &[KQuad],
    blocks: usize,
    res: &mut [f32],
) {
    use candle_core::quantized::GgmlDType as T;
    let one: fn(&[u8], &[KQuad]) -> f32 = match dtype {
        T::Q4K => packed_k_row::<4>,
        T::Q5K => packed_k_row::<5>,
        _ => packed_k_row::<6>,
    };
    let rows = acts.len() / blocks.max(1);
    for (wr, res) in w.chunks_exact(row_bytes).zip(res.chunks_exact_mut(rows.max(1))) {
        for (r, v) in res.iter_mut().enumerate() {
            *v = one(wr, &acts[r * blocks..(r + 1) * blocks]);
        }
    }
}

/// [`quad_rows`] for the k-quants: each weight row unpacked once (from the packed layout
/// or, in the SIMD128 build, which keeps the file's, from that), then four activation rows
/// at a time. The integer sums are exact, so the lanes may split them any way; the float
/// steps per super-block are the scalar reference's.
pub fn kquad_rows(
    dtype: candle_core::quantized::GgmlDType,
    packed: bool,
    w: &[u8],
    row_bytes: usize,
    acts: &[KQuad],
    blocks: usize,
    res: &mut [f32],
) {
    use candle_core::quantized::GgmlDType as T;
    let rows = acts.len() / blocks;
    let bb = row_bytes / blocks;
    let unpack: fn(&[u8]) -> KQuadW = match (dtype, packed) {
        #[cfg(target_feature = "relaxed-simd")]
        (T::Q4K, true) => packed_kquad::<4>,
        #[cfg(target_feature = "relaxed-simd")]
        (T::Q5K, true) => packed_kquad::<5>,
        #[cfg(target_feature = "relaxed-simd")]
        (_, true) => packed_kquad::<6>,
        (T::Q4K, _) => file_kquad::<4>,
        (T::Q5K, _) => file_kquad::<5>,
        _ => file_kquad::<6>,
    };
    let mut unpacked = Vec::with_capacity(blocks);
    let row = |r: usize| &acts[r * blocks..(r + 1) * blocks];
    let six = dtype == T::Q6K;
    for (wr, res) in w.chunks_exact(row_bytes).zip(res.chunks_exact_mut(rows)) {
        unpacked.clear();
        unpacked.extend(wr.chunks_exact(bb).map(unpack));
        let full = rows / 4 * 4;
        for r in (0..full).step_by(4) {
            let four = [row(r), row(r + 1), row(r + 2), row(r + 3)];
            res[r..r + 4].copy_from_slice(&match six {
                true => kquad_sums::<4, 16>(&unpacked, four),
                false => kquad_sums::<4, 32>(&unpacked, four),
            });
        }
        for (r, v) in res.iter_mut().enumerate().skip(full) {
            *v = match six {
                true => kquad_sums::<1, 16>(&unpacked, [row(r)]),
                false => kquad_sums::<1, 32>(&unpacked, [row(r)]),
            }[0];
        }
    }
}

#[inline(always)]
fn kquad_sums<const N: usize, const SUB: usize>(w: &[KQuadW], act: [&[KQuad]; N]) -> [f32; N] {
    let runs = 256 / (4 * SUB);
    let per_run = 16 / runs;
    let mut sum = [0f32; N];
    assert!(act.iter().all(|a| a.len() == w.len()));
    for (i, wb) in w.iter().enumerate() {
        // SAFETY: every activation row holds `w.len()` blocks (asserted above).
        let ab: [&KQuad; N] = std::array::from_fn(|n| unsafe { act[n].get_unchecked(i) });
        let mut total = [i32x4_splat(0); N];
        for k in 0..runs {
            let mut part: [v128; N] = std::array::from_fn(|n| ab[n].start[k]);
            for v in k * per_run..(k + 1) * per_run {
                let wv = wb.qs[v];
                for n in 0..N {
                    part[n] = dot_quads(ab[n].qs[v], wv, part[n]);
                }
            }
            for n in 0..N {
                total[n] = i32x4_add(total[n], i32x4_mul(part[n], wb.sc[k]));
            }
        }
        for n in 0..N {
            let a = ab[n];
            let sumi = hsum_i32(total[n]);
            sum[n] += if SUB == 16 {
                a.d * wb.d * sumi as f32
            } else {
                let summ = hsum_i32(i32x4_dot_i16x8(a.b16, wb.mn));
                a.d * (wb.d * sumi as f32 - wb.dmin * summ as f32)
            };
        }
    }
    sum
}

/// ggml's rounding (half away from zero), four at a time: `f32::round` is a libm call in
/// wasm, and activation quantization was a tenth of Gemma 3's prefill with it.
#[inline(always)]
fn round_away4(x: v128) -> v128 {
    let t = f32x4_trunc(x);
    let up = f32x4_ge(f32x4_abs(f32x4_sub(x, t)), f32x4_splat(0.5));
    let one = v128_or(f32x4_splat(1.0), v128_and(x, u32x4_splat(0x8000_0000)));
    f32x4_add(t, v128_and(up, one))
}

/// The largest |v| of a row of values (a multiple of 4 long).
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    let m = (0..x.len())
        .step_by(4)
        .fold(f32x4_splat(0.0), |m, i| f32x4_max(m, f32x4_abs(load_f32(x, i))));
    f32x4_extract_lane::<0>(m)
        .max(f32x4_extract_lane::<1>(m))
        .max(f32x4_extract_lane::<2>(m))
        .max(f32x4_extract_lane::<3>(m))
}

/// `round(v · scale)` for sixteen values as bytes (at most `top`), and their sum.
#[inline(always)]
fn quantize16(x: &[f32], at: usize, scale: f32, top: i32) -> (v128, i32) {
    let s = f32x4_splat(scale);
    let q: [v128; 4] = std::array::from_fn(|i| {
        i32x4_min(
            i32x4_trunc_sat_f32x4(round_away4(f32x4_mul(load_f32(x, at + 4 * i), s))),
            i32x4_splat(top),
        )
    });
    let sum = hsum_i32(i32x4_add(i32x4_add(q[0], q[1]), i32x4_add(q[2], q[3])));
    (
        i8x16_narrow_i16x8(i16x8_narrow_i32x4(q[0], q[1]), i16x8_narrow_i32x4(q[2], q[3])),
        sum,
    )
}

/// [`super::q8::quantize_q8_ref`], four values at a time (same bits).
pub fn quantize_q8(x: &[f32], out: &mut Vec<BlockQ8>) {
    out.clear();
    for chunk in x.chunks_exact(32) {
        let d = abs_max(chunk) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (lo, s_lo) = quantize16(chunk, 0, id, 127);
        let (hi, s_hi) = quantize16(chunk, 16, id, 127);
        let mut b = BlockQ8::ZERO;
        store_bytes(&mut b.qs, lo, hi);
        b.sum = s_lo + s_hi;
        b.d = half::f16::from_f32(d).to_f32();
        b.s = half::f16::from_f32(b.sum as f32 * d).to_f32();
        out.push(b);
    }
    super::q8::fill_fours(out);
}

/// [`super::q8::quantize_q8k_ref`], four values at a time (same bits).
pub fn quantize_q8k(x: &[f32], out: &mut Vec<BlockQ8K>) {
    out.clear();
    for chunk in x.chunks_exact(256) {
        let mut b = BlockQ8K {
            qs: [0; 256],
            bsums: [0; 16],
            d: 0.0,
        };
        let amax = abs_max(chunk);
        // The first value of the largest magnitude, as the reference's scan keeps it.
        if let Some(&max) = chunk.iter().find(|v| v.abs() == amax).filter(|_| amax != 0.0) {
            let iscale = -128.0 / max;
            for g in 0..16 {
                let (q, sum) = quantize16(chunk, 16 * g, iscale, 127);
                // SAFETY: 16 bytes at 16g inside the 256-byte array; stores need no alignment.
                unsafe { v128_store(b.qs.as_mut_ptr().add(16 * g) as *mut v128, q) };
                b.bsums[g] = sum as i16;
            }
            b.d = 1.0 / iscale;
        }
        out.push(b);
    }
}

fn store_bytes(qs: &mut [i8; 32], lo: v128, hi: v128) {
    // SAFETY: two 16-byte stores inside the 32-byte array; stores need no alignment.
    unsafe {
        v128_store(qs.as_mut_ptr() as *mut v128, lo);
        v128_store(qs.as_mut_ptr().add(16) as *mut v128, hi);
    }
}
