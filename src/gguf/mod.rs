//! GGUF reading: a push parser that takes the file as a sequence of chunks (as bytes
//! arrive from `fetch` or a `File`) and writes each tensor straight into the storage
//! the model computes on. Peak memory is the file size plus one header buffer.

mod blocks;
mod header;
pub mod split;
mod value;

pub use blocks::{dtype_from_id, dtype_id, BlockBuffer};
pub use header::{Header, TensorInfo, MAX_HEADER_BYTES};
pub use value::{Metadata, Value};

use crate::error::{Error, Result};
use candle_core::quantized::{QStorage, QTensor};
use header::Stop;
use std::collections::HashMap;

/// A fully loaded GGUF file: metadata and tensors, still in their block types.
pub struct Gguf {
    pub version: u32,
    pub metadata: Metadata,
    pub infos: Vec<TensorInfo>,
    pub tensors: HashMap<String, QTensor>,
    /// Tensors whose bytes were rearranged for this build's CPU kernels at load (see
    /// [`Loader::finish_for_cpu`]): only our kernels may read them.
    pub packed: Vec<String>,
    /// What the sink made of the tensors streamed to it (see [`TensorSink::into_streamed`]):
    /// it travels with this load, so that two loads at once never take each other's.
    pub streamed: Streamed,
}

/// What a load's sink made of the tensors streamed to it, for the backend to take.
pub type Streamed = Option<Box<dyn std::any::Any>>;

impl Gguf {
    /// Bytes held by tensor storage.
    pub fn tensor_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.storage_size_in_bytes()).sum()
    }

    pub fn take(&mut self, name: &str) -> Result<QTensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    pub fn architecture(&self) -> Result<&str> {
        self.metadata
            .str("general.architecture")?
            .ok_or_else(|| Error::Metadata("missing `general.architecture`".into()))
    }
}

enum State {
    Header { buf: Vec<u8>, next_try: usize },
    Data(DataState),
    Failed,
}

struct DataState {
    header: Header,
    /// Tensor indices sorted by file offset; data arrives in this order.
    order: Vec<usize>,
    next: usize,
    buffers: Vec<Option<BlockBuffer>>,
    /// Tensors whose bytes go to the sink.
    to_sink: Vec<bool>,
}

/// Where a tensor's bytes go instead of the loader's own storage (see [`Loader::stream_to`]).
pub trait TensorSink {
    /// Whether this tensor's bytes should come here.
    fn wants(&self, info: &TensorInfo) -> bool;
    /// `data` is the tensor's bytes from offset `at`; bytes arrive in order.
    fn write(&mut self, info: &TensorInfo, at: usize, data: &[u8]) -> Result<()>;
    /// Every byte of the tensor has arrived.
    fn complete(&mut self, info: &TensorInfo) -> Result<()>;
    /// What the sink made of its tensors, handed to the backend with the loaded file
    /// ([`Gguf::streamed`]).
    fn into_streamed(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// One file's parsed header and tensor bytes, kept until the model's last file has arrived.
struct Part {
    header: Header,
    buffers: Vec<Option<BlockBuffer>>,
    to_sink: Vec<bool>,
}

/// Push parser for GGUF bytes. Call [`Loader::push`] for each chunk, then [`Loader::finish`].
/// A split model's files come one after another, [`Loader::next_file`] between them.
pub struct Loader {
    file_len: Option<u64>,
    pos: u64,
    state: State,
    sink: Option<Box<dyn TensorSink>>,
    /// The files of a split model received before this one.
    parts: Vec<Part>,
    /// How many files the model has, once the first one's header says.
    part_count: Option<usize>,
}

impl Loader {
    /// `file_len` (a `Content-Length` or `File.size`) lets bad offsets fail before the download.
    pub fn new(file_len: Option<u64>) -> Self {
        Loader {
            file_len,
            pos: 0,
            state: State::Header {
                buf: Vec::new(),
                next_try: 24,
            },
            sink: None,
            parts: vec![],
            part_count: None,
        }
    }

    /// Ends the current file of a split model; the next push starts the next file
    /// (`file_len` as in [`Loader::new`]).
    pub fn next_file(&mut self, file_len: Option<u64>) -> Result<()> {
        let part = self.close_file()?;
        self.parts.push(part);
        self.file_len = file_len;
        self.pos = 0;
        self.state = State::Header {
            buf: Vec::new(),
            next_try: 24,
        };
        Ok(())
    }

    /// The header, once enough bytes have arrived to parse it.
    pub fn header(&self) -> Option<&Header> {
        match &self.state {
            State::Data(d) => Some(&d.header),
            _ => None,
        }
    }

    pub fn bytes_received(&self) -> u64 {
        self.pos
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let result = self.push_inner(chunk);
        if result.is_err() {
            // Free what was loaded: after an error the loader accepts nothing more.
            self.state = State::Failed;
            self.parts.clear();
        }
        result
    }

    fn push_inner(&mut self, chunk: &[u8]) -> Result<()> {
        if let Some(len) = self.file_len {
            if self.pos + chunk.len() as u64 > len {
                return Err(Error::Malformed(format!(
                    "received more than the announced {len} bytes"
                )));
            }
        }
        match &mut self.state {
            State::Failed => Err(Error::InvalidRequest("the loader already failed".into())),
            State::Data(d) => {
                let start = self.pos;
                self.pos += chunk.len() as u64;
                d.write(start, chunk, self.sink.as_deref_mut())
            }
            State::Header { buf, next_try } => {
                buf.extend_from_slice(chunk);
                self.pos += chunk.len() as u64;
                let complete = self.file_len == Some(self.pos);
                // Re-parse only when the buffer has doubled, so small chunks cost O(n) overall.
                if buf.len() < *next_try && !complete {
                    return Ok(());
                }
                self.try_header(self.file_len)
            }
        }
    }

    /// Parses the buffered header and, once it is whole, switches to copying tensor data.
    fn try_header(&mut self, file_len: Option<u64>) -> Result<()> {
        let State::Header { buf, next_try } = &mut self.state else {
            return Ok(());
        };
        match header::parse(buf, file_len) {
            Err(Stop::NeedMore) => {
                if buf.len() > MAX_HEADER_BYTES {
                    return Err(Error::AbsurdCount {
                        what: "header bytes",
                        count: buf.len() as u64,
                        limit: MAX_HEADER_BYTES as u64,
                    });
                }
                *next_try = buf.len() * 2;
                Ok(())
            }
            Err(Stop::Invalid(e)) => Err(e),
            Ok(header) => {
                let buf = std::mem::take(buf);
                self.part_count = Some(split::check_part(&header.metadata, self.parts.len(), self.part_count)?);
                let mut order: Vec<usize> = (0..header.tensors.len()).collect();
                order.sort_by_key(|&i| header.tensors[i].start);
                let buffers = (0..header.tensors.len()).map(|_| None).collect();
                let to_sink = match &self.sink {
                    Some(sink) => header.tensors.iter().map(|t| sink.wants(t)).collect(),
                    None => vec![false; header.tensors.len()],
                };
                let mut d = DataState {
                    header,
                    order,
                    next: 0,
                    buffers,
                    to_sink,
                };
                d.write(0, &buf, self.sink.as_deref_mut())?;
                self.state = State::Data(d);
                Ok(())
            }
        }
    }

    /// Sends the bytes of the tensors `sink` wants to it as they arrive, instead of keeping
    /// them here ([`Gguf::tensors`] will not hold those): the GPU backend writes them straight
    /// into its buffers, so the file never sits in this memory. Set before the first push.
    pub fn stream_to(&mut self, sink: Box<dyn TensorSink>) {
        self.sink = Some(sink);
    }

    /// Ends the stream: every tensor must be complete.
    pub fn finish(self) -> Result<Gguf> {
        self.finish_packing(false)
    }

    /// [`Loader::finish`] for the CPU backend: a tied embedding table (the output projection
    /// too) is packed in place for this build's decode kernels (see `kernels::packed`), as
    /// the other matrices are when the backend takes them; it is too large to copy.
    pub fn finish_for_cpu(self) -> Result<Gguf> {
        self.finish_packing(true)
    }

    /// Checks that the current file arrived whole and takes its header and bytes; the loader
    /// accepts nothing more after an error.
    fn close_file(&mut self) -> Result<Part> {
        let result = self.close_file_inner();
        if result.is_err() {
            self.state = State::Failed;
            self.parts.clear();
        }
        result
    }

    fn close_file_inner(&mut self) -> Result<Part> {
        let pos = self.pos;
        if let Some(len) = self.file_len {
            if pos != len {
                return Err(Error::Truncated(format!("received {pos} of {len} bytes")));
            }
        }
        if matches!(self.state, State::Header { .. }) {
            // Small files may end before the next scheduled parse: parse what there is.
            self.try_header(None)?;
        }
        let d = match std::mem::replace(&mut self.state, State::Failed) {
            State::Failed => return Err(Error::InvalidRequest("the loader already failed".into())),
            State::Header { .. } => {
                return Err(Error::Truncated(format!(
                    "the file ends inside its header, after {pos} bytes"
                )))
            }
            State::Data(d) => d,
        };
        if d.next < d.order.len() {
            let t = &d.header.tensors[d.order[d.next]];
            return Err(Error::Truncated(format!(
                "the file ends at byte {pos}, inside or before tensor `{}` (bytes {}..{})",
                t.name,
                t.start,
                t.end()
            )));
        }
        Ok(Part {
            header: d.header,
            buffers: d.buffers,
            to_sink: d.to_sink,
        })
    }

    fn finish_packing(mut self, pack_tied_table: bool) -> Result<Gguf> {
        let last = self.close_file()?;
        let mut parts = std::mem::take(&mut self.parts);
        parts.push(last);
        let count = self.part_count.unwrap_or(1);
        if parts.len() < count {
            return Err(Error::Split(format!(
                "received {} of the model's {count} files; load all of them, in order",
                parts.len()
            )));
        }
        let n_tensors: usize = parts.iter().map(|p| p.header.tensors.len()).sum();
        if let Some(declared) = parts[0].header.metadata.u64(split::KEY_TENSORS)? {
            if declared != n_tensors as u64 {
                return Err(Error::Split(format!(
                    "the files hold {n_tensors} tensors, the first says the model has {declared}"
                )));
            }
        }
        let tied = !parts
            .iter()
            .any(|p| p.header.tensors.iter().any(|t| t.name == "output.weight"));
        let mut tensors = HashMap::with_capacity(n_tensors);
        let mut infos = Vec::with_capacity(n_tensors);
        let mut packed = vec![];
        let mut first = None;
        let mut names = std::collections::HashSet::with_capacity(n_tensors);
        for part in parts {
            let Part {
                header,
                buffers,
                to_sink,
            } = part;
            for ((info, buf), to_sink) in header.tensors.iter().zip(buffers).zip(to_sink) {
                if !names.insert(info.name.clone()) {
                    return Err(Error::Malformed(format!("tensor `{}` appears twice", info.name)));
                }
                if to_sink {
                    continue;
                }
                let storage = match buf {
                    Some(mut b) => {
                        if pack_tied_table
                            && tied
                            && info.name == "token_embd.weight"
                            && crate::backend::kernels::pack(info.dtype, b.bytes_mut(), info.dims[0])
                        {
                            packed.push(info.name.clone());
                        }
                        b.into_storage()
                    }
                    // Zero-sized tensors are rejected by the header, so every tensor got bytes.
                    None => return Err(Error::Truncated(format!("tensor `{}` received no bytes", info.name))),
                };
                let t = QTensor::new(QStorage::Cpu(storage), info.shape())?;
                tensors.insert(info.name.clone(), t);
            }
            infos.extend(header.tensors);
            first.get_or_insert((header.version, header.metadata));
        }
        let Some((version, metadata)) = first else {
            return Err(Error::Truncated("no file was loaded".into()));
        };
        Ok(Gguf {
            version,
            metadata,
            infos,
            tensors,
            packed,
            streamed: self.sink.take().map(|s| s.into_streamed()),
        })
    }

    /// Reads a whole stream (a file natively) in 1 MiB chunks.
    pub fn read_from(r: impl std::io::Read, file_len: Option<u64>) -> Result<Gguf> {
        let mut loader = Loader::new(file_len);
        loader.push_all(r, &mut vec![0u8; 1 << 20])?;
        loader.finish()
    }

    /// Pushes everything `r` yields, `chunk.len()` bytes at a time.
    fn push_all(&mut self, mut r: impl std::io::Read, chunk: &mut [u8]) -> Result<()> {
        loop {
            let n = r.read(chunk)?;
            if n == 0 {
                return Ok(());
            }
            self.push(&chunk[..n])?;
        }
    }

    /// Loads a file natively; a file named as the first part of a split model
    /// (`NAME-00001-of-0000N.gguf`) brings the other parts from its folder.
    pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<Gguf> {
        let path = path.as_ref();
        let paths = split::part_paths(path).unwrap_or_else(|| vec![path.to_path_buf()]);
        let mut loader = Loader::new(None);
        let mut chunk = vec![0u8; 1 << 20];
        for (i, p) in paths.iter().enumerate() {
            let f =
                std::fs::File::open(p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            let len = f.metadata()?.len();
            if i == 0 {
                loader.file_len = Some(len);
            } else {
                loader.next_file(Some(len))?;
            }
            loader.push_all(f, &mut chunk)?;
        }
        loader.finish()
    }
}

impl DataState {
    /// Copies the bytes of `chunk` (which starts at file offset `at`) into the tensors they
    /// belong to, or to the sink for the tensors it takes.
    fn write(
        &mut self,
        mut at: u64,
        mut chunk: &[u8],
        mut sink: Option<&mut (dyn TensorSink + 'static)>,
    ) -> Result<()> {
        while !chunk.is_empty() && self.next < self.order.len() {
            let idx = self.order[self.next];
            let t = &self.header.tensors[idx];
            if at < t.start {
                // Padding or unreferenced bytes between tensors.
                let skip = ((t.start - at) as usize).min(chunk.len());
                at += skip as u64;
                chunk = &chunk[skip..];
                continue;
            }
            let n = ((t.end() - at) as usize).min(chunk.len());
            let offset = (at - t.start) as usize;
            match sink.as_deref_mut() {
                Some(s) if self.to_sink[idx] => {
                    s.write(t, offset, &chunk[..n])?;
                    if at + n as u64 == t.end() {
                        s.complete(t)?;
                    }
                }
                _ => {
                    let buf = match &mut self.buffers[idx] {
                        Some(b) => b,
                        // Allocated when its first byte arrives, so memory grows with the download.
                        slot => slot.insert(BlockBuffer::new(t.dtype, t.n_bytes as usize)?),
                    };
                    buf.write(offset, &chunk[..n]);
                }
            }
            at += n as u64;
            chunk = &chunk[n..];
            if at == t.end() {
                self.next += 1;
            }
        }
        Ok(())
    }
}
