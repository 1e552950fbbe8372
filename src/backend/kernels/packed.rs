//! Weight rows of the 32-value block types rearranged once at load, four rows and four
//! blocks at a time, for the relaxed-SIMD build: a group's four scales (and minimums) side
//! by side, then its codes interleaved four values at a time, so that one
//! `i32x4.relaxed_dot_i8x16_i7x16_add` adds each block's values into that block's own lane.
//! Decode then reads each group with a handful of vector loads and no shuffles (in the
//! file's layout it gathered four scattered f16 scales per group and shuffled every group's
//! four block sums together). Decode multiplies four rows at once, so their groups are
//! stored in the order it reads them, one stream through memory: reading four rows side by
//! side from the file's layout ran at half the speed once the weights came from DRAM.
//! Everything happens in place: a group takes exactly the bytes its four blocks took.
//!
//! Four rows of B blocks (F = B / 4 groups, T = B % 4 left over) become: for each group g,
//! group g of rows 0, 1, 2, 3; then for each left-over block k, one group made of block
//! 4F + k of rows 0, 1, 2, 3 (its lanes are rows, not blocks).
//!
//! A group of block type T (`bb` bytes a block, blocks j = 0..4):
//! - the four f16 scales `d_j` (8 bytes), then the four f16 minimums `m_j` (Q4_1, Q5_1);
//! - Q5_0, Q5_1: four u32 `h_p` (p = 0..4) of fifth bits: bit 4j+t of `h_p` is the fifth bit of
//!   value 4p+t of block j, bit 16+4j+t that of value 16+4p+t;
//! - the code bytes in vectors of 16: byte 4j+t of vector v is byte 4v+t of block j's codes
//!   (4 vectors for the nibble types, whose byte i holds values i and i+16; 8 for Q8_0,
//!   stored biased to unsigned, xor 0x80, as the kernels multiply them: Q8_0 is packed only
//!   where the dot product takes unsigned bytes exactly, and the xor was a sixth of the
//!   work per group of Gemma 3's output matrix).

use candle_core::quantized::GgmlDType;

/// Where a block type keeps its parts, in the file and once packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub block_bytes: usize,
    pub has_min: bool,
    pub fifth_bits: bool,
    /// Code bytes per block: 16 (two 4-bit codes a byte) or 32 (Q8_0).
    pub code_bytes: usize,
}

impl Layout {
    pub fn of(dtype: GgmlDType) -> Option<Layout> {
        use GgmlDType as T;
        let (has_min, fifth_bits, code_bytes) = match dtype {
            T::Q4_0 => (false, false, 16),
            T::Q4_1 => (true, false, 16),
            T::Q5_0 => (false, true, 16),
            T::Q5_1 => (true, true, 16),
            T::Q8_0 => (false, false, 32),
            _ => return None,
        };
        let block_bytes = 2 + 2 * has_min as usize + 4 * fifth_bits as usize + code_bytes;
        Some(Layout {
            block_bytes,
            has_min,
            fifth_bits,
            code_bytes,
        })
    }

    /// Offset of the fifth bits in a block of the file.
    fn qh_at(&self) -> usize {
        2 + 2 * self.has_min as usize
    }

    /// Offset of the codes in a block of the file.
    fn qs_at(&self) -> usize {
        self.qh_at() + 4 * self.fifth_bits as usize
    }

    /// Offset of the fifth bits in a packed group.
    pub fn group_qh_at(&self) -> usize {
        8 + 8 * self.has_min as usize
    }

    /// Offset of the codes in a packed group.
    pub fn group_qs_at(&self) -> usize {
        self.group_qh_at() + 16 * self.fifth_bits as usize
    }

    /// What a code byte is xored with once packed: Q8_0's signed codes become unsigned.
    fn code_bias(&self) -> u8 {
        if self.code_bytes == 32 {
            0x80
        } else {
            0
        }
    }

    pub fn group_bytes(&self) -> usize {
        4 * self.block_bytes
    }
}

/// Rearranges `data` (rows of `row_bytes`, a multiple of four rows) in place.
pub fn pack(layout: Layout, data: &mut [u8], row_bytes: usize) {
    let bb = layout.block_bytes;
    let mut file = vec![0u8; 4 * row_bytes];
    let mut four = [0u8; 4 * 34];
    for quartet in data.chunks_exact_mut(4 * row_bytes) {
        file.copy_from_slice(quartet);
        for (i, (m, blocks)) in group_blocks(layout, row_bytes).enumerate() {
            for (j, b) in blocks.into_iter().enumerate() {
                four[j * bb..(j + 1) * bb].copy_from_slice(&file[m.unwrap_or(j) * row_bytes + b * bb..][..bb]);
            }
            let gb = layout.group_bytes();
            pack_group(layout, &four[..gb], &mut quartet[i * gb..(i + 1) * gb]);
        }
    }
}

/// The inverse of [`pack`]: the file's layout again.
pub fn unpack(layout: Layout, data: &mut [u8], row_bytes: usize) {
    let (bb, gb) = (layout.block_bytes, layout.group_bytes());
    let mut packed = vec![0u8; 4 * row_bytes];
    let mut four = [0u8; 4 * 34];
    for quartet in data.chunks_exact_mut(4 * row_bytes) {
        packed.copy_from_slice(quartet);
        for (i, (m, blocks)) in group_blocks(layout, row_bytes).enumerate() {
            unpack_group(layout, &packed[i * gb..(i + 1) * gb], &mut four[..gb]);
            for (j, b) in blocks.into_iter().enumerate() {
                quartet[m.unwrap_or(j) * row_bytes + b * bb..][..bb].copy_from_slice(&four[j * bb..(j + 1) * bb]);
            }
        }
    }
}

/// Row `m` of a packed quartet in the file's layout (`out`: `row_bytes`).
pub fn file_row(layout: Layout, quartet: &[u8], row_bytes: usize, m: usize, out: &mut [u8]) {
    let (bb, gb) = (layout.block_bytes, layout.group_bytes());
    let mut four = [0u8; 4 * 34];
    for (i, (row, blocks)) in group_blocks(layout, row_bytes).enumerate() {
        if row.is_some_and(|r| r != m) {
            continue;
        }
        unpack_group(layout, &quartet[i * gb..(i + 1) * gb], &mut four[..gb]);
        for (j, b) in blocks.into_iter().enumerate() {
            if row.is_some() || j == m {
                out[b * bb..(b + 1) * bb].copy_from_slice(&four[j * bb..(j + 1) * bb]);
            }
        }
    }
}

/// The packed groups of a quartet in order: `(Some(row), its four blocks)` for a row's
/// group, `(None, [b; 4])` for left-over block b, taken from rows 0, 1, 2, 3.
fn group_blocks(layout: Layout, row_bytes: usize) -> impl Iterator<Item = (Option<usize>, [usize; 4])> {
    let blocks = row_bytes / layout.block_bytes;
    let full = blocks / 4;
    let groups = (0..full).flat_map(|g| (0..4).map(move |m| (Some(m), [4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3])));
    groups.chain((4 * full..blocks).map(|b| (None, [b; 4])))
}

fn pack_group(l: Layout, file: &[u8], out: &mut [u8]) {
    let bb = l.block_bytes;
    let block = |j: usize| &file[j * bb..(j + 1) * bb];
    for j in 0..4 {
        out[2 * j..2 * j + 2].copy_from_slice(&block(j)[..2]);
        if l.has_min {
            out[8 + 2 * j..8 + 2 * j + 2].copy_from_slice(&block(j)[2..4]);
        }
    }
    if l.fifth_bits {
        let qh = |j: usize| u32::from_le_bytes(block(j)[l.qh_at()..l.qh_at() + 4].try_into().unwrap_or_default());
        for p in 0..4 {
            let mut h = 0u32;
            for j in 0..4 {
                for t in 0..4 {
                    h |= ((qh(j) >> (4 * p + t)) & 1) << (4 * j + t);
                    h |= ((qh(j) >> (16 + 4 * p + t)) & 1) << (16 + 4 * j + t);
                }
            }
            let at = l.group_qh_at() + 4 * p;
            out[at..at + 4].copy_from_slice(&h.to_le_bytes());
        }
    }
    let qs = l.group_qs_at();
    for v in 0..l.code_bytes / 4 {
        for j in 0..4 {
            for t in 0..4 {
                out[qs + 16 * v + 4 * j + t] = block(j)[l.qs_at() + 4 * v + t] ^ l.code_bias();
            }
        }
    }
}

fn unpack_group(l: Layout, packed: &[u8], out: &mut [u8]) {
    let bb = l.block_bytes;
    for j in 0..4 {
        let block = &mut out[j * bb..(j + 1) * bb];
        block[..2].copy_from_slice(&packed[2 * j..2 * j + 2]);
        if l.has_min {
            block[2..4].copy_from_slice(&packed[8 + 2 * j..8 + 2 * j + 2]);
        }
        if l.fifth_bits {
            let h = |p: usize| {
                let at = l.group_qh_at() + 4 * p;
                u32::from_le_bytes(packed[at..at + 4].try_into().unwrap_or_default())
            };
            let mut qh = 0u32;
            for p in 0..4 {
                for t in 0..4 {
                    qh |= ((h(p) >> (4 * j + t)) & 1) << (4 * p + t);
                    qh |= ((h(p) >> (16 + 4 * j + t)) & 1) << (16 + 4 * p + t);
                }
            }
            block[l.qh_at()..l.qh_at() + 4].copy_from_slice(&qh.to_le_bytes());
        }
        let qs = l.group_qs_at();
        for v in 0..l.code_bytes / 4 {
            for t in 0..4 {
                block[l.qs_at() + 4 * v + t] = packed[qs + 16 * v + 4 * j + t] ^ l.code_bias();
            }
        }
    }
}

/// Pseudo-random bytes (xorshift) for the packing tests here and in `packed_k` and `kernels`.
#[cfg(test)]
pub(crate) fn random_bytes(n: usize, mut s: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::random_bytes as bytes;
    use super::*;

    #[test]
    fn packing_moves_every_byte_and_unpacking_restores_the_file() {
        use GgmlDType as T;
        for dtype in [T::Q4_0, T::Q4_1, T::Q5_0, T::Q5_1, T::Q8_0] {
            let l = Layout::of(dtype).unwrap();
            // 18 blocks a row: four groups a row and two left-over blocks; two quartets.
            let row_bytes = 18 * l.block_bytes;
            let file = bytes(8 * row_bytes, 0x9E37_79B9 + l.block_bytes as u64);
            let mut data = file.clone();
            pack(l, &mut data, row_bytes);
            assert_ne!(data, file, "{dtype:?}: packing changed nothing");
            let sorted = |v: &[u8]| {
                let mut v = v.to_vec();
                v.sort_unstable();
                v
            };
            for (q, f) in data.chunks(4 * row_bytes).zip(file.chunks(4 * row_bytes)) {
                // The fifth bits move one by one and Q8_0's codes are biased; every other
                // byte moves whole.
                if !l.fifth_bits && l.code_bias() == 0 {
                    assert!(
                        sorted(q) == sorted(f),
                        "{dtype:?}: packing must only move bytes within four rows"
                    );
                }
                for m in 0..4 {
                    let mut row = vec![0u8; row_bytes];
                    file_row(l, q, row_bytes, m, &mut row);
                    assert!(row == f[m * row_bytes..(m + 1) * row_bytes], "{dtype:?}: row {m}");
                }
            }
            unpack(l, &mut data, row_bytes);
            assert_eq!(data, file, "{dtype:?}");
        }
    }

    #[test]
    fn a_packed_q8_0_group_holds_its_codes_biased_to_unsigned() {
        let l = Layout::of(GgmlDType::Q8_0).unwrap();
        let row_bytes = 4 * l.block_bytes;
        let file = bytes(4 * row_bytes, 11);
        let mut packed = file.clone();
        pack(l, &mut packed, row_bytes);
        // Row 2's only group is group 2; value 4v + t of block j is byte 4j + t of vector v.
        let g = &packed[2 * l.group_bytes()..3 * l.group_bytes()];
        for j in 0..4 {
            let block = &file[2 * row_bytes + j * 34..][..34];
            assert_eq!(g[2 * j..2 * j + 2], block[..2], "scale of block {j}");
            for value in 0..32 {
                let (v, t) = (value / 4, value % 4);
                assert_eq!(
                    g[8 + 16 * v + 4 * j + t],
                    block[2 + value] ^ 0x80,
                    "block {j} value {value}"
                );
            }
        }
    }

    #[test]
    fn a_packed_group_holds_each_value_where_the_kernels_look_for_it() {
        let l = Layout::of(GgmlDType::Q5_1).unwrap();
        // Four rows of eight blocks: row m's second group is group 4 + m.
        let row_bytes = 8 * l.block_bytes;
        let file = bytes(4 * row_bytes, 7);
        let mut packed = file.clone();
        pack(l, &mut packed, row_bytes);
        for m in 0..4 {
            let g = &packed[(4 + m) * l.group_bytes()..(5 + m) * l.group_bytes()];
            for j in 0..4 {
                let at = m * row_bytes + (4 + j) * 24;
                let block = &file[at..at + 24];
                assert_eq!(g[2 * j..2 * j + 2], block[..2], "scale of block {j}");
                assert_eq!(g[8 + 2 * j..10 + 2 * j], block[2..4], "minimum of block {j}");
                let qh = u32::from_le_bytes(block[4..8].try_into().unwrap());
                for value in 0..32 {
                    let code = if value < 16 {
                        block[8 + value] & 15
                    } else {
                        block[8 + value - 16] >> 4
                    };
                    let (half, i) = (value / 16, value % 16);
                    let (p, t) = (i / 4, i % 4);
                    let byte = g[32 + 16 * p + 4 * j + t];
                    let packed_code = if half == 0 { byte & 15 } else { byte >> 4 };
                    assert_eq!(packed_code, code, "row {m} block {j} value {value}");
                    let h = u32::from_le_bytes(g[16 + 4 * p..20 + 4 * p].try_into().unwrap());
                    let bit = (h >> (16 * half + 4 * j + t)) & 1;
                    assert_eq!(bit, (qh >> value) & 1, "fifth bit, row {m} block {j} value {value}");
                }
            }
        }
    }
}
