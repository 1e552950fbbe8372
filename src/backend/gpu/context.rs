//! The device, its limits, the compiled kernels and the command buffer being recorded.

use super::kernels::Kernel;
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the adapter is and what it allows (shown in the UI and the benchmark).
#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    /// Optional features the adapter has (the kernels do not need them).
    pub shader_f16: bool,
    pub subgroups: bool,
}

struct Ctx {
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: wgpu::Limits,
    info: GpuInfo,
    pipelines: Mutex<HashMap<Kernel, wgpu::ComputePipeline>>,
    /// The command buffer being recorded, one per thread: a forward pass records and reads on
    /// one thread, so two engines sharing the device from two threads never mix their passes.
    encoders: Mutex<HashMap<std::thread::ThreadId, wgpu::CommandEncoder>>,
    /// Buffers that live for one pass (activations, parameters, scratch), destroyed once its
    /// logits are read: in the browser a dropped buffer is only freed by the garbage collector,
    /// and a reply makes hundreds of them per token.
    transient: Mutex<HashMap<std::thread::ThreadId, Vec<wgpu::Buffer>>>,
    /// The first validation, out-of-memory or device-lost error since the last read.
    error: Arc<Mutex<Option<String>>>,
    weight_bytes: Mutex<u64>,
    subgroup_matmul: std::sync::atomic::AtomicBool,
}

/// A handle to the GPU (cheap to clone; clones share the device and the recording).
#[derive(Clone)]
pub struct Gpu {
    ctx: Arc<Ctx>,
}

/// Buffer sizes are whole 4-byte words, at least one.
fn padded(bytes: usize) -> u64 {
    (bytes.max(4).div_ceil(4) * 4) as u64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these in a state worse than "possibly stale".
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Opens the first high-performance adapter: WebGPU in the browser, Vulkan natively.
    pub async fn new() -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = if cfg!(target_arch = "wasm32") {
            wgpu::Backends::BROWSER_WEBGPU
        } else {
            wgpu::Backends::VULKAN
        };
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter: {e}")))?;
        let a = adapter.get_info();
        let features = adapter.features();
        // Ask for the adapter's own limits: the defaults cap storage bindings at 128 MiB,
        // which would split the weights into more buffers than needed.
        let limits = adapter.limits();
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("candlelit"),
                required_features: if subgroups {
                    wgpu::Features::SUBGROUP
                } else {
                    wgpu::Features::empty()
                },
                required_limits: limits.clone(),
                experimental_features: Default::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: Default::default(),
            })
            .await
            .map_err(|e| Error::Gpu(format!("the GPU refused a device: {e}")))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&slot).get_or_insert_with(|| e.to_string());
        }));
        let slot = error.clone();
        device.set_device_lost_callback(move |reason, msg| {
            // The loss explains every error after it: it replaces them.
            *lock(&slot) = Some(format!("device lost ({reason:?}): {msg}"));
        });
        let info = GpuInfo {
            name: a.name,
            backend: format!("{:?}", a.backend),
            device_type: format!("{:?}", a.device_type),
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer: limits.max_buffer_size,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups,
        };
        // On a GPU, reading each weight row with a whole workgroup coalesces the memory
        // accesses. CPU adapters (lavapipe, SwiftShader) run the thread-per-row kernel 13x
        // faster (measured on lavapipe), so they keep it.
        let subgroup_matmul = subgroups && a.device_type != wgpu::DeviceType::Cpu;
        // In the browser the wgpu handles are not Send; the context never leaves the worker's
        // thread there, and one Arc type serves both targets.
        #[allow(clippy::arc_with_non_send_sync)]
        Ok(Gpu {
            ctx: Arc::new(Ctx {
                device,
                queue,
                limits,
                info,
                pipelines: Mutex::new(HashMap::new()),
                encoders: Mutex::new(HashMap::new()),
                transient: Mutex::new(HashMap::new()),
                error,
                weight_bytes: Mutex::new(0),
                subgroup_matmul: std::sync::atomic::AtomicBool::new(subgroup_matmul),
            }),
        })
    }

    /// [`Gpu::new`], waiting for the adapter (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Gpu> {
        pollster::block_on(Self::new())
    }

    /// Destroys the device, as a driver reset would (fault injection for the fallback test):
    /// the next read fails with a `Gpu` error.
    pub fn destroy(&self) {
        self.ctx.device.destroy();
    }

    pub fn info(&self) -> &GpuInfo {
        &self.ctx.info
    }

    /// Whether the matrix products use the subgroup kernel.
    pub fn subgroup_matmul(&self) -> bool {
        self.ctx.subgroup_matmul.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Chooses the matrix product kernel (tests and benchmarks compare the two); the subgroup
    /// one only where the adapter has subgroups. Returns the choice in effect.
    pub fn use_subgroup_matmul(&self, on: bool) -> bool {
        let on = on && self.ctx.info.subgroups;
        self.ctx.subgroup_matmul.store(on, std::sync::atomic::Ordering::Relaxed);
        on
    }

    /// Bytes of weights uploaded so far.
    pub fn weight_bytes(&self) -> u64 {
        *lock(&self.ctx.weight_bytes)
    }

    /// The largest buffer one kernel binding may see.
    pub(super) fn max_binding(&self) -> u64 {
        let l = &self.ctx.limits;
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
    }

    fn check_size(&self, bytes: usize) -> Result<u64> {
        let size = padded(bytes);
        if size > self.max_binding() {
            return Err(Error::OutOfMemory(bytes));
        }
        Ok(size)
    }

    /// A zeroed storage buffer (activations, scratch, cache, weights).
    pub(super) fn storage(&self, bytes: usize, label: &str) -> wgpu::Buffer {
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded(bytes),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `bytes` (with a 4-byte tail for the kernels' unaligned
    /// reads). Written with `queue.write_buffer`: in the browser that copies straight from
    /// wasm memory, where a mapped buffer would need a second wasm-side copy.
    pub(super) fn upload_bytes(&self, bytes: &[u8], label: &str) -> Result<wgpu::Buffer> {
        self.check_size(bytes.len() + 4)?;
        let buf = self.storage(bytes.len() + 4, label);
        self.write_padded(&buf, bytes);
        Ok(buf)
    }

    /// `bytes` at the start of `buf`, the last partial word padded with zeros.
    pub(super) fn write_padded(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        let aligned = bytes.len() / 4 * 4;
        if aligned > 0 {
            self.write_at(buf, 0, &bytes[..aligned]);
        }
        if aligned < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - aligned].copy_from_slice(&bytes[aligned..]);
            self.write_at(buf, aligned, &tail);
        }
    }

    /// An empty weight buffer of `bytes` (plus the 4-byte tail), counted in
    /// [`Gpu::weight_bytes`].
    pub(super) fn weight_buffer(&self, bytes: usize) -> Result<wgpu::Buffer> {
        let size = self.check_size(bytes + 4)?;
        *lock(&self.ctx.weight_bytes) += size;
        Ok(self.storage(bytes + 4, "weights"))
    }

    /// Writes whole 4-byte words at `offset` (a multiple of 4).
    pub(super) fn write_at(&self, buf: &wgpu::Buffer, offset: usize, bytes: &[u8]) {
        self.ctx.queue.write_buffer(buf, offset as u64, bytes);
    }

    /// Hands staged writes to the device.
    pub(super) fn flush_writes(&self) {
        self.ctx.queue.submit(std::iter::empty());
    }

    /// Whether two handles share one device (a buffer of one is not usable on another).
    pub(super) fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }

    fn pipeline(&self, k: Kernel) -> wgpu::ComputePipeline {
        let mut cache = lock(&self.ctx.pipelines);
        cache
            .entry(k)
            .or_insert_with(|| {
                let (src, entry) = k.source();
                let module = self.ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(entry),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                });
                self.ctx
                    .device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    })
            })
            .clone()
    }

    /// Marks a buffer as living only for the pass being recorded.
    pub(super) fn transient(&self, buf: wgpu::Buffer) -> wgpu::Buffer {
        lock(&self.ctx.transient)
            .entry(std::thread::current().id())
            .or_default()
            .push(buf.clone());
        buf
    }

    fn release_pass(bufs: Vec<wgpu::Buffer>) {
        for b in bufs {
            b.destroy();
        }
    }

    pub(super) fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut all = lock(&self.ctx.encoders);
        let enc = all.entry(std::thread::current().id()).or_insert_with(|| {
            self.ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") })
        });
        f(enc)
    }

    /// Records one kernel launch: storage buffers at the given bindings, the parameters as a
    /// uniform at `params.0`.
    pub(super) fn dispatch(&self, k: Kernel, binds: &[(u32, &wgpu::Buffer)], params: (u32, &[u32]), groups: [u32; 3]) {
        let pipeline = self.pipeline(k);
        let device = &self.ctx.device;
        // Written through the queue, not mapped at creation: on a lost device wgpu's
        // `create_buffer_init` panics, while this records an error the next read reports.
        let bytes: &[u8] = bytemuck::cast_slice(params.1);
        let pbuf = self.transient(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }));
        self.ctx.queue.write_buffer(&pbuf, 0, bytes);
        let mut entries: Vec<wgpu::BindGroupEntry> = binds
            .iter()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: *i,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: params.0,
            resource: pbuf.as_entire_binding(),
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        self.with_encoder(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
    }

    /// Submits what was recorded and copies `len` floats of `buf` into a fresh mappable
    /// buffer; also returns the pass's transient buffers, to destroy once it is read.
    fn submit_readback(&self, buf: &wgpu::Buffer, len: usize) -> (wgpu::Buffer, Vec<wgpu::Buffer>) {
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(buf, 0, &staging, 0, (len * 4) as u64));
        let enc = lock(&self.ctx.encoders).remove(&std::thread::current().id());
        if let Some(enc) = enc {
            self.ctx.queue.submit([enc.finish()]);
        }
        let pass = lock(&self.ctx.transient)
            .remove(&std::thread::current().id())
            .unwrap_or_default();
        (staging, pass)
    }

    fn take_error(&self) -> Result<()> {
        match lock(&self.ctx.error).take() {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    fn copy_out(staging: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
            view[..len * 4]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        staging.unmap();
        Ok(out)
    }

    /// Runs what was recorded and waits for `len` floats of `buf` (native only: the
    /// browser cannot block, see [`Gpu::read_async`]).
    pub(super) fn read_blocking(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::Gpu(
                "the browser's GPU cannot be waited for; read asynchronously".into(),
            ));
        }
        let (staging, pass) = self.submit_readback(buf, len);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        Self::release_pass(pass);
        self.take_error()?;
        match rx.recv() {
            Ok(Ok(())) => Self::copy_out(&staging, len),
            Ok(Err(e)) => Err(Error::Gpu(format!("reading back: {e}"))),
            Err(_) => Err(Error::Gpu("the GPU never answered the read".into())),
        }
    }

    /// Runs what was recorded and resolves with the activations, without blocking the
    /// thread (the browser's map callback fires from its event loop).
    #[cfg(target_arch = "wasm32")]
    pub async fn read_async(&self, x: super::GpuAct) -> Result<Vec<f32>> {
        use std::cell::RefCell;
        use std::rc::Rc;
        let (staging, pass) = self.submit_readback(&x.buf, x.len);
        let result: Rc<RefCell<Option<std::result::Result<(), wgpu::BufferAsyncError>>>> = Rc::default();
        let slot = result.clone();
        let staging_ref = staging.clone();
        let promise = js_sys::Promise::new(&mut move |resolve, _reject| {
            let slot = slot.clone();
            staging_ref.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                *slot.borrow_mut() = Some(r);
                let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
            });
        });
        wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .map_err(|_| Error::Gpu("the GPU read was rejected".into()))?;
        Self::release_pass(pass);
        self.take_error()?;
        let r = result.borrow_mut().take();
        match r {
            Some(Ok(())) => Self::copy_out(&staging, x.len),
            Some(Err(e)) => Err(Error::Gpu(format!("reading back: {e}"))),
            None => Err(Error::Gpu("the GPU never answered the read".into())),
        }
    }
}
