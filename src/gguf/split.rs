//! Split models in llama.cpp's `gguf-split` layout: one model stored as several GGUF files
//! named `NAME-00001-of-0000N.gguf` …, the first holding all the metadata, each holding a
//! share of the tensors and saying which part it is (`split.no`, from 0, of `split.count`).
//! Static hosts cap file sizes (GitHub Pages at 100 MB, Cloudflare Pages at 25 MiB) and
//! Hugging Face repositories hold larger models this way, so the loader takes the parts
//! one after another and [`write_parts`] makes them.

use super::{Gguf, Metadata, Value};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use std::path::{Path, PathBuf};

pub const KEY_NO: &str = "split.no";
pub const KEY_COUNT: &str = "split.count";
pub const KEY_TENSORS: &str = "split.tensors.count";

/// Checks the `index`-th file's header (from 0) against the model's part count, which the
/// first file sets; returns that count (1 for an ordinary file).
pub(super) fn check_part(meta: &Metadata, index: usize, count_so_far: Option<usize>) -> Result<usize> {
    let no = meta.u64(KEY_NO)?;
    let count = meta.u64(KEY_COUNT)?;
    let Some(expected) = count_so_far else {
        // The first file: an ordinary GGUF, or part 1 of a split model.
        return match (no, count) {
            (None | Some(0), None) => Ok(1),
            (None | Some(0), Some(n)) if (1..=u16::MAX as u64).contains(&n) => Ok(n as usize),
            (Some(no), _) if no > 0 => Err(Error::Split(format!(
                "this file is part {} of a split model; load the model from its first part (…-00001-of-….gguf)",
                no + 1
            ))),
            (_, n) => Err(Error::Split(format!("`{KEY_COUNT}` is {n:?}"))),
        };
    };
    if index >= expected {
        return Err(Error::Split(format!(
            "the model has {expected} file(s) but a further one was given"
        )));
    }
    match (no, count) {
        (Some(no), Some(n)) if no == index as u64 && n == expected as u64 => Ok(expected),
        (None, _) | (_, None) => Err(Error::Split(format!(
            "file {} of {expected} is not a part of a split model (no `{KEY_NO}`/`{KEY_COUNT}`)",
            index + 1
        ))),
        (Some(no), Some(n)) => Err(Error::Split(format!(
            "expected part {} of {expected}, got a file that says it is part {} of {n}",
            index + 1,
            no + 1
        ))),
    }
}

/// Splits `NAME-00001-of-0000N.gguf` into `NAME` and N.
fn parse_name(file_name: &str) -> Option<(&str, usize, usize)> {
    let stem = file_name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) {
        return None;
    }
    Some((prefix, no.parse().ok()?, count.parse().ok()?))
}

/// The file name of part `no` (from 1) of `count`, as llama.cpp names them.
pub fn part_name(prefix: &str, no: usize, count: usize) -> String {
    format!("{prefix}-{no:05}-of-{count:05}.gguf")
}

/// All the parts' paths when `first` is named as the first part of a split model.
pub fn part_paths(first: &Path) -> Option<Vec<PathBuf>> {
    let (prefix, no, count) = parse_name(first.file_name()?.to_str()?)?;
    if no != 1 || count < 2 {
        return None;
    }
    Some(
        (1..=count)
            .map(|i| first.with_file_name(part_name(prefix, i, count)))
            .collect(),
    )
}

fn to_candle(v: &Value) -> gguf_file::Value {
    use gguf_file::Value as C;
    match v {
        Value::U8(x) => C::U8(*x),
        Value::I8(x) => C::I8(*x),
        Value::U16(x) => C::U16(*x),
        Value::I16(x) => C::I16(*x),
        Value::U32(x) => C::U32(*x),
        Value::I32(x) => C::I32(*x),
        Value::U64(x) => C::U64(*x),
        Value::I64(x) => C::I64(*x),
        Value::F32(x) => C::F32(*x),
        Value::F64(x) => C::F64(*x),
        Value::Bool(x) => C::Bool(*x),
        Value::String(x) => C::String(x.clone()),
        Value::Array(a) => C::Array(a.iter().map(to_candle).collect()),
    }
}

/// Writes `gguf` (loaded with [`super::Loader::finish`], so in the file's own layout) as
/// parts of at most `max_bytes` each, header included (a tensor too large for that gets a
/// part of its own), in its tensor order, to `dir/prefix-0000i-of-0000N.gguf`; returns the
/// paths.
pub fn write_parts(gguf: &Gguf, max_bytes: u64, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    if !gguf.packed.is_empty() {
        return Err(Error::InvalidRequest(
            "the model's tensors were rearranged for this build's kernels; load it with `finish`".into(),
        ));
    }
    // Sorted, so that the same model always gives the same bytes; the writer sets the alignment.
    let mut keys: Vec<&String> = gguf
        .metadata
        .0
        .keys()
        .filter(|k| !k.starts_with("split.") && *k != "general.alignment")
        .collect();
    keys.sort_by_key(|k| (*k != "general.architecture", *k));
    // Part i's key-values: all the metadata in the first, the split keys in every one.
    let kvs = |i: usize, count: usize| {
        let mut values: Vec<(&str, gguf_file::Value)> = vec![];
        if i == 0 {
            values.extend(keys.iter().map(|k| (k.as_str(), to_candle(&gguf.metadata.0[*k]))));
        }
        values.extend([
            (KEY_NO, gguf_file::Value::U16(i as u16)),
            (KEY_COUNT, gguf_file::Value::U16(count as u16)),
            (KEY_TENSORS, gguf_file::Value::I32(gguf.infos.len() as i32)),
        ]);
        values
    };
    // A part's size counts its header too (the first part's holds the tokenizer, over a
    // megabyte), so that no part exceeds a host's cap unless one tensor alone does.
    let mut groups: Vec<Vec<&str>> = vec![];
    let mut size = 0u64;
    for info in &gguf.infos {
        let entry = info.name.len() as u64 + 8 + 4 + 8 * info.dims.len() as u64 + 4 + 8;
        let bytes = entry + info.n_bytes.div_ceil(32) * 32;
        match groups.last_mut() {
            Some(g) if size + bytes <= max_bytes => g.push(&info.name),
            _ => {
                size = header_bytes(&kvs(groups.len(), 1))? + 31;
                groups.push(vec![&info.name]);
            }
        }
        size += bytes;
    }
    let count = groups.len().max(1);
    if count > u16::MAX as usize {
        return Err(Error::InvalidRequest(format!(
            "{count} parts are more than a split model may have"
        )));
    }
    let mut paths = vec![];
    for i in 0..count {
        let values = kvs(i, count);
        let meta: Vec<(&str, &gguf_file::Value)> = values.iter().map(|(k, v)| (*k, v)).collect();
        let names = groups.get(i).map(Vec::as_slice).unwrap_or_default();
        let tensors = names
            .iter()
            .map(|n| {
                gguf.tensors
                    .get(*n)
                    .map(|t| (*n, t))
                    .ok_or_else(|| Error::MissingTensor(n.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let path = dir.join(part_name(prefix, i + 1, count));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        gguf_file::write(&mut out, &meta, &tensors)?;
        std::io::Write::flush(&mut out)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Bytes of a GGUF header holding these key-values and no tensors, padding included.
fn header_bytes(kvs: &[(&str, gguf_file::Value)]) -> Result<u64> {
    let meta: Vec<(&str, &gguf_file::Value)> = kvs.iter().map(|(k, v)| (*k, v)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &meta, &[])?;
    Ok(buf.into_inner().len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("m-00001-of-00003.gguf"), Some(("m", 1, 3)));
        assert_eq!(parse_name("a-b-00002-of-00010.gguf"), Some(("a-b", 2, 10)));
        assert_eq!(parse_name("m-1-of-3.gguf"), None);
        assert_eq!(parse_name("m.gguf"), None);
        let p = part_paths(Path::new("/x/m-00001-of-00002.gguf")).unwrap();
        assert_eq!(p[1], Path::new("/x/m-00002-of-00002.gguf"));
        assert!(part_paths(Path::new("/x/m-00002-of-00002.gguf")).is_none());
        assert_eq!(part_name("m", 12, 100), "m-00012-of-00100.gguf");
    }
}
