//! GGUF reading: a push parser that takes the file as a sequence of chunks (as bytes
//! arrive from `fetch` or a `File`) and writes each tensor straight into the storage
//! the model computes on. Peak memory is the file size plus one header buffer.

mod blocks;
mod header;
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
}

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
}

/// Push parser for GGUF bytes. Call [`Loader::push`] for each chunk, then [`Loader::finish`].
pub struct Loader {
    file_len: Option<u64>,
    pos: u64,
    state: State,
    sink: Option<Box<dyn TensorSink>>,
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
        }
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

    fn finish_packing(self, pack_tied_table: bool) -> Result<Gguf> {
        let pos = self.pos;
        if let Some(len) = self.file_len {
            if pos != len {
                return Err(Error::Truncated(format!("received {pos} of {len} bytes")));
            }
        }
        let mut this = self;
        if matches!(this.state, State::Header { .. }) {
            // Small files may end before the next scheduled parse: parse what there is.
            match this.try_header(None) {
                Err(e) => return Err(e),
                Ok(()) if matches!(this.state, State::Header { .. }) => {
                    return Err(Error::Truncated(format!(
                        "the file ends inside its header, after {pos} bytes"
                    )))
                }
                Ok(()) => {}
            }
        }
        let d = match this.state {
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
        let mut tensors = HashMap::with_capacity(d.header.tensors.len());
        let tied = !d.header.tensors.iter().any(|t| t.name == "output.weight");
        let mut packed = vec![];
        for ((info, buf), to_sink) in d.header.tensors.iter().zip(d.buffers).zip(d.to_sink) {
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
        Ok(Gguf {
            version: d.header.version,
            metadata: d.header.metadata,
            infos: d.header.tensors,
            tensors,
            packed,
        })
    }

    /// Reads a whole stream (a file natively) in 1 MiB chunks.
    pub fn read_from(mut r: impl std::io::Read, file_len: Option<u64>) -> Result<Gguf> {
        let mut loader = Loader::new(file_len);
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            loader.push(&chunk[..n])?;
        }
        loader.finish()
    }

    pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<Gguf> {
        let f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        Self::read_from(std::io::BufReader::with_capacity(1 << 20, f), Some(len))
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
