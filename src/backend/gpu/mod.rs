//! The GPU backend on wgpu: WebGPU in the browser, Vulkan natively. Weights stay in their
//! GGUF block types in storage buffers (split to respect the adapter's binding limit) and
//! the WGSL kernels dequantize them on the fly. Every operation is recorded into one command
//! buffer per forward pass; only what [`Backend::read`] asks for comes back to the CPU.

mod context;
mod kernels;
mod stream;

pub use context::{Gpu, GpuInfo};
pub use kernels::GPU_TYPES;
pub use stream::GpuSink;

use super::{AttentionShape, Backend, RopeStyle, Streamed};
use crate::error::{Error, Result};
use crate::model::config::Activation;
use candle_core::quantized::{GgmlDType, QTensor};
use kernels::Variant;
use std::sync::Arc;

/// Activations on the GPU: `len` f32 values.
pub struct GpuAct {
    buf: wgpu::Buffer,
    len: usize,
}

/// Rows `row0..row0 + rows` of a weight matrix in one storage buffer.
#[derive(Clone)]
struct Part {
    buf: wgpu::Buffer,
    row0: usize,
    rows: usize,
}

/// A weight matrix (or the embedding table) on the GPU, in its own block type where a
/// kernel reads it, else widened to f16 at upload.
#[derive(Clone)]
pub struct GpuMatrix {
    parts: Vec<Part>,
    variant: Variant,
    bias: Option<wgpu::Buffer>,
    pub out_dim: usize,
    pub in_dim: usize,
}

impl GpuMatrix {
    /// The block type the kernels read (`F16` where the file's type had no kernel).
    pub fn kernel_type(&self) -> &'static str {
        self.variant.name
    }
}

/// One layer's keys and values: packed f16 pairs, grown as the conversation does.
pub struct GpuKv {
    k: Option<wgpu::Buffer>,
    v: Option<wgpu::Buffer>,
    /// Positions the buffers hold room for.
    capacity: usize,
}

impl Gpu {
    /// Rows per buffer for a matrix: each buffer is bound whole, so it must fit the
    /// adapter's binding limit (with a 4-byte tail for the kernels' unaligned reads).
    fn plan_parts(&self, out_dim: usize, row_bytes: usize) -> Vec<(usize, usize)> {
        let max_rows = ((self.max_binding() as usize - 8) / row_bytes.max(1)).max(1);
        (0..out_dim)
            .step_by(max_rows)
            .map(|row0| (row0, max_rows.min(out_dim - row0)))
            .collect()
    }

    fn upload_matrix(&self, w: &QTensor, bias: Option<Vec<f32>>) -> Result<GpuMatrix> {
        let (out_dim, in_dim) = w.shape().dims2()?;
        if !in_dim.is_multiple_of(32) {
            return Err(Error::Gpu(format!(
                "a row of {in_dim} values is not a whole number of 32-value blocks"
            )));
        }
        let (variant, bytes) = match Variant::reading(w.dtype(), in_dim) {
            Some(v) => (v, w.data()?),
            // No kernel for this block type (Q2_K, Q3_K, ...): widen to f16 once at upload.
            None => {
                let values = w
                    .dequantize(&candle_core::Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let halves: Vec<u8> = values
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect();
                let v = Variant::of(GgmlDType::F16).ok_or_else(|| Error::Gpu("no f16 kernel".into()))?;
                (v, std::borrow::Cow::Owned(halves))
            }
        };
        let row_bytes = variant.row_bytes(in_dim);
        if bytes.len() != row_bytes * out_dim {
            return Err(Error::Gpu(format!(
                "{} bytes for {out_dim} rows of {row_bytes}",
                bytes.len()
            )));
        }
        let mut parts = Vec::new();
        for (row0, rows) in self.plan_parts(out_dim, row_bytes) {
            let buf = self.weight_buffer(rows * row_bytes)?;
            self.write_padded(&buf, &bytes[row0 * row_bytes..(row0 + rows) * row_bytes]);
            // Hand the bytes to the device now, so that staging memory never holds the model.
            self.flush_writes();
            parts.push(Part { buf, row0, rows });
        }
        let bias = match bias {
            Some(b) => Some(self.upload_bytes(bytemuck::cast_slice(&b), "bias")?),
            None => None,
        };
        Ok(GpuMatrix {
            parts,
            variant,
            bias,
            out_dim,
            in_dim,
        })
    }

    /// Activations of the pass being recorded (destroyed once it is read).
    fn act(&self, len: usize) -> GpuAct {
        GpuAct {
            buf: self.transient(self.storage(len.max(1) * 4, "act")),
            len,
        }
    }

    fn act_from(&self, data: &[f32]) -> Result<GpuAct> {
        Ok(GpuAct {
            buf: self.upload_bytes(bytemuck::cast_slice(data), "act")?,
            len: data.len(),
        })
    }

    /// Makes room in a layer's cache for `positions`, copying what it holds.
    fn grow_kv(&self, kv: &mut GpuKv, positions: usize, kv_width: usize, keep: usize) {
        if positions <= kv.capacity {
            return;
        }
        let capacity = positions.next_power_of_two().max(64);
        let bytes = capacity * kv_width * 2;
        let (k, v) = (self.storage(bytes, "kv"), self.storage(bytes, "kv"));
        let kept = (keep * kv_width * 2) as u64;
        if let (Some(ok), Some(ov)) = (&kv.k, &kv.v) {
            if kept > 0 {
                self.with_encoder(|enc| {
                    enc.copy_buffer_to_buffer(ok, 0, &k, 0, kept);
                    enc.copy_buffer_to_buffer(ov, 0, &v, 0, kept);
                });
            }
        }
        *kv = GpuKv {
            k: Some(k),
            v: Some(v),
            capacity,
        };
    }

    fn elementwise(&self, entry: &'static str, x: &GpuAct, y: Option<&GpuAct>, n: usize, abc: [u32; 3], f: f32) {
        let params = [n as u32, abc[0], abc[1], abc[2], f.to_bits(), 0, 0, 0];
        let mut binds = vec![(0, &x.buf)];
        if let Some(y) = y {
            binds.push((1, &y.buf));
        }
        self.dispatch(Kernel::Elementwise(entry), &binds, (2, &params), grid_1d(n));
    }
}

/// `groups` workgroups as a grid: 2-D past the 65535-per-dimension limit (the kernels index
/// them as `x + y * 65535`).
fn grid(groups: usize) -> [u32; 3] {
    let groups = groups.max(1) as u32;
    if groups <= 65535 {
        [groups, 1, 1]
    } else {
        [65535, groups.div_ceil(65535), 1]
    }
}

/// The 64-thread workgroups for `n` threads.
fn grid_1d(n: usize) -> [u32; 3] {
    grid(n.div_ceil(64))
}

use kernels::Kernel;

impl Backend for Gpu {
    type Act = GpuAct;
    type Matrix = GpuMatrix;
    type Vector = GpuAct;
    type Table = GpuMatrix;
    type Kv = GpuKv;

    fn matrix(&self, w: Arc<QTensor>, bias: Option<Vec<f32>>) -> Result<GpuMatrix> {
        self.upload_matrix(&w, bias)
    }
    fn vector(&self, v: Vec<f32>) -> Result<GpuAct> {
        self.act_from(&v)
    }
    fn table(&self, t: Arc<QTensor>) -> Result<GpuMatrix> {
        self.upload_matrix(&t, None)
    }
    fn tied_output(&self, t: &GpuMatrix) -> Result<GpuMatrix> {
        Ok(t.clone())
    }
    fn preloaded(
        &self,
        streamed: &mut Streamed,
        name: &str,
        bias: Option<Vec<f32>>,
    ) -> Result<Option<(GpuMatrix, [usize; 2])>> {
        let Some(s) = streamed.as_mut().and_then(|s| s.downcast_mut::<stream::Streamed>()) else {
            return Ok(None);
        };
        if !s.gpu.same_device(self) {
            return Err(Error::Gpu(
                "the weights were streamed to another GPU device than the one the model is built on".into(),
            ));
        }
        let Some(mut m) = s.matrices.remove(name) else {
            return Ok(None);
        };
        if let Some(b) = bias {
            m.bias = Some(self.upload_bytes(bytemuck::cast_slice(&b), "bias")?);
        }
        let dims = [m.out_dim, m.in_dim];
        Ok(Some((m, dims)))
    }
    fn preloaded_table(&self, streamed: &mut Streamed, name: &str) -> Result<Option<(GpuMatrix, [usize; 2])>> {
        self.preloaded(streamed, name, None)
    }
    fn new_kv(&self) -> GpuKv {
        GpuKv {
            k: None,
            v: None,
            capacity: 0,
        }
    }
    fn truncate_kv(&self, _kv: &mut GpuKv, _n: usize, _kv_width: usize) {
        // Positions past the cache's length are simply overwritten by the next append.
    }
    fn kv_bytes(&self, kv: &GpuKv) -> usize {
        kv.k.as_ref().map_or(0, |b| b.size() as usize) * 2
    }

    fn embed(&self, t: &GpuMatrix, ids: &[u32], scale: Option<f32>) -> Result<GpuAct> {
        let y = self.act(ids.len() * t.in_dim);
        let ids_buf = self.transient(self.upload_bytes(bytemuck::cast_slice(ids), "ids")?);
        for part in &t.parts {
            let params = [
                ids.len() as u32,
                t.in_dim as u32,
                part.row0 as u32,
                part.rows as u32,
                scale.unwrap_or(1.0).to_bits(),
                0,
                0,
                0,
            ];
            self.dispatch(
                Kernel::Embed(t.variant),
                &[(0, &part.buf), (1, &ids_buf), (2, &y.buf)],
                (3, &params),
                grid_1d(ids.len() * t.in_dim / 32),
            );
        }
        Ok(y)
    }

    fn rms_norm(&self, x: &GpuAct, w: &GpuAct, eps: f32) -> Result<GpuAct> {
        let y = self.act(x.len);
        self.norm(x, w, eps, &y);
        Ok(y)
    }

    fn rms_norm_in_place(&self, x: &mut GpuAct, w: &GpuAct, eps: f32) -> Result<()> {
        // One buffer cannot be bound as both read-only and writable: normalise into a fresh one.
        *x = self.rms_norm(x, w, eps)?;
        Ok(())
    }

    fn linear(&self, w: &GpuMatrix, x: &GpuAct, rows: usize) -> Result<GpuAct> {
        if x.len != rows * w.in_dim {
            return Err(Error::Gpu(format!(
                "{} values are not {rows} rows of {}",
                x.len, w.in_dim
            )));
        }
        // The CPU kernels multiply 8-bit codes of the activations; make the same codes here
        // so that both backends compute the same products. Per weight block (32 or 256
        // values), which whole rows always hold: codes, and each block's scale (32-value
        // blocks: and ggml's q8_1 sum).
        let (xq, scales);
        let (x, xscale) = if w.variant.quantizes_activations() {
            let block = w.variant.block_values();
            let (mode, slots) = if block == 32 { (1, 2) } else { (2, 9) };
            xq = self.act(x.len);
            let blocks = x.len / block;
            scales = self.transient(self.storage(blocks * slots * 4, "act scales"));
            self.dispatch(
                Kernel::QuantizeAct,
                &[(0, &x.buf), (1, &xq.buf), (2, &scales)],
                (3, &[blocks as u32, mode, 0, 0]),
                grid_1d(blocks),
            );
            (&xq, &scales)
        } else {
            (x, &x.buf)
        };
        let y = self.act(rows * w.out_dim);
        let bias = w.bias.as_ref().unwrap_or(&x.buf);
        // Thread per weight row, or (subgroup kernel) workgroup per weight row.
        let subgroup = self.subgroup_matmul();
        let kernel = if subgroup {
            Kernel::MatmulSubgroup(w.variant)
        } else {
            Kernel::Matmul(w.variant)
        };
        for part in &w.parts {
            let [gx, gy, _] = grid(if subgroup { part.rows } else { part.rows.div_ceil(64) });
            let params = [
                part.rows as u32,
                w.in_dim as u32,
                rows as u32,
                gx,
                w.out_dim as u32,
                part.row0 as u32,
                w.bias.is_some() as u32,
                0,
            ];
            self.dispatch(
                kernel,
                &[(0, &part.buf), (1, &x.buf), (2, &y.buf), (3, bias), (5, xscale)],
                (4, &params),
                [gx, gy, rows.div_ceil(kernels::MATMUL_ROWS) as u32],
            );
        }
        Ok(y)
    }

    fn split(&self, x: &GpuAct, rows: usize, widths: [usize; 3]) -> Result<[GpuAct; 3]> {
        let width: usize = widths.iter().sum();
        let mut at = 0;
        let out = widths.map(|w| {
            let y = self.act(rows * w);
            self.elementwise(
                "columns",
                &y,
                Some(x),
                rows * w,
                [width as u32, w as u32, at as u32],
                0.0,
            );
            at += w;
            y
        });
        Ok(out)
    }

    fn rope(
        &self,
        x: &mut GpuAct,
        rows: usize,
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        rot: &super::Rotation,
        style: RopeStyle,
    ) -> Result<()> {
        let inv_freq = &rot.inv_freq;
        let half = inv_freq.len();
        // Same angles as the CPU path: computed here in f32, uploaded as (cos, sin) pairs.
        let mut cs = Vec::with_capacity(rows * half * 2);
        for r in 0..rows {
            let pos = (pos0 + r) as f32;
            for f in inv_freq {
                let (s, c) = (pos * f).sin_cos();
                cs.extend([c, s]);
            }
        }
        let cs = self.transient(self.upload_bytes(bytemuck::cast_slice(&cs), "rope")?);
        let total = rows * n_heads * half;
        let params = [
            total as u32,
            n_heads as u32,
            head_dim as u32,
            half as u32,
            (style == RopeStyle::Interleaved) as u32,
            0,
            0,
            0,
        ];
        self.dispatch(Kernel::Rope, &[(0, &x.buf), (1, &cs)], (2, &params), grid_1d(total));
        Ok(())
    }

    fn attention(
        &self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        kv: &mut GpuKv,
        pos0: usize,
        rows: usize,
        s: &AttentionShape,
    ) -> Result<GpuAct> {
        let kv_width = s.n_kv_head * s.head_dim;
        // attention.wgsl keeps the f16-rounded query of one head in workgroup memory.
        if !s.head_dim.is_multiple_of(2) || s.head_dim > 512 || k.len != rows * kv_width {
            return Err(Error::Gpu(format!("attention shape: head_dim {}", s.head_dim)));
        }
        self.grow_kv(kv, pos0 + rows, kv_width, pos0);
        let (Some(kc), Some(vc)) = (&kv.k, &kv.v) else {
            return Err(Error::Gpu("the KV cache has no buffers".into()));
        };
        let pairs = rows * kv_width / 2;
        let params = [pairs as u32, (pos0 * kv_width / 2) as u32, 0, 0];
        self.dispatch(
            Kernel::KvAppend,
            &[(0, &k.buf), (1, &v.buf), (2, kc), (3, vc)],
            (4, &params),
            grid_1d(pairs),
        );
        let stride = match s.window {
            Some(w) => w.min(pos0 + rows),
            None => pos0 + rows,
        };
        let scratch = self.transient(self.storage(rows * s.n_head * stride * 4, "scores"));
        let out = self.act(q.len);
        let params = [
            s.n_head as u32,
            s.n_kv_head as u32,
            s.head_dim as u32,
            pos0 as u32,
            s.scale.to_bits(),
            s.softcap.unwrap_or(0.0).to_bits(),
            s.window.unwrap_or(0) as u32,
            stride as u32,
            0,
            0,
            0,
            0,
        ];
        self.dispatch(
            Kernel::Attention,
            &[(0, &q.buf), (1, kc), (2, vc), (3, &out.buf), (4, &scratch)],
            (5, &params),
            [s.n_head as u32, rows as u32, 1],
        );
        Ok(out)
    }

    fn add(&self, h: &mut GpuAct, a: &GpuAct) -> Result<()> {
        self.elementwise("add", h, Some(a), h.len, [0; 3], 0.0);
        Ok(())
    }

    fn gate(&self, g: GpuAct, u: &GpuAct, act: Activation) -> Result<GpuAct> {
        self.elementwise("gate", &g, Some(u), g.len, [act_code(act), 0, 0], 0.0);
        Ok(g)
    }

    fn gate_fused(&self, y: &GpuAct, rows: usize, n_ff: usize, act: Activation) -> Result<GpuAct> {
        let g = self.act(rows * n_ff);
        self.elementwise(
            "gate_fused",
            &g,
            Some(y),
            rows * n_ff,
            [act_code(act), n_ff as u32, 0],
            0.0,
        );
        Ok(g)
    }

    fn last_rows(&self, x: &GpuAct, rows: usize, keep: usize, width: usize) -> Result<GpuAct> {
        let y = self.act(keep * width);
        let from = ((rows - keep) * width * 4) as u64;
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(&x.buf, from, &y.buf, 0, (keep * width * 4) as u64));
        Ok(y)
    }

    fn softcap(&self, x: &mut GpuAct, cap: f32) -> Result<()> {
        self.elementwise("softcap", x, None, x.len, [0; 3], cap);
        Ok(())
    }

    fn scale(&self, x: &mut GpuAct, s: f32) -> Result<()> {
        self.elementwise("scale", x, None, x.len, [0; 3], s);
        Ok(())
    }

    fn read(&self, x: GpuAct) -> Result<Vec<f32>> {
        self.read_blocking(&x.buf, x.len)
    }

    #[cfg(target_arch = "wasm32")]
    fn read_awaited(&self, x: GpuAct) -> impl std::future::Future<Output = Result<Vec<f32>>> {
        self.read_async(x)
    }
}

fn act_code(act: Activation) -> u32 {
    match act {
        Activation::Silu => 0,
        Activation::GeluTanh => 1,
    }
}

impl Gpu {
    fn norm(&self, x: &GpuAct, w: &GpuAct, eps: f32, y: &GpuAct) {
        let segments = x.len / w.len.max(1);
        let params = [w.len as u32, eps.to_bits(), segments as u32, 0];
        self.dispatch(
            Kernel::RmsNorm,
            &[(0, &x.buf), (1, &w.buf), (2, &y.buf)],
            (3, &params),
            grid(segments),
        );
    }

    /// Upload of activations for tests and tools.
    pub fn upload(&self, data: &[f32]) -> Result<GpuAct> {
        self.act_from(data)
    }
}
