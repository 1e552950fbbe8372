// The Web Worker that owns the wasm engine. It speaks the message protocol in
// protocol.md: the page (through client.js) sends requests with ids, the worker answers
// with progress, token, done and error events carrying the same id.

import { cancelled, loadUrl, streamBlob } from './download.js';
import { ModelStore } from './storage.js';
import { downloadAhead, headSize, partUrls, partsProgress } from './split.js';

// Four builds of the engine: `wasm/` (single thread, runs anywhere) and `wasm-mt/` (shared
// memory and a pool of Web Workers, only where the page is cross-origin isolated), each also
// as `-relaxed` (relaxed SIMD: one-instruction 8-bit dot products) for browsers that run it.
let wasm = null;
let ready = null;
let threading = { threads: 1, reason: 'single-thread build requested', simd: 'simd128' };

// `simd`: 'auto' takes the relaxed build where the browser runs it; 'simd128' never does.
async function start(requested, simd = 'auto') {
  await import('./simd-probe.js');
  const relaxed = simd !== 'simd128' && self.candlelitRelaxedSimd();
  const want = Math.max(1, Math.floor(requested || 1));
  let reason = 'single-thread build requested';
  if (want > 1 && self.crossOriginIsolated) {
    try {
      const mt = await startBuild('wasm-mt', relaxed, async (m) => {
        await m.default();
        await m.initThreadPool(want);
      });
      wasm = mt.module;
      threading = { threads: wasm.threadCount(), reason: 'threaded build', simd: mt.simd };
      return;
    } catch (e) {
      reason = `threaded build unavailable (${e.message})`;
    }
  } else if (want > 1) {
    reason = 'the page is not cross-origin isolated, so threads are unavailable';
  }
  const st = await startBuild('wasm', relaxed, (m) => m.default());
  wasm = st.module;
  threading = { threads: 1, reason, simd: st.simd };
}

// The relaxed build when asked, else (or when it cannot be fetched, e.g. offline before the
// service worker kept it) the SIMD128 one.
async function startBuild(dir, relaxed, init) {
  if (relaxed) {
    try {
      const module = await import(`./${dir}-relaxed/candlelit.js`);
      await init(module);
      return { module, simd: 'relaxed' };
    } catch {
      // fall through to the SIMD128 build
    }
  }
  const module = await import(`./${dir}/candlelit.js`);
  await init(module);
  return { module, simd: 'simd128' };
}

let engine = null;
// Which backend runs `engine`, and why: { name: 'cpu' | 'webgpu', reason, adapter? }.
let backend = null;
let embedder = null;
let broken = null;
let current = null; // { id, cancelled }
let loading = null; // { id, controller } of the load in progress
const queuedLoads = new Set(); // loads waiting behind another request
const cancelledLoads = new Set(); // of those, the ones cancelled before they started

const post = (msg) => self.postMessage(msg);

// Yields to the event loop so that a `cancel` message is handled between two tokens.
// A MessageChannel round-trip is not clamped like setTimeout's 4 ms.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const yieldToEvents = () => new Promise((r) => {
  waiting.push(r);
  channel.port2.postMessage(0);
});

function errorEvent(id, e) {
  // A RuntimeError means the wasm instance trapped (a bug or memory exhausted): it cannot
  // be used again, and the page must start a new worker.
  const fatal = e instanceof WebAssembly.RuntimeError;
  if (fatal) {
    broken = e;
    engine = null;
  }
  const name = fatal ? 'EngineCrashed' : e?.name || 'Error';
  const message = fatal
    ? `The engine stopped (${e.message}). This can mean the browser ran out of memory for this model. Load a model again.`
    : String(e?.message ?? e);
  return { type: 'error', id, name, message, fatal };
}

// What WebGPU offers here, from the adapter itself (a page may have `navigator.gpu` and
// still no adapter). Software adapters (SwiftShader, lavapipe) are noted: the SIMD CPU path
// beats them, so `auto` does not pick them.
async function probeGpu() {
  if (!self.navigator?.gpu) return { ok: false, reason: 'this browser has no WebGPU' };
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { ok: false, reason: `the WebGPU adapter request failed (${e.message})` };
  }
  if (!adapter) return { ok: false, reason: 'no WebGPU adapter is available' };
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unnamed adapter';
  const software = Boolean(info.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe|software/i.test(name);
  return {
    ok: true,
    software,
    adapter: name,
    features: [...adapter.features],
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  };
}

// `auto` takes a hardware WebGPU adapter when there is one, else the CPU; `webgpu` insists
// (and fails with the reason); `cpu` never probes.
async function chooseBackend(want) {
  if (want === 'cpu') return { name: 'cpu', reason: 'requested' };
  const probe = await probeGpu();
  if (want === 'webgpu') {
    if (!probe.ok) throw Object.assign(new Error(`WebGPU is unavailable: ${probe.reason}.`), { name: 'NoWebGPU' });
    return { name: 'webgpu', reason: 'requested', adapter: probe.adapter, features: probe.features, software: probe.software };
  }
  if (probe.ok && !probe.software) return { name: 'webgpu', reason: 'auto: a hardware WebGPU adapter', adapter: probe.adapter, features: probe.features, software: probe.software };
  const why = probe.ok ? `only a software WebGPU adapter (${probe.adapter}), slower than the SIMD CPU path` : probe.reason;
  return { name: 'cpu', reason: `auto: ${why}` };
}

async function load(id, source, options = {}, signal) {
  await ready;
  engine?.free();
  engine = null;
  backend = null;
  const want = options.backend ?? 'auto';
  if (!['auto', 'webgpu', 'cpu'].includes(want)) throw new Error(`load: backend must be 'auto', 'webgpu' or 'cpu', not ${want}`);
  if (!['auto', 'subgroup', 'thread', undefined].includes(options.gpuMatmul)) throw new Error(`load: gpuMatmul must be 'auto', 'subgroup' or 'thread', not ${options.gpuMatmul}`);
  const chosen = await chooseBackend(want);
  try {
    return await loadOn(id, source, options, chosen, signal);
  } catch (e) {
    // Under `auto`, the GPU refusing (opening the device, its memory while the weights stream
    // in, a lost device) is a reason to use the CPU, not a failed load; the file comes from
    // storage the second time.
    if (chosen.name !== 'webgpu' || want !== 'auto' || !['Gpu', 'OutOfMemory'].includes(e?.name)) throw e;
    const reason = `auto: WebGPU failed (${e.message}); using the CPU`;
    return loadOn(id, source, options, { name: 'cpu', reason }, signal);
  }
}

/**
 * The SHA-256 a load pins, as hex: Subresource Integrity's `sha256-<base64>` or 64 hex digits.
 */
function pinnedSha256(integrity) {
  const s = String(integrity).trim();
  const sri = /^sha256-([A-Za-z0-9+/]{43}=)$/.exec(s);
  if (sri) return [...atob(sri[1])].map((c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
  if (/^[0-9a-fA-F]{64}$/.test(s)) return s.toLowerCase();
  throw Object.assign(new Error(`integrity: expected "sha256-<base64>" or 64 hex digits, got "${s.slice(0, 80)}"`), { name: 'InvalidRequest' });
}

/** The SHA-256 of each file a load pins: one string, or one per part of a split model. */
function pinnedParts(integrity) {
  if (integrity == null || integrity === '') return null;
  const list = Array.isArray(integrity) ? integrity : [integrity];
  if (!list.length) throw Object.assign(new Error('integrity: an empty list pins nothing; leave it out instead.'), { name: 'InvalidRequest' });
  return list.map(pinnedSha256);
}

function checkPinCount(expected, parts) {
  if (expected && expected.length !== parts) {
    const given = `${expected.length} SHA-256 ${expected.length === 1 ? 'hash' : 'hashes'}`;
    throw Object.assign(new Error(`integrity gives ${given}, but this model comes in ${parts} ${parts === 1 ? 'file' : 'parts'}; give one per part, in order.`), { name: 'InvalidRequest' });
  }
}

/** Each part's size from what storage recorded, or a HEAD request; null where unknown. */
async function partSizes(urls) {
  if (urls.length < 2) return [null];
  const store = await ModelStore.open().catch(() => null);
  return Promise.all(
    urls.map(async (url) => {
      const total = (await store?.meta(ModelStore.nameFor(url)))?.total;
      return total || headSize(url);
    }),
  );
}

async function loadOn(id, source, options, chosen, signal) {
  let loader = null;
  // One hash per part (index = part), of exactly the bytes loaded.
  const hashers = [];
  const expected = pinnedParts(options.integrity);
  const t0 = performance.now();
  // On WebGPU the device opens first, so that the weights go to the GPU chunk by chunk as
  // they arrive (wasm memory never holds the file).
  const gpu = chosen.name === 'webgpu' ? await wasm.openGpu() : null;
  try {
    // The subgroup matrix product (a workgroup per weight row) suits GPUs; CPUs posing as one
    // run the thread-per-row kernel faster. `gpuMatmul` overrides the choice (to compare them).
    const kernel = options.gpuMatmul ?? 'auto';
    const subgroups = gpu?.useSubgroupMatmul(kernel === 'subgroup' || (kernel === 'auto' && !chosen.software));
    if (gpu && kernel === 'subgroup' && !subgroups) {
      // wgpu 30's WebGPU backend does not request the 'subgroups' feature even where the
      // adapter offers it, so in browsers the engine has no subgroups yet.
      const why = chosen.features?.includes('subgroups') ? 'the adapter has subgroups, but the engine (wgpu) cannot request them in a browser yet' : 'the adapter has no subgroups';
      throw Object.assign(new Error(`The subgroup matrix kernel is unavailable: ${why}.`), { name: 'Gpu' });
    }
    const onProgress = (p) => post({ type: 'progress', id, ...p });
    // Each part's sink: the first opens the loader, later ones continue it. A part's hash is
    // of exactly the bytes loaded; a stored copy already verified against the same hash is
    // not hashed again: storage is this origin's own, as trusted as the page (hashing costs
    // ~0.3 s per 100 MB).
    const startPart = (i) => (total, stored) => {
      if (i === 0) {
        loader?.free();
        loader = new wasm.WasmLoader(total);
        if (gpu) loader.streamTo(gpu);
      } else {
        loader.nextFile(total);
      }
      hashers[i]?.free();
      hashers[i] = expected && stored?.sha256 !== expected[i] ? new wasm.Sha256Stream() : null;
      const hasher = hashers[i];
      if (!hasher) return (chunk) => loader.push(chunk);
      return (chunk) => {
        hasher.update(chunk);
        loader.push(chunk);
      };
    };
    let origin;
    if (source.url) {
      const urls = partUrls(source.url);
      checkPinCount(expected, urls.length);
      const progress = partsProgress(onProgress, await partSizes(urls));
      const ahead = downloadAhead(urls, (url, i, inner) => loadUrl(url, null, { onProgress: progress(i), signal: inner }), signal);
      const parts = [];
      try {
        for (const [i, url] of urls.entries()) {
          if (i) await ahead.done[i];
          parts.push(await loadUrl(url, startPart(i), { onProgress: progress(i), signal }));
        }
      } finally {
        ahead.stop();
      }
      origin = { ...parts[0], fromStorage: parts.every((p) => p.fromStorage), ...(urls.length > 1 && { parts: urls.length }) };
    } else if (source.file || source.files) {
      // Files picked together are a split model's parts: their names put them in order.
      const files = source.files ? [...source.files].sort((a, b) => a.name.localeCompare(b.name)) : [source.file];
      checkPinCount(expected, files.length);
      const progress = partsProgress(onProgress, files.map((f) => f.size));
      for (const [i, f] of files.entries()) await streamBlob(f, startPart(i)(f.size), progress(i), 'file', signal);
      origin = { name: files[0].name, fromStorage: false, ...(files.length > 1 && { parts: files.length }) };
    } else if (source.stored) {
      const store = await ModelStore.open();
      const meta = await store.meta(source.stored);
      const urls = meta?.url ? partUrls(meta.url) : [null];
      checkPinCount(expected, urls.length);
      const names = urls.map((u, i) => (i ? ModelStore.nameFor(u) : source.stored));
      const files = [];
      for (const [i, name] of names.entries()) {
        const file = await store.complete(name, i ? undefined : meta);
        const which = urls.length > 1 ? `Part ${i + 1} of ${urls.length} of ${source.stored} (${name}) is not stored complete.` : `No complete stored model named ${source.stored}.`;
        if (!file) throw Object.assign(new Error(which), { name: 'NotFound' });
        files.push(file);
      }
      const progress = partsProgress(onProgress, files.map((f) => f.size));
      for (const [i, f] of files.entries()) await streamBlob(f, startPart(i)(f.size), progress(i), 'storage', signal);
      origin = { name: source.stored, fromStorage: true, ...(files.length > 1 && { parts: files.length }) };
    } else {
      throw new Error('load: give a url, a file or a stored model name');
    }
    const hashed = hashers.some(Boolean);
    const partNames = source.url ? partUrls(source.url).map((u) => ModelStore.nameFor(u)) : [];
    // A URL's parts are in storage: each checked one records its hash (or goes, if wrong).
    const store = source.url && hashed ? await ModelStore.open() : null;
    for (const [i, hasher] of hashers.entries()) {
      if (!hasher) continue;
      const got = hasher.finishHex();
      hashers[i] = null;
      const which = hashers.length > 1 ? `Part ${i + 1} of ${hashers.length} of the model` : 'The model';
      if (got !== expected[i]) {
        loader.free();
        loader = null;
        // A URL's copy in storage is the wrong file too: the next load fetches it again.
        await store?.remove(partNames[i]);
        throw Object.assign(
          new Error(`${which}'s SHA-256 is ${got}, not the ${expected[i]} this page pinned: it is not the file that was asked for, so it was not loaded${source.url ? ' (and its stored copy was deleted)' : ''}.`),
          { name: 'IntegrityError' },
        );
      }
      await store?.updateMeta(partNames[i], { sha256: got });
    }
    if (expected) Object.assign(origin, { verified: true, hashed });
    const contextSize = options.contextSize ?? undefined;
    if (signal?.aborted) throw cancelled();
    if (gpu) {
      const l = loader;
      loader = null; // finishGpu takes it
      engine = await wasm.finishGpu(l, contextSize);
    } else {
      engine = loader.finish(contextSize);
    }
    backend = chosen;
    // Scoring and the recipes await this between two steps: the worker's event loop runs, so
    // a `cancel` message for them is seen, and they stop with an AbortError.
    engine.setPause(() => yieldToEvents().then(() => current?.cancelled === true));
    if (options.chatTemplate !== undefined) {
      try {
        engine.setChatTemplate(String(options.chatTemplate));
      } catch (e) {
        engine.free();
        engine = null;
        throw Object.assign(new Error(`chatTemplate: ${e.message ?? e}`), { name: 'Template' });
      }
    }
    const info = JSON.parse(engine.info());
    return {
      ...info,
      ...origin,
      ...threading,
      backend: chosen.name,
      backendReason: chosen.reason,
      adapter: chosen.adapter,
      loadMs: performance.now() - t0,
      memoryBytes: wasm.memoryBytes(),
    };
  } finally {
    for (const h of hashers) h?.free();
    gpu?.free();
    // What a failed or cancelled load received is freed now, not when the GC gets to it.
    loader?.free();
  }
}

function needModel() {
  if (!engine) throw Object.assign(new Error('No model is loaded.'), { name: 'NoModel' });
}

// Scoring and the recipes (Promises of JSON on both backends) as the request `current`, so
// that `cancel` reaches them at their next pause.
async function cancellable(id, work) {
  needModel();
  current = { id, cancelled: false };
  try {
    return JSON.parse(await work());
  } finally {
    current = null;
  }
}

// The three Hugging Face files of an embedding model, each stored like a model file.
async function loadEmbedder(id, urls) {
  await ready;
  embedder?.free();
  embedder = null;
  const t0 = performance.now();
  const files = {};
  let fromStorage = true;
  for (const [file, url] of Object.entries(urls)) {
    let buf = null;
    let at = 0;
    const origin = await loadUrl(url, (total) => {
      buf = new Uint8Array(total);
      return (chunk) => {
        buf.set(chunk, at);
        at += chunk.byteLength;
      };
    }, { onProgress: (p) => post({ type: 'progress', id, file, ...p }) });
    fromStorage &&= origin.fromStorage;
    files[file] = buf;
  }
  embedder = new wasm.WasmEmbedder(files['config.json'], files['model.safetensors'], files['tokenizer.json']);
  return { dims: embedder.dims(), fromStorage, loadMs: performance.now() - t0 };
}

async function generate(id, prompt, request) {
  if (!engine) throw Object.assign(new Error('No model is loaded.'), { name: 'NoModel' });
  current = { id, cancelled: false };
  engine.start(JSON.stringify(prompt), JSON.stringify(request));
  try {
    for (;;) {
      if (current.cancelled) {
        const done = engine.cancel();
        if (done) post({ ...JSON.parse(done), id });
        return;
      }
      // The GPU engine's step is a Promise (it awaits the logits); the CPU's returns at once.
      const ev = JSON.parse(await engine.step());
      // The engine's token event has its own `id` (the token id): keep the request id.
      post({ ...ev, token: ev.id, id });
      if (ev.type === 'done') return;
      await yieldToEvents();
    }
  } finally {
    current = null;
  }
}

async function handle(msg) {
  const { id } = msg;
  // A client always sends `init` first; this covers one that does not.
  if (!['init', 'cancel', 'cancel-load'].includes(msg.type)) ready ??= start(1);
  switch (msg.type) {
    case 'load': {
      const controller = new AbortController();
      queuedLoads.delete(id);
      if (cancelledLoads.delete(id)) controller.abort();
      loading = { id, controller };
      try {
        post({ type: 'loaded', id, info: await load(id, msg.source, msg.options, controller.signal) });
      } finally {
        loading = null;
      }
      break;
    }
    case 'cancel-load':
      // A load still queued behind another request is cancelled when it starts.
      // A finished (or unknown) load's id is not kept.
      if (loading?.id === msg.target) loading.controller.abort();
      else if (queuedLoads.has(msg.target)) cancelledLoads.add(msg.target);
      break;
    case 'generate':
      await generate(id, msg.prompt, msg.request);
      break;
    case 'cancel':
      if (current && (msg.target === undefined || current.id === msg.target)) current.cancelled = true;
      break;
    case 'reset':
      engine?.reset();
      post({ type: 'ok', id });
      break;
    case 'probe-gpu':
      post({ type: 'ok', id, result: await probeGpu() });
      break;
    case 'unload':
      engine?.free();
      engine = null;
      backend = null;
      post({ type: 'ok', id });
      break;
    case 'tokenize':
      needModel();
      post({ type: 'ok', id, result: Array.from(engine.tokenize(msg.text)) });
      break;
    case 'score':
      post({ type: 'ok', id, result: await cancellable(id, () => engine.score(JSON.stringify(msg.prompt), JSON.stringify(msg.continuations))) });
      break;
    case 'classify':
      post({ type: 'ok', id, result: await cancellable(id, () => engine.classify(msg.text, JSON.stringify(msg.labels ?? []), JSON.stringify(msg.options ?? {}), msg.preset)) });
      break;
    case 'task':
      post({ type: 'ok', id, result: await cancellable(id, () => engine.task(msg.kind, msg.text, JSON.stringify(msg.args ?? {}), JSON.stringify(msg.options ?? {}))) });
      break;
    case 'load-embedder':
      post({ type: 'loaded', id, info: await loadEmbedder(id, msg.urls) });
      break;
    case 'embed': {
      if (!embedder) throw Object.assign(new Error('No embedding model is loaded.'), { name: 'NoModel' });
      const flat = embedder.embed(JSON.stringify(msg.texts));
      const d = embedder.dims();
      const vectors = msg.texts.map((_, i) => Array.from(flat.subarray(i * d, (i + 1) * d)));
      const tokens = msg.texts.reduce((n, t) => n + embedder.countTokens(t), 0);
      post({ type: 'ok', id, result: { vectors, tokens } });
      break;
    }
    case 'list-stored':
      post({ type: 'ok', id, result: await (await ModelStore.open()).list() });
      break;
    case 'delete-stored':
      await (await ModelStore.open()).removeModel(msg.name);
      post({ type: 'ok', id });
      break;
    case 'init':
      ready ??= start(msg.threads, msg.simd);
      await ready;
      post({ type: 'ok', id, result: threading });
      break;
    case 'kernel-self-test':
      await ready;
      post({ type: 'ok', id, result: { random: JSON.parse(wasm.kernelSelfTest(msg.seed ?? 1)), model: engine?.kernelSelfTest ? JSON.parse(engine.kernelSelfTest()) : [] } });
      break;
    case 'fault-inject-gpu-loss':
      engine?.faultInjectDeviceLoss?.();
      post({ type: 'ok', id, result: Boolean(engine?.faultInjectDeviceLoss) });
      break;
    case 'fault-inject-trap':
      await ready;
      wasm.faultInjectTrap();
      break;
    case 'bench-matmul':
      await ready;
      post({ type: 'ok', id, result: wasm.benchMatmul(msg.n, msg.k, msg.rows, msg.iters, msg.dtype) });
      break;
    case 'memory':
      await ready;
      post({ type: 'ok', id, result: wasm.memoryBytes() });
      break;
    default:
      throw new Error(`unknown message type ${msg.type}`);
  }
}

// Requests run one after another; only `cancel` and `cancel-load` jump the queue (they must
// reach a running generation between two tokens, a running load between two chunks).
let queue = Promise.resolve();
self.onmessage = (e) => {
  const msg = e.data;
  if (msg.type === 'cancel' || msg.type === 'cancel-load') {
    handle(msg);
    return;
  }
  if (msg.type === 'load') queuedLoads.add(msg.id);
  queue = queue.then(async () => {
    if (broken) {
      post({ type: 'error', id: msg.id, name: 'EngineCrashed', message: 'The engine stopped earlier; start a new worker.', fatal: true });
      return;
    }
    try {
      await handle(msg);
    } catch (err) {
      post(errorEvent(msg.id, err));
    }
  });
};
