//! JavaScript bindings (wasm32 only). The Web Worker owns one [`WasmEngine`]; everything
//! crosses the boundary as bytes or JSON strings so the JS side needs no generated types.

use crate::backend::gpu::Gpu;
use crate::engine::{Engine, Prompt, Request};
use crate::error::Error;
use crate::gguf::Loader;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    // A stable name lets the page tell a bad file from an overflow or a full memory.
    err.set_name(e.code());
    err.into()
}

fn json_error(what: &str, e: serde_json::Error) -> JsValue {
    js_error(Error::InvalidRequest(format!("{what}: {e}")))
}

/// `initThreadPool(n)`: starts the Web Worker pool of the threaded build.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threads the matrix products use (1 in the single-thread build).
#[wasm_bindgen(js_name = threadCount)]
pub fn thread_count() -> usize {
    #[cfg(feature = "threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "threads"))]
    1
}

/// SHA-256 of bytes that arrive in chunks, to check a model against the hash its page
/// pinned (`integrity`) without holding the file.
#[wasm_bindgen]
pub struct Sha256Stream(sha2::Sha256);

#[wasm_bindgen]
impl Sha256Stream {
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Sha256Stream {
        use sha2::Digest;
        Sha256Stream(sha2::Sha256::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update(bytes);
    }

    /// The digest as 64 lowercase hex digits.
    #[wasm_bindgen(js_name = finishHex)]
    pub fn finish_hex(self) -> String {
        use sha2::Digest;
        self.0.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[wasm_bindgen(start)]
pub fn init() {
    console_error_panic_hook::set_once();
}

/// Bytes of wasm linear memory in use (grows, never shrinks).
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size(0) * 65536) as f64
}

/// SIMD kernels against their scalar references on random blocks: JSON `[[type, error]...]`.
#[wasm_bindgen(js_name = kernelSelfTest)]
pub fn kernel_self_test(seed: u32) -> String {
    serde_json::to_string(&crate::backend::kernels::self_test_random(seed as u64)).unwrap_or_default()
}

/// Traps the wasm instance on purpose (fault injection for the crash-recovery test): the same
/// `RuntimeError` a bug or an exhausted memory produces.
#[wasm_bindgen(js_name = faultInjectTrap)]
pub fn fault_inject_trap() {
    core::arch::wasm32::unreachable()
}

/// Milliseconds for `iters` products of a random `n × k` matrix of block type `dtype` (GGUF's
/// name, e.g. "q8_0"; Q4_1 if absent or unknown) with `rows` activation rows (a kernel
/// microbenchmark for the benchmark page).
#[wasm_bindgen(js_name = benchMatmul)]
pub fn bench_matmul(n: usize, k: usize, rows: usize, iters: usize, dtype: Option<String>) -> f64 {
    use crate::backend::kernels::{matmul, Weights};
    use candle_core::quantized::{GgmlDType, QTensor};
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let Ok(t) = candle_core::Tensor::from_vec(w, (n, k), &candle_core::Device::Cpu) else {
        return -1.0;
    };
    let key = |s: &str| s.to_lowercase().replace('_', "");
    let wanted = dtype.as_deref().map(key);
    let dtype = crate::backend::kernels::SUPPORTED
        .into_iter()
        .find(|d| Some(key(&format!("{d:?}"))) == wanted)
        .unwrap_or(GgmlDType::Q4_1);
    let Ok(q) = QTensor::quantize(&t, dtype) else {
        return -1.0;
    };
    let Ok(data) = q.data() else { return -1.0 };
    // Laid out as the engine keeps a weight matrix.
    let mut data = data.to_vec();
    let packed = crate::backend::kernels::pack(dtype, &mut data, k);
    let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 / 7.0 - 1.0).collect();
    let mut out = vec![0f32; rows * n];
    let weights = Weights {
        dtype,
        data: &data,
        out_dim: n,
        in_dim: k,
        packed,
    };
    let t0 = crate::engine::clock::now_ms();
    for _ in 0..iters {
        matmul(&weights, &x, rows, &mut out, true);
    }
    crate::engine::clock::now_ms() - t0
}

/// Takes a GGUF file chunk by chunk (from `fetch`, a `File` or storage).
#[wasm_bindgen]
pub struct WasmLoader {
    inner: Option<Loader>,
    /// Where weight matrices go as soon as their bytes are in (the WebGPU backend).
    gpu: Option<Gpu>,
}

/// An opened WebGPU device, for a loader to stream weights into.
#[wasm_bindgen]
pub struct WasmGpu {
    gpu: Gpu,
}

#[wasm_bindgen]
impl WasmGpu {
    /// The adapter and its limits (JSON).
    pub fn info(&self) -> String {
        serde_json::to_string(self.gpu.info()).unwrap_or_default()
    }

    /// Whether matrix products use the subgroup kernel: the worker turns it off on software
    /// adapters, which it recognises by name (wgpu only sees WebGPU's fallback flag).
    /// Returns the choice in effect (off where the adapter has no subgroups).
    #[wasm_bindgen(js_name = useSubgroupMatmul)]
    pub fn use_subgroup_matmul(&self, on: bool) -> bool {
        self.gpu.use_subgroup_matmul(on)
    }
}

/// Opens the WebGPU adapter and device (fails with the reason when there is none).
#[wasm_bindgen(js_name = openGpu)]
pub async fn open_gpu() -> Result<WasmGpu, JsValue> {
    Ok(WasmGpu {
        gpu: Gpu::new().await.map_err(js_error)?,
    })
}

#[wasm_bindgen]
impl WasmLoader {
    #[wasm_bindgen(constructor)]
    pub fn new(file_len: Option<f64>) -> WasmLoader {
        WasmLoader {
            inner: Some(Loader::new(file_len.map(|n| n as u64))),
            gpu: None,
        }
    }

    /// Weight matrices go to the GPU chunk by chunk as they arrive: neither the file nor a
    /// whole tensor is ever held in wasm memory. Call before the first `push`.
    #[wasm_bindgen(js_name = streamTo)]
    pub fn stream_to(&mut self, gpu: &WasmGpu) {
        if let Some(l) = self.inner.as_mut() {
            l.stream_to(Box::new(crate::backend::gpu::GpuSink::new(gpu.gpu.clone())));
        }
        self.gpu = Some(gpu.gpu.clone());
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        let l = self
            .inner
            .as_mut()
            .ok_or_else(|| js_error(Error::InvalidRequest("the loader is finished".into())))?;
        l.push(chunk).map_err(js_error)
    }

    /// Ends one file of a split model; the next `push` starts the next file.
    #[wasm_bindgen(js_name = nextFile)]
    pub fn next_file(&mut self, file_len: Option<f64>) -> Result<(), JsValue> {
        let l = self
            .inner
            .as_mut()
            .ok_or_else(|| js_error(Error::InvalidRequest("the loader is finished".into())))?;
        l.next_file(file_len.map(|n| n as u64)).map_err(js_error)
    }

    #[wasm_bindgen(js_name = bytesReceived)]
    pub fn bytes_received(&self) -> f64 {
        self.inner.as_ref().map_or(0.0, |l| l.bytes_received() as f64)
    }

    /// Ends the stream and builds the engine. `context_size` caps the KV cache.
    pub fn finish(&mut self, context_size: Option<usize>) -> Result<WasmEngine, JsValue> {
        let l = self
            .inner
            .take()
            .ok_or_else(|| js_error(Error::InvalidRequest("the loader is finished".into())))?;
        let gguf = l.finish_for_cpu().map_err(js_error)?;
        let mut inner = Engine::new(gguf, context_size).map_err(js_error)?;
        inner.warm_up().map_err(js_error)?;
        Ok(WasmEngine {
            inner: Rc::new(RefCell::new(inner)),
        })
    }
}

/// Ends a loader's stream and builds the engine on the GPU (WebGPU): the weights go into GPU
/// buffers tensor by tensor, each dropped from wasm memory once uploaded.
#[wasm_bindgen(js_name = finishGpu)]
pub async fn finish_gpu(mut loader: WasmLoader, context_size: Option<usize>) -> Result<WasmGpuEngine, JsValue> {
    let l = loader
        .inner
        .take()
        .ok_or_else(|| js_error(Error::InvalidRequest("the loader is finished".into())))?;
    let gguf = l.finish().map_err(js_error)?;
    let gpu = match loader.gpu.take() {
        Some(g) => g,
        None => Gpu::new().await.map_err(js_error)?,
    };
    let engine = Engine::with_backend(gguf, context_size, gpu.clone()).map_err(js_error)?;
    Ok(WasmGpuEngine {
        inner: Rc::new(RefCell::new(engine)),
        gpu,
    })
}

/// The engine on WebGPU. The browser cannot wait for the GPU, so `step` returns a Promise:
/// each step records its forward pass, submits it and awaits the logits. The engine is shared
/// with that Promise, so `cancel` may be called while a step is in flight.
#[wasm_bindgen]
pub struct WasmGpuEngine {
    inner: Rc<RefCell<Engine<Gpu>>>,
    gpu: Gpu,
}

fn busy() -> JsValue {
    js_error(Error::InvalidRequest("the engine is busy with a step".into()))
}

#[wasm_bindgen]
impl WasmGpuEngine {
    /// Model facts as JSON, with the adapter's.
    pub fn info(&self) -> Result<String, JsValue> {
        let e = self.inner.try_borrow().map_err(|_| busy())?;
        let c = &e.model.cfg;
        Ok(serde_json::json!({
            "architecture": c.arch,
            "layers": c.n_layer,
            "embedding": c.n_embd,
            "vocab": c.vocab_size,
            "context": e.context_size(),
            "chat_template": e.template.has_template(),
            "template_switches": e.template.switches(),
            "tool_format": e.template.tool_format(),
            "backend": "webgpu",
            "gpu": self.gpu.info(),
            "gpuWeightBytes": self.gpu.weight_bytes(),
            "gpuMatmul": if self.gpu.subgroup_matmul() { "subgroup" } else { "thread" },
        })
        .to_string())
    }

    pub fn start(&self, prompt: &str, request: &str) -> Result<(), JsValue> {
        let prompt: Prompt = serde_json::from_str(prompt).map_err(|e| json_error("prompt", e))?;
        let request: Request = serde_json::from_str(request).map_err(|e| json_error("request", e))?;
        let mut e = self.inner.try_borrow_mut().map_err(|_| busy())?;
        e.start(&prompt, &request).map_err(js_error)
    }

    /// One prefill chunk or one token: a Promise of the JSON event.
    pub fn step(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        let gpu = self.gpu.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let (step, pending) = inner
                .try_borrow_mut()
                .map_err(|_| busy())?
                .step_lazy()
                .map_err(js_error)?;
            if let Some(logits) = pending {
                let logits = gpu.read_async(logits).await;
                inner
                    .try_borrow_mut()
                    .map_err(|_| busy())?
                    .deliver(logits)
                    .map_err(js_error)?;
            }
            let json = serde_json::to_string(&step).map_err(|e| json_error("step", e))?;
            Ok(JsValue::from_str(&json))
        })
    }

    pub fn cancel(&self) -> Option<String> {
        let mut e = self.inner.try_borrow_mut().ok()?;
        e.cancel().and_then(|s| serde_json::to_string(&s).ok())
    }

    pub fn reset(&self) {
        if let Ok(mut e) = self.inner.try_borrow_mut() {
            e.reset()
        }
    }

    /// Uses this chat template instead of the file's.
    #[wasm_bindgen(js_name = setChatTemplate)]
    pub fn set_chat_template(&self, source: &str) -> Result<(), JsValue> {
        let mut e = self.inner.try_borrow_mut().map_err(|_| busy())?;
        e.set_chat_template(source).map_err(js_error)
    }

    /// What scoring and the recipes await between two steps: `pause()` resolves to whether
    /// to stop (they then fail with `AbortError`).
    #[wasm_bindgen(js_name = setPause)]
    pub fn set_pause(&self, pause: js_sys::Function) -> Result<(), JsValue> {
        let mut e = self.inner.try_borrow_mut().map_err(|_| busy())?;
        e.set_pause(Some(pause_from(pause)));
        Ok(())
    }

    /// Loses the GPU device on purpose (the test of the CPU fallback).
    #[wasm_bindgen(js_name = faultInjectDeviceLoss)]
    pub fn fault_inject_device_loss(&self) {
        self.gpu.destroy();
    }

    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        let e = self.inner.try_borrow().map_err(|_| busy())?;
        e.tokenizer.encode(text, true, true).map_err(js_error)
    }

    /// [`WasmEngine::score`] on the GPU.
    pub fn score(&self, prompt: String, continuations: String) -> js_sys::Promise {
        run_job(self.inner.clone(), Job::Score { prompt, continuations })
    }

    /// [`WasmEngine::classify`] on the GPU.
    pub fn classify(&self, text: String, labels: String, options: String, preset: Option<String>) -> js_sys::Promise {
        run_job(
            self.inner.clone(),
            Job::Classify {
                text,
                labels,
                options,
                preset,
            },
        )
    }

    /// [`WasmEngine::task`] on the GPU.
    pub fn task(&self, kind: String, text: String, args: String, options: String) -> js_sys::Promise {
        run_job(
            self.inner.clone(),
            Job::Task {
                kind,
                text,
                args,
                options,
            },
        )
    }
}

/// Runs a job to its end, holding the engine all the while: the worker sends one request at
/// a time, and a call that comes in meanwhile finds the engine busy (the borrow across the
/// awaits is the point, so that nothing else steps the engine mid-job; `cancel` reaches it
/// through the pause).
#[allow(clippy::await_holding_refcell_ref)]
fn run_job<B: crate::backend::Backend + 'static>(inner: Rc<RefCell<Engine<B>>>, job: Job) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let mut e = inner.try_borrow_mut().map_err(|_| busy())?;
        let json = job.run(&mut e).await.map_err(js_error)?;
        Ok(JsValue::from_str(&json))
    })
}

/// The worker's pause as the engine's: `pause()` returns a Promise of whether to stop (it
/// yields to the worker's event loop first, so that a cancel message is seen).
fn pause_from(f: js_sys::Function) -> crate::engine::Pause {
    Box::new(move || {
        let called = f.call0(&JsValue::NULL);
        Box::pin(async move {
            let Ok(answer) = called else { return false };
            let answer = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&answer)).await;
            answer.is_ok_and(|v| v.is_truthy())
        })
    })
}

/// The engine on the CPU. Chat steps run at once; scoring and the recipes return Promises,
/// pausing between steps (see `setPause`) so that they can be cancelled.
#[wasm_bindgen]
pub struct WasmEngine {
    inner: Rc<RefCell<Engine>>,
}

impl WasmEngine {
    fn engine(&self) -> Result<std::cell::RefMut<'_, Engine>, JsValue> {
        self.inner.try_borrow_mut().map_err(|_| busy())
    }
}

#[wasm_bindgen]
impl WasmEngine {
    /// Model facts as JSON.
    pub fn info(&self) -> Result<String, JsValue> {
        let e = self.engine()?;
        let c = &e.model.cfg;
        Ok(serde_json::json!({
            "architecture": c.arch,
            "layers": c.n_layer,
            "embedding": c.n_embd,
            "vocab": c.vocab_size,
            "context": e.context_size(),
            "chat_template": e.template.has_template(),
            "template_switches": e.template.switches(),
            "tool_format": e.template.tool_format(),
        })
        .to_string())
    }

    /// Starts a request. `prompt` is `{"chat":[{role,content}...]}`, `{"text":"..."}` or
    /// `{"tokens":[...]}`; `request` holds `sampling`, `max_tokens` and `stop`.
    pub fn start(&self, prompt: &str, request: &str) -> Result<(), JsValue> {
        let prompt: Prompt = serde_json::from_str(prompt).map_err(|e| json_error("prompt", e))?;
        let request: Request = serde_json::from_str(request).map_err(|e| json_error("request", e))?;
        self.engine()?.start(&prompt, &request).map_err(js_error)
    }

    /// One prefill chunk or one token, as a JSON event (`prefill`, `token` or `done`).
    pub fn step(&self) -> Result<String, JsValue> {
        let step = self.engine()?.step().map_err(js_error)?;
        serde_json::to_string(&step).map_err(|e| json_error("step", e))
    }

    /// Ends the running request; returns its `done` event, if one was running.
    pub fn cancel(&self) -> Option<String> {
        let mut e = self.engine().ok()?;
        e.cancel().and_then(|s| serde_json::to_string(&s).ok())
    }

    /// Forgets the cached conversation.
    pub fn reset(&self) {
        if let Ok(mut e) = self.engine() {
            e.reset()
        }
    }

    /// Uses this chat template instead of the file's.
    #[wasm_bindgen(js_name = setChatTemplate)]
    pub fn set_chat_template(&self, source: &str) -> Result<(), JsValue> {
        self.engine()?.set_chat_template(source).map_err(js_error)
    }

    /// What scoring and the recipes await between two steps: `pause()` resolves to whether
    /// to stop (they then fail with `AbortError`).
    #[wasm_bindgen(js_name = setPause)]
    pub fn set_pause(&self, pause: js_sys::Function) -> Result<(), JsValue> {
        self.engine()?.set_pause(Some(pause_from(pause)));
        Ok(())
    }

    /// SIMD kernels against their scalar references on this model's own weights (JSON).
    #[wasm_bindgen(js_name = kernelSelfTest)]
    pub fn kernel_self_test(&self) -> Result<String, JsValue> {
        Ok(serde_json::to_string(&self.engine()?.model.kernel_self_test()).unwrap_or_default())
    }

    /// Log-probabilities of continuations after a prompt: a Promise of JSON
    /// `[{logprob, token_logprobs}]`.
    pub fn score(&self, prompt: String, continuations: String) -> js_sys::Promise {
        run_job(self.inner.clone(), Job::Score { prompt, continuations })
    }

    /// Label probabilities for `text`: a Promise of JSON `[{label, probability, logprob}]`.
    /// `options`: `{instruction, examples: [[text, label]...], calibrate}`; `preset:
    /// "sentiment"` ignores labels.
    pub fn classify(&self, text: String, labels: String, options: String, preset: Option<String>) -> js_sys::Promise {
        let job = Job::Classify {
            text,
            labels,
            options,
            preset,
        };
        run_job(self.inner.clone(), job)
    }

    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.engine()?.tokenizer.encode(text, true, true).map_err(js_error)
    }

    /// A text recipe, run to the end: a Promise of its JSON result. `kind` and `args` (JSON):
    /// `translate {to, from?}`, `summarize {max_words | points}`, `edit {instruction}`,
    /// `extract {schema}`; `options` are [`crate::recipes::TaskOptions`] (persona, reasoning,
    /// examples, ...).
    pub fn task(&self, kind: String, text: String, args: String, options: String) -> js_sys::Promise {
        let job = Job::Task {
            kind,
            text,
            args,
            options,
        };
        run_job(self.inner.clone(), job)
    }
}

/// Scoring, classification and the text recipes, written once for both engines: the CPU's
/// reads come at once, the GPU's are awaited.
enum Job {
    Score {
        prompt: String,
        continuations: String,
    },
    Classify {
        text: String,
        labels: String,
        options: String,
        preset: Option<String>,
    },
    Task {
        kind: String,
        text: String,
        args: String,
        options: String,
    },
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> crate::Result<T> {
    serde_json::from_str(json).map_err(|e| Error::InvalidRequest(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> crate::Result<String> {
    serde_json::to_string(v).map_err(|e| Error::InvalidRequest(format!("result: {e}")))
}

impl Job {
    /// The result as JSON.
    async fn run<B: crate::backend::Backend>(self, e: &mut Engine<B>) -> crate::Result<String> {
        use crate::recipes::{
            classify_async, edit_async, extract_async, sentiment_async, summarize_async, translate_async,
            ClassifyOptions, SummaryLength, TaskOptions,
        };
        match self {
            Job::Score { prompt, continuations } => {
                let prompt: Prompt = parse("prompt", &prompt)?;
                let conts: Vec<String> = parse("continuations", &continuations)?;
                let kwargs = crate::tokenizer::TemplateKwargs::new();
                to_json(&e.score_async(&prompt, &conts, &kwargs).await?)
            }
            Job::Classify {
                text,
                labels,
                options,
                preset,
            } => {
                let opts: ClassifyOptions = parse("options", &options)?;
                let out = if preset.as_deref() == Some("sentiment") {
                    sentiment_async(e, &text, opts.calibrate).await?
                } else {
                    let labels: Vec<String> = parse("labels", &labels)?;
                    classify_async(e, &text, &labels, &opts).await?
                };
                to_json(&out)
            }
            Job::Task {
                kind,
                text,
                args,
                options,
            } => {
                let args: serde_json::Value = parse("args", &args)?;
                let opts: TaskOptions = parse("options", &options)?;
                let arg = |k: &str| args.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let need = |k: &str| arg(k).ok_or_else(|| Error::InvalidRequest(format!("{kind} needs `{k}`")));
                match kind.as_str() {
                    "translate" => {
                        to_json(&translate_async(e, &text, arg("from").as_deref(), &need("to")?, &opts).await?)
                    }
                    "edit" => to_json(&edit_async(e, &text, &need("instruction")?, &opts).await?),
                    "summarize" => {
                        let n = |k: &str| args.get(k).and_then(|v| v.as_u64()).map(|n| n as usize);
                        let len = match (n("points"), n("max_words")) {
                            (Some(p), _) => SummaryLength::Points(p),
                            (None, Some(w)) => SummaryLength::MaxWords(w),
                            (None, None) => SummaryLength::MaxWords(60),
                        };
                        to_json(&summarize_async(e, &text, len, &opts).await?)
                    }
                    "extract" => {
                        let schema = args
                            .get("schema")
                            .ok_or_else(|| Error::InvalidRequest("extract needs `schema`".into()))?;
                        to_json(&extract_async(e, &text, schema, &opts).await?)
                    }
                    other => Err(Error::InvalidRequest(format!("unknown task `{other}`"))),
                }
            }
        }
    }
}

/// A sentence-embedding model (BERT family, e.g. all-MiniLM-L6-v2) from its Hugging Face files.
#[wasm_bindgen]
pub struct WasmEmbedder {
    inner: crate::embed::Embedder,
}

#[wasm_bindgen]
impl WasmEmbedder {
    #[wasm_bindgen(constructor)]
    pub fn new(
        config: &[u8],
        weights: Vec<u8>,
        tokenizer: &[u8],
        max_tokens: Option<usize>,
    ) -> Result<WasmEmbedder, JsValue> {
        let inner = crate::embed::Embedder::from_bytes(
            config,
            weights,
            tokenizer,
            max_tokens.unwrap_or(crate::embed::DEFAULT_MAX_TOKENS),
        )
        .map_err(js_error)?;
        Ok(WasmEmbedder { inner })
    }

    pub fn dims(&self) -> usize {
        self.inner.dims()
    }

    /// Unit-length vectors, concatenated (`texts.len() × dims` floats).
    pub fn embed(&self, texts: &str) -> Result<Vec<f32>, JsValue> {
        let texts: Vec<String> = serde_json::from_str(texts).map_err(|e| json_error("texts", e))?;
        Ok(self.inner.embed(&texts).map_err(js_error)?.concat())
    }

    #[wasm_bindgen(js_name = countTokens)]
    pub fn count_tokens(&self, text: &str) -> Result<usize, JsValue> {
        self.inner.count_tokens(text).map_err(js_error)
    }
}
