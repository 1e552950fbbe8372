//! GGML block types: ids as GGUF stores them, and allocation of tensor storage
//! that the loader can fill byte by byte.

use crate::error::{Error, Result};
use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{GgmlDType, QuantizedType};
use half::{bf16, f16};

/// Maps a GGUF tensor type id to a block type candle can compute with.
/// Types that candle cannot read (the IQ and TQ families, Q8_1 is internal) are rejected here,
/// so an unsupported file fails at the header instead of half way through a download.
pub fn dtype_from_id(type_id: u32) -> Option<GgmlDType> {
    Some(match type_id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

pub fn dtype_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// Storage for one tensor in its final form (a `Vec` of blocks that candle computes on),
/// plus a byte view of it so that download chunks are copied straight in.
pub struct BlockBuffer {
    storage: Box<dyn QuantizedType>,
    bytes: *mut u8,
    len: usize,
}

// SAFETY: `bytes` points into the heap buffer owned by `storage`, which is Send + Sync;
// the pointer is only used through `&mut self`.
unsafe impl Send for BlockBuffer {}

impl BlockBuffer {
    pub fn new(dtype: GgmlDType, n_bytes: usize) -> Result<Self> {
        match dtype {
            GgmlDType::F32 => alloc::<f32>(n_bytes),
            GgmlDType::F16 => alloc::<f16>(n_bytes),
            GgmlDType::BF16 => alloc::<bf16>(n_bytes),
            GgmlDType::Q4_0 => alloc::<k_quants::BlockQ4_0>(n_bytes),
            GgmlDType::Q4_1 => alloc::<k_quants::BlockQ4_1>(n_bytes),
            GgmlDType::Q5_0 => alloc::<k_quants::BlockQ5_0>(n_bytes),
            GgmlDType::Q5_1 => alloc::<k_quants::BlockQ5_1>(n_bytes),
            GgmlDType::Q8_0 => alloc::<k_quants::BlockQ8_0>(n_bytes),
            GgmlDType::Q8_1 => alloc::<k_quants::BlockQ8_1>(n_bytes),
            GgmlDType::Q2K => alloc::<k_quants::BlockQ2K>(n_bytes),
            GgmlDType::Q3K => alloc::<k_quants::BlockQ3K>(n_bytes),
            GgmlDType::Q4K => alloc::<k_quants::BlockQ4K>(n_bytes),
            GgmlDType::Q5K => alloc::<k_quants::BlockQ5K>(n_bytes),
            GgmlDType::Q6K => alloc::<k_quants::BlockQ6K>(n_bytes),
            GgmlDType::Q8K => alloc::<k_quants::BlockQ8K>(n_bytes),
        }
    }

    /// Copies `src` to byte offset `at` of the tensor.
    pub fn write(&mut self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= self.len, "write past the end of a tensor buffer");
        // SAFETY: bounds checked above; every bit pattern is a valid block (plain numbers).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.bytes.add(at), src.len()) }
    }

    /// The tensor's bytes, to rearrange in place before candle owns them.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `bytes` and `len` describe the heap buffer owned by `storage` (see `alloc`),
        // borrowed mutably through `&mut self`; every bit pattern is a valid block.
        unsafe { std::slice::from_raw_parts_mut(self.bytes, self.len) }
    }

    pub fn into_storage(self) -> Box<dyn QuantizedType> {
        self.storage
    }
}

fn alloc<T: GgmlType + Send + Sync + 'static>(n_bytes: usize) -> Result<BlockBuffer> {
    let size = std::mem::size_of::<T>();
    if !n_bytes.is_multiple_of(size) {
        return Err(Error::Malformed(format!(
            "{n_bytes} bytes is not a whole number of {:?} blocks",
            T::DTYPE
        )));
    }
    let n = n_bytes / size;
    let mut v: Vec<T> = Vec::new();
    // try_reserve turns an allocation the machine (or wasm's 4 GiB) cannot hold into an error.
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory(n_bytes))?;
    v.resize(n, T::zeros());
    let bytes = v.as_mut_ptr() as *mut u8;
    // Moving the Vec into a Box keeps its heap buffer where it is, so `bytes` stays valid.
    Ok(BlockBuffer {
        storage: Box::new(v),
        bytes,
        len: n_bytes,
    })
}
