//! K-quant super-blocks (Q4_K, Q5_K, Q6_K) rearranged in place at load, each block by
//! itself, for the relaxed-SIMD build: their codes stored already interleaved by sub-block,
//! so that one `i32x4.relaxed_dot_i8x16_i7x16_add` adds each of four sub-blocks' values into
//! that sub-block's own lane and one multiply by a vector of four sub-block scales weights
//! them. In the file's layout every super-block needed sixteen vectors transposed (prefill)
//! or each sub-block's sum scaled by its own splatted scale (decode).
//!
//! Code vector u (u = 0..16) of a block, byte 4j + t, holds for sub-blocks of 32 values
//! (Q4_K, Q5_K) value 16·(k % 2) + 4c + t of sub-block 4·(k / 2) + j, and for sub-blocks of
//! 16 (Q6_K) value 4c + t of sub-block 4k + j, where k = u / 4, c = u % 4: the four vectors
//! 4k..4k+4 form run k, whose lanes are sub-blocks. Stored as:
//! - low four bits: byte b of 16-byte vector u % 8, low nibble for u < 8, high for u ≥ 8
//!   (eight vectors where the file keeps `qs`: Q4_K byte 16, Q5_K 48; Q6_K 0, its `ql`);
//! - Q5_K's fifth bit: bit u % 8 of byte b of vector u / 8 (its `qh`, byte 16);
//! - Q6_K's two high bits: bits 2k, 2k + 1 of byte b of vector c (its `qh`, byte 128).
//!
//! The scales, minimums and f16 factors stay where the file has them.

use candle_core::quantized::GgmlDType;

/// The k-quant types packed by block, with their block bytes.
pub fn block_bytes(dtype: GgmlDType) -> Option<usize> {
    match dtype {
        GgmlDType::Q4K => Some(144),
        GgmlDType::Q5K => Some(176),
        GgmlDType::Q6K => Some(210),
        _ => None,
    }
}

/// Where one code lives: the byte and shift of its low four bits, and of its high bits.
#[derive(Clone, Copy)]
struct Slot {
    nibble: (usize, u32),
    high: Option<(usize, u32)>,
}

/// Code `v` (0..256) of a block in the file's layout.
fn file_slot(dtype: GgmlDType, v: usize) -> Slot {
    if dtype == GgmlDType::Q6K {
        let (n, q, l) = (v / 128, v % 128 / 32, v % 32);
        return Slot {
            nibble: (64 * n + 32 * (q % 2) + l, 4 * (q / 2) as u32),
            high: Some((128 + 32 * n + l, 2 * q as u32)),
        };
    }
    let (c, h, l) = (v / 64, v % 64 / 32, v % 32);
    let fifth = dtype == GgmlDType::Q5K;
    Slot {
        nibble: (if fifth { 48 } else { 16 } + 32 * c + l, 4 * h as u32),
        high: fifth.then_some((16 + l, (2 * c + h) as u32)),
    }
}

/// Code `v` (0..256) of a packed block: vector u, byte b as the module's comment says.
fn packed_slot(dtype: GgmlDType, v: usize) -> Slot {
    let (u, b) = if dtype == GgmlDType::Q6K {
        let (s, e) = (v / 16, v % 16);
        (4 * (s / 4) + e / 4, 4 * (s % 4) + e % 4)
    } else {
        let (s, e) = (v / 32, v % 32);
        let k = 2 * (s / 4) + e / 16;
        (4 * k + e % 16 / 4, 4 * (s % 4) + e % 4)
    };
    let nibble = (16 * (u % 8) + b, 4 * (u / 8) as u32);
    match dtype {
        GgmlDType::Q6K => Slot {
            nibble,
            high: Some((128 + 16 * (u % 4) + b, 2 * (u / 4) as u32)),
        },
        GgmlDType::Q5K => Slot {
            nibble: (48 + nibble.0, nibble.1),
            high: Some((16 + 16 * (u / 8) + b, (u % 8) as u32)),
        },
        _ => Slot {
            nibble: (16 + nibble.0, nibble.1),
            high: None,
        },
    }
}

/// The bytes of a block that hold codes (the same in both layouts).
fn code_bytes(dtype: GgmlDType) -> std::ops::Range<usize> {
    match dtype {
        GgmlDType::Q6K => 0..192,
        GgmlDType::Q5K => 16..176,
        _ => 16..144,
    }
}

/// Moves every code of `block` from one layout to the other.
fn move_codes(
    dtype: GgmlDType,
    block: &mut [u8],
    from: fn(GgmlDType, usize) -> Slot,
    to: fn(GgmlDType, usize) -> Slot,
) {
    let high_mask = if dtype == GgmlDType::Q6K { 3 } else { 1 };
    let mut codes = [0u8; 256];
    for (v, code) in codes.iter_mut().enumerate() {
        let s = from(dtype, v);
        *code = (block[s.nibble.0] >> s.nibble.1) & 15;
        if let Some((at, shift)) = s.high {
            *code |= ((block[at] >> shift) & high_mask) << 4;
        }
    }
    block[code_bytes(dtype)].fill(0);
    for (v, code) in codes.iter().enumerate() {
        let s = to(dtype, v);
        block[s.nibble.0] |= (code & 15) << s.nibble.1;
        if let Some((at, shift)) = s.high {
            block[at] |= (code >> 4) << shift;
        }
    }
}

/// Packs every block of `data` in place; false (nothing changed) for other types or sizes.
pub fn pack(dtype: GgmlDType, data: &mut [u8]) -> bool {
    each_block(dtype, data, file_slot, packed_slot)
}

/// The inverse of [`pack`].
pub fn unpack(dtype: GgmlDType, data: &mut [u8]) -> bool {
    each_block(dtype, data, packed_slot, file_slot)
}

fn each_block(
    dtype: GgmlDType,
    data: &mut [u8],
    from: fn(GgmlDType, usize) -> Slot,
    to: fn(GgmlDType, usize) -> Slot,
) -> bool {
    let Some(bb) = block_bytes(dtype) else { return false };
    if !data.len().is_multiple_of(bb) {
        return false;
    }
    for block in data.chunks_exact_mut(bb) {
        move_codes(dtype, block, from, to);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::kernels::packed::random_bytes as bytes;

    #[test]
    fn packing_a_k_quant_block_keeps_its_factors_and_unpacking_restores_it() {
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
            let bb = block_bytes(dtype).unwrap();
            let file = bytes(3 * bb, 0x51ED + bb as u64);
            let mut data = file.clone();
            assert!(pack(dtype, &mut data));
            assert_ne!(data, file, "{dtype:?}: packing changed nothing");
            let ones = |v: &[u8]| v.iter().map(|b| b.count_ones()).sum::<u32>();
            for (p, f) in data.chunks(bb).zip(file.chunks(bb)) {
                let codes = code_bytes(dtype);
                assert_eq!(
                    ones(&p[codes.clone()]),
                    ones(&f[codes.clone()]),
                    "{dtype:?}: bits moved, none made"
                );
                assert_eq!(
                    p[..codes.start],
                    f[..codes.start],
                    "{dtype:?}: factors before the codes"
                );
                assert_eq!(p[codes.end..], f[codes.end..], "{dtype:?}: factors after the codes");
            }
            assert!(unpack(dtype, &mut data));
            assert_eq!(data, file, "{dtype:?}");
            assert!(!pack(dtype, &mut data[..bb + 1]), "{dtype:?}: a partial block");
        }
    }

    /// The layout the kernels read, spelled out for a few values: Q4_K value 37 (sub-block 1,
    /// value 5: run 0, lane 1, vector c = 1, byte 4 + 1) and Q6_K value 200 (sub-block 12,
    /// value 8: run 3, lane 0, vector 12 + 2 = 14, byte 0).
    #[test]
    fn a_packed_code_sits_in_the_vector_lane_of_its_sub_block() {
        let q4 = packed_slot(GgmlDType::Q4K, 37);
        assert_eq!((q4.nibble, q4.high), ((16 + 16 + 5, 0), None));
        let q4_run1 = packed_slot(GgmlDType::Q4K, 4 * 32 + 16);
        // Sub-block 4, value 16: run 1, second half: k = 3, u = 12, vector 4, high nibble.
        assert_eq!(q4_run1.nibble, (16 + 16 * 4, 4));
        let q5 = packed_slot(GgmlDType::Q5K, 4 * 32 + 16);
        assert_eq!((q5.nibble, q5.high), ((48 + 16 * 4, 4), Some((16 + 16, 4))));
        let q6 = packed_slot(GgmlDType::Q6K, 200);
        assert_eq!((q6.nibble, q6.high), ((16 * 6, 4), Some((128 + 16 * 2, 6))));
    }
}
