//! Parsing of the GGUF header (magic, version, metadata, tensor index) from a byte
//! prefix that may still be incomplete.
//!
//! Every count and length is checked against fixed limits before anything is
//! allocated, so a hostile header cannot make us reserve gigabytes.

use super::blocks::dtype_from_id;
use super::value::{Metadata, Value};
use crate::error::Error;
use candle_core::quantized::GgmlDType;
use std::collections::HashMap;

pub const MAX_TENSORS: u64 = 1 << 16;
pub const MAX_KV: u64 = 1 << 16;
pub const MAX_STRING: u64 = 1 << 24;
pub const MAX_ARRAY: u64 = 1 << 24;
pub const MAX_DIMS: u32 = 4;
/// The header (mostly the vocabulary) of real models is a few MB; 256 MiB leaves room
/// for huge vocabularies while still catching garbage.
pub const MAX_HEADER_BYTES: usize = 256 << 20;
/// No single tensor of a model that fits in a browser is near 2^40 elements.
pub const MAX_ELEMENTS: u64 = 1 << 40;

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// In GGML order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<usize>,
    pub dtype: GgmlDType,
    /// Absolute byte offset in the file.
    pub start: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn end(&self) -> u64 {
        self.start + self.n_bytes
    }
    /// The shape in row-major order (outermost first), as candle expects it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

#[derive(Debug, Clone)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub data_start: u64,
}

/// Why parsing a prefix stopped.
pub enum Stop {
    /// The prefix ends before the header does: wait for more bytes.
    NeedMore,
    Invalid(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Invalid(e)
    }
}

type P<T> = Result<T, Stop>;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> P<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(Stop::NeedMore);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> P<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> P<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> P<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn count(&mut self, what: &'static str, limit: u64) -> P<u64> {
        let n = self.u64()?;
        if n > limit {
            return Err(Error::AbsurdCount { what, count: n, limit }.into());
        }
        Ok(n)
    }
    fn string(&mut self, what: &'static str) -> P<String> {
        let n = self.count(what, MAX_STRING)? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::Malformed(format!("{what} is not valid UTF-8")).into())
    }

    fn value(&mut self, type_id: u32, depth: u32) -> P<Value> {
        Ok(match type_id {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => match self.arr::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Error::Malformed(format!("boolean value {b}")).into()),
            },
            8 => Value::String(self.string("string length")?),
            9 => {
                if depth >= 2 {
                    return Err(Error::Malformed("arrays nested more than two deep".into()).into());
                }
                let elem_type = self.u32()?;
                let n = self.count("array length", MAX_ARRAY)?;
                // Each element takes at least one byte: an array longer than the bytes we may
                // still accept for the header is garbage, whatever its claimed type.
                if n as usize > MAX_HEADER_BYTES {
                    return Err(Error::AbsurdCount {
                        what: "array length",
                        count: n,
                        limit: MAX_HEADER_BYTES as u64,
                    }
                    .into());
                }
                let mut items = Vec::with_capacity((n as usize).min(self.buf.len() - self.pos));
                for _ in 0..n {
                    items.push(self.value(elem_type, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            t => return Err(Error::Malformed(format!("unknown metadata value type {t}")).into()),
        })
    }
}

/// Parses the header from `buf`, which holds the first bytes of the file.
/// `file_len`, when known, lets tensor bounds be checked before any data arrives.
pub fn parse(buf: &[u8], file_len: Option<u64>) -> P<Header> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.arr()?;
    if &magic != b"GGUF" {
        return Err(Error::BadMagic(magic).into());
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(Error::UnsupportedVersion(version).into());
    }
    let n_tensors = c.count("tensor count", MAX_TENSORS)?;
    let n_kv = c.count("metadata count", MAX_KV)?;

    let mut kv = HashMap::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key length")?;
        let type_id = c.u32()?;
        let value = c.value(type_id, 0)?;
        if kv.insert(key.clone(), value).is_some() {
            return Err(Error::Malformed(format!("duplicate metadata key `{key}`")).into());
        }
    }
    let metadata = Metadata(kv);
    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 16 => a,
            _ => return Err(Error::Malformed(format!("general.alignment {v:?} is not a power of two")).into()),
        },
    };

    let mut raw = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string("tensor name length")?;
        let n_dims = c.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Error::Malformed(format!("tensor `{name}` has {n_dims} dimensions")).into());
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64()?);
        }
        let type_id = c.u32()?;
        let offset = c.u64()?;
        raw.push((name, dims, type_id, offset));
    }
    let data_start = (c.pos as u64).div_ceil(alignment) * alignment;

    let mut tensors = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::new();
    for (name, dims, type_id, offset) in raw {
        if !seen.insert(name.clone()) {
            return Err(Error::Malformed(format!("duplicate tensor `{name}`")).into());
        }
        let dtype = dtype_from_id(type_id).ok_or_else(|| Error::UnknownBlockType {
            name: name.clone(),
            type_id,
        })?;
        let mut elems: u64 = 1;
        for &d in &dims {
            elems = match elems.checked_mul(d) {
                Some(e) if d > 0 && e <= MAX_ELEMENTS => e,
                _ => return Err(Error::Malformed(format!("tensor `{name}` has dimensions {dims:?}")).into()),
            };
        }
        let block = dtype.block_size() as u64;
        if dims[0] % block != 0 {
            return Err(Error::Malformed(format!(
                "tensor `{name}`: row of {} elements is not a multiple of the {dtype:?} block ({block})",
                dims[0]
            ))
            .into());
        }
        if offset % alignment != 0 {
            return Err(
                Error::Malformed(format!("tensor `{name}` offset {offset} is not aligned to {alignment}")).into(),
            );
        }
        let n_bytes = elems / block * dtype.type_size() as u64;
        let start = data_start
            .checked_add(offset)
            .ok_or_else(|| Error::Malformed(format!("tensor `{name}` offset {offset}")))?;
        if let Some(len) = file_len {
            if start + n_bytes > len {
                return Err(Error::TensorOutOfBounds {
                    name,
                    start,
                    end: start + n_bytes,
                    file_len: len,
                }
                .into());
            }
        }
        let dims = dims.into_iter().map(|d| d as usize).collect();
        tensors.push(TensorInfo {
            name,
            dims,
            dtype,
            start,
            n_bytes,
        });
    }

    let mut by_start: Vec<&TensorInfo> = tensors.iter().collect();
    by_start.sort_by_key(|t| t.start);
    for w in by_start.windows(2) {
        if w[0].end() > w[1].start {
            return Err(Error::Malformed(format!("tensors `{}` and `{}` overlap", w[0].name, w[1].name)).into());
        }
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        data_start,
    })
}
