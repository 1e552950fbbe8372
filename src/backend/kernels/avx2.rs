//! AVX2 forms of the 32-value block kernels (Q4_0, Q4_1, Q5_0, Q5_1) for native x86-64
//! builds: the CLI, the tests and profiling. The default x86-64 target has only SSE2, so the
//! scalar references ran there (LLVM's own AVX2 vectorization of them was no faster). They
//! are picked at run time and give the references' bits: a block's integer sum is exact
//! however the lanes split it (`vpmaddubsw` cannot saturate on codes below 32 times
//! activations of at most 128), four blocks' sums are gathered into one vector, scaled there
//! by the same two products, and added to one running sum in block order, as the reference
//! (and the browser's SIMD128 kernels) do.

use super::q8::BlockQ8;
use super::scalar::{self, f16_at};
use std::arch::x86_64::*;

/// Whether this CPU runs these kernels (decided once; `CANDLELIT_NO_AVX2=1` keeps the
/// references, to measure the difference in one build).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::is_x86_feature_detected!("avx2") && std::env::var_os("CANDLELIT_NO_AVX2").is_none())
}

// Every helper is compiled for AVX2 (`target_feature`), not merely inlined into an AVX2
// function: an intrinsic in code compiled without AVX2 stays a call (Q5_0 ran at half the
// references' speed that way, Gemma 3's native prefill 24 → 13 tok/s).

/// The 32 codes of a block whose 16 bytes of nibbles are `qs`, low nibbles first (the order
/// the activations come in).
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: a 16-byte load from a 16-byte array.
    let q = unsafe { _mm_loadu_si128(qs.as_ptr() as *const __m128i) };
    let mask = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask))
}

/// 0x10 in byte i where bit i of `qh` is set: the fifth bit of Q5 code i.
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bits(qh: u32) -> __m256i {
    let spread = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), spread);
    // Byte j of each 8 has every bit but bit j set: all ones exactly where bit j was set.
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Σ code·activation of one block as eight i32 partial sums (codes unsigned, below 32).
#[inline]
#[target_feature(enable = "avx2")]
fn block_sums(codes: __m256i, a: &BlockQ8) -> __m256i {
    // SAFETY: a 32-byte load from the 32-byte `qs`.
    let act = unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) };
    _mm256_madd_epi16(_mm256_maddubs_epi16(codes, act), _mm256_set1_epi16(1))
}

/// Four blocks' partial sums into one vector: lane k = block k's whole sum.
#[inline]
#[target_feature(enable = "avx2")]
fn totals(s: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// Bytes `AT..AT + N` of a block as an array (blocks are sliced to their exact size).
#[inline(always)]
fn bytes<const AT: usize, const N: usize>(w: &[u8]) -> &[u8; N] {
    w[AT..AT + N].try_into().unwrap_or(&[0; N])
}

/// One weight row of `BYTES`-byte blocks · `N` activation rows (decode: 1, prefill: 4, each
/// weight block's codes then unpacked once for the four): codes minus `OFF`, plus the
/// minimum term where the blocks have one (`MIN`, its f16 at byte 2). Each row's sum is
/// formed exactly as with one row.
#[inline]
#[target_feature(enable = "avx2")]
fn dot<const N: usize, const BYTES: usize, const OFF: i32, const MIN: bool>(
    row: &[u8],
    acts: [&[BlockQ8]; N],
    codes: impl Fn(&[u8]) -> __m256i,
    reference: fn(&[u8], &[BlockQ8]) -> f32,
) -> [f32; N] {
    let blocks = acts.iter().fold(row.len() / BYTES, |n, a| n.min(a.len()));
    let full = blocks / 4 * 4;
    let mut sums = [0f32; N];
    for g in (0..full).step_by(4) {
        let w = |j: usize| &row[(g + j) * BYTES..(g + j + 1) * BYTES];
        let c = [codes(w(0)), codes(w(1)), codes(w(2)), codes(w(3))];
        let f16s = |at: usize| _mm_set_ps(f16_at(w(3), at), f16_at(w(2), at), f16_at(w(1), at), f16_at(w(0), at));
        let (dw, mw) = (f16s(0), if MIN { f16s(2) } else { _mm_setzero_ps() });
        for (act, sum) in acts.iter().zip(sums.iter_mut()) {
            let a = &act[g..g + 4];
            let s = totals([
                block_sums(c[0], &a[0]),
                block_sums(c[1], &a[1]),
                block_sums(c[2], &a[2]),
                block_sums(c[3], &a[3]),
            ]);
            let s = if OFF != 0 {
                _mm_sub_epi32(
                    s,
                    _mm_set_epi32(OFF * a[3].sum, OFF * a[2].sum, OFF * a[1].sum, OFF * a[0].sum),
                )
            } else {
                s
            };
            // SAFETY: 16-byte loads of four-f32 arrays.
            let (d4, s4) = unsafe { (_mm_loadu_ps(a[0].d4.as_ptr()), _mm_loadu_ps(a[0].s4.as_ptr())) };
            let mut t = _mm_mul_ps(_mm_cvtepi32_ps(s), _mm_mul_ps(dw, d4));
            if MIN {
                t = _mm_add_ps(t, _mm_mul_ps(mw, s4));
            }
            let mut lanes = [0f32; 4];
            // SAFETY: a 16-byte store into a four-f32 array.
            unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), t) };
            // One running sum over the blocks in order, as the reference adds them.
            for l in lanes {
                *sum += l;
            }
        }
    }
    // The last blocks (fewer than four), each term as the reference forms it (a one-block
    // row's reference sum is exactly its term), still added to the one running sum.
    for (act, sum) in acts.iter().zip(sums.iter_mut()) {
        for (w, a) in row[full * BYTES..blocks * BYTES]
            .chunks_exact(BYTES)
            .zip(&act[full..blocks])
        {
            *sum += reference(w, std::slice::from_ref(a));
        }
    }
    sums
}

#[target_feature(enable = "avx2")]
fn q4_0<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot::<N, 18, 8, false>(row, act, |w| nibbles(bytes::<2, 16>(w)), scalar::dot_q4_0)
}

#[target_feature(enable = "avx2")]
fn q4_1<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot::<N, 20, 0, true>(row, act, |w| nibbles(bytes::<4, 16>(w)), scalar::dot_q4_1)
}

#[inline]
#[target_feature(enable = "avx2")]
fn q5_codes<const AT: usize>(w: &[u8]) -> __m256i {
    let qh = u32::from_le_bytes(*bytes::<AT, 4>(w));
    match AT {
        2 => _mm256_or_si256(nibbles(bytes::<6, 16>(w)), fifth_bits(qh)),
        _ => _mm256_or_si256(nibbles(bytes::<8, 16>(w)), fifth_bits(qh)),
    }
}

#[target_feature(enable = "avx2")]
fn q5_0<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot::<N, 22, 16, false>(row, act, |w| q5_codes::<2>(w), scalar::dot_q5_0)
}

#[target_feature(enable = "avx2")]
fn q5_1<const N: usize>(row: &[u8], act: [&[BlockQ8]; N]) -> [f32; N] {
    dot::<N, 24, 0, true>(row, act, |w| q5_codes::<4>(w), scalar::dot_q5_1)
}

macro_rules! picked {
    ($($name:ident, $four:ident => $avx2:ident),* $(,)?) => {$(
        pub fn $name(row: &[u8], act: &[BlockQ8]) -> f32 {
            if enabled() {
                // SAFETY: `enabled` found AVX2 on this CPU, all these need.
                unsafe { $avx2::<1>(row, [act])[0] }
            } else {
                scalar::$name(row, act)
            }
        }

        /// Four activation rows at once (prefill); only handed out where `enabled`.
        pub fn $four(row: &[u8], act: [&[BlockQ8]; 4]) -> [f32; 4] {
            if enabled() {
                // SAFETY: as above.
                unsafe { $avx2::<4>(row, act) }
            } else {
                act.map(|a| scalar::$name(row, a))
            }
        }
    )*};
}

picked!(
    dot_q4_0, dot_q4_0_x4 => q4_0,
    dot_q4_1, dot_q4_1_x4 => q4_1,
    dot_q5_0, dot_q5_0_x4 => q5_0,
    dot_q5_1, dot_q5_1_x4 => q5_1,
);
