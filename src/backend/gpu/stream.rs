//! Weights written into GPU buffers while the file streams in: each matrix's bytes go from
//! the download chunk straight to its buffers (split by rows as the binding limit asks), so
//! neither the file nor a whole tensor is ever held in wasm memory.

use super::kernels::Variant;
use super::{Gpu, GpuMatrix, Part};
use crate::error::{Error, Result};
use crate::gguf::{TensorInfo, TensorSink};
use std::collections::HashMap;

/// The [`TensorSink`] that uploads every 2-D tensor of a block type the kernels read.
pub struct GpuSink {
    gpu: Gpu,
    open: Option<Open>,
    done: HashMap<String, GpuMatrix>,
}

/// The matrices one load streamed to a device, by tensor name, until its decoder takes them
/// ([`crate::gguf::Gguf::streamed`]).
pub struct Streamed {
    pub(super) gpu: Gpu,
    pub(super) matrices: HashMap<String, GpuMatrix>,
}

/// The tensor being received.
struct Open {
    name: String,
    variant: Variant,
    out_dim: usize,
    in_dim: usize,
    parts: Vec<Writer>,
}

/// One buffer of a tensor: its rows, and the bytes not yet written because `write_buffer`
/// takes whole 4-byte words (chunks end anywhere).
struct Writer {
    part: Part,
    /// Tensor byte range this buffer holds.
    start: usize,
    len: usize,
    written: usize,
    pending: Vec<u8>,
}

impl GpuSink {
    pub fn new(gpu: Gpu) -> Self {
        GpuSink {
            gpu,
            open: None,
            done: HashMap::new(),
        }
    }
}

impl Writer {
    fn feed(&mut self, gpu: &Gpu, data: &[u8]) {
        self.pending.extend_from_slice(data);
        let whole = self.pending.len() / 4 * 4;
        if whole > 0 {
            gpu.write_at(&self.part.buf, self.written, &self.pending[..whole]);
            self.written += whole;
            self.pending.drain(..whole);
        }
    }

    fn finish(&mut self, gpu: &Gpu) {
        if !self.pending.is_empty() {
            self.pending.resize(4, 0);
            gpu.write_at(&self.part.buf, self.written, &self.pending);
            self.written += 4;
            self.pending.clear();
        }
    }
}

impl TensorSink for GpuSink {
    fn wants(&self, t: &TensorInfo) -> bool {
        // GGML order: dims[0] is the row length.
        t.dims.len() == 2 && Variant::reading(t.dtype, t.dims[0]).is_some()
    }

    fn write(&mut self, t: &TensorInfo, at: usize, mut data: &[u8]) -> Result<()> {
        if at == 0 {
            let (in_dim, out_dim) = (t.dims[0], t.dims[1]);
            let variant =
                Variant::reading(t.dtype, in_dim).ok_or_else(|| Error::Gpu(format!("no kernel for {:?}", t.dtype)))?;
            let row_bytes = variant.row_bytes(in_dim);
            let mut parts = Vec::new();
            for (row0, rows) in self.gpu.plan_parts(out_dim, row_bytes) {
                let buf = self.gpu.weight_buffer(rows * row_bytes)?;
                parts.push(Writer {
                    part: Part { buf, row0, rows },
                    start: row0 * row_bytes,
                    len: rows * row_bytes,
                    written: 0,
                    pending: Vec::new(),
                });
            }
            self.open = Some(Open {
                name: t.name.clone(),
                variant,
                out_dim,
                in_dim,
                parts,
            });
        }
        let Some(open) = self.open.as_mut().filter(|o| o.name == t.name) else {
            return Err(Error::Gpu(format!("bytes of `{}` arrived out of order", t.name)));
        };
        let mut at = at;
        for w in open.parts.iter_mut() {
            if data.is_empty() {
                break;
            }
            if at >= w.start + w.len {
                continue;
            }
            let n = (w.start + w.len - at).min(data.len());
            w.feed(&self.gpu, &data[..n]);
            at += n;
            data = &data[n..];
        }
        // Natively `write_buffer` stages the bytes until a submit; hand them over now.
        self.gpu.flush_writes();
        Ok(())
    }

    fn complete(&mut self, t: &TensorInfo) -> Result<()> {
        let Some(mut open) = self.open.take().filter(|o| o.name == t.name) else {
            return Err(Error::Gpu(format!("`{}` completed before it started", t.name)));
        };
        for w in open.parts.iter_mut() {
            w.finish(&self.gpu);
        }
        self.gpu.flush_writes();
        let m = GpuMatrix {
            parts: open.parts.into_iter().map(|w| w.part).collect(),
            variant: open.variant,
            bias: None,
            out_dim: open.out_dim,
            in_dim: open.in_dim,
        };
        self.done.insert(open.name, m);
        Ok(())
    }

    fn into_streamed(self: Box<Self>) -> Box<dyn std::any::Any> {
        Box::new(Streamed {
            gpu: self.gpu,
            matrices: self.done,
        })
    }
}
