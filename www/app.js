// The chat page: model picker, download progress, streamed Markdown replies, settings,
// stored models. All model work happens in the engine's Web Worker (pkg/client.js).

import { CandlelitEngine } from '../pkg/client.js';
import { renderMarkdown } from '../pkg/markdown.js';

const MODELS = [
  { label: 'SmolLM2 135M Instruct · Q4_1 · 98 MB (this server)', url: '/models/smollm2-135m-instruct-q4_1.gguf' },
  { label: 'Gemma 3 270M base · Q4_K_M · 253 MB (this server; completion)', url: '/models/gemma-3-270m-q4_k_m.gguf' },
  { label: 'SmolLM2 360M Instruct · Q8_0 · 386 MB (Hugging Face)', url: 'https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct-GGUF/resolve/main/smollm2-360m-instruct-q8_0.gguf' },
  { label: 'Qwen2.5 0.5B Instruct · Q4_K_M · 398 MB (Hugging Face)', url: 'https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf' },
  { label: 'Qwen3 0.6B · Q8_0 · 639 MB (Hugging Face; thinks before answering, switch in Settings)', url: 'https://huggingface.co/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf' },
  { label: 'Llama 3.2 1B Instruct · Q4_K_M · 808 MB (Hugging Face)', url: 'https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf' },
  { label: 'Gemma 3 1B it · Q4_K_M · 806 MB (Hugging Face)', url: 'https://huggingface.co/ggml-org/gemma-3-1b-it-GGUF/resolve/main/gemma-3-1b-it-Q4_K_M.gguf' },
];
const FILE = '__file';
const OTHER_URL = '__url';
const STATE_KEY = 'candlelit.state.v1';
// Small models answer best with little randomness (SmolLM2's card suggests 0.2 / 0.9).
const DEFAULTS = { system: 'You are a helpful assistant.', temperature: 0.2, topP: 0.9, maxTokens: 512, thinking: true };

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), url: $('model-url'), file: $('model-file'), load: $('load'), status: $('status'),
  progress: $('progress'), bar: $('progress-bar'), progressText: $('progress-text'), error: $('error'),
  log: $('log'), form: $('composer'), message: $('message'), send: $('send'), stop: $('stop'), newChat: $('new-chat'),
  system: $('system'), temperature: $('temperature'), topP: $('top-p'), maxTokens: $('max-tokens'), stored: $('stored'),
  thinking: $('thinking'), thinkingRow: $('thinking-row'),
};

const engine = new CandlelitEngine();
// A handle for the browser console and the fault-injection tests.
globalThis.candlelitEngine = engine;
let state = restore();
let busy = false;
let aborter = null;

// ---------------------------------------------------------------- persistence

function restore() {
  try {
    const s = JSON.parse(localStorage.getItem(STATE_KEY));
    if (s && Array.isArray(s.messages)) return { model: s.model ?? MODELS[0].url, settings: { ...DEFAULTS, ...s.settings }, messages: s.messages };
  } catch {
    // a broken saved state is replaced by a fresh one
  }
  return { model: MODELS[0].url, settings: { ...DEFAULTS }, messages: [] };
}

function save() {
  localStorage.setItem(STATE_KEY, JSON.stringify(state));
}

// ---------------------------------------------------------------- rendering

function meta(stats) {
  if (!stats) return '';
  const s = stats;
  const dropped = s.extra.dropped_messages ? ` · ${s.extra.dropped_messages} oldest messages left out to fit the context` : '';
  return `${s.completion_tokens} tokens · ${s.extra.decode_tokens_per_s.toFixed(1)} tok/s · prompt ${s.prompt_tokens} tokens (${s.extra.prefill_tokens} prefilled, ${s.prompt_tokens_details.cached_tokens} from cache)${dropped}`;
}

/** Shows one message; `msg` is read again when it is copied (a streamed reply grows). */
function addBubble(msg) {
  const div = document.createElement('div');
  div.className = `msg ${msg.role}`;
  div.setAttribute('aria-label', msg.role === 'user' ? 'You' : 'Assistant');
  const body = document.createElement('div');
  body.className = 'body';
  const thinking = msg.role === 'assistant' ? thinkingBlock(msg.reasoning) : null;
  if (thinking) div.append(thinking.details);
  div.append(body);
  if (msg.role === 'user') body.textContent = msg.content;
  else renderMarkdown(body, msg.content);
  const m = document.createElement('div');
  m.className = 'meta';
  m.textContent = meta(msg.stats);
  const actions = document.createElement('div');
  actions.className = 'actions';
  if (msg.role === 'assistant') {
    // The reply as the model wrote it (Markdown), not the rendered text.
    actions.append(actionButton('Copy', 'Copy this reply', async (b) => {
      await navigator.clipboard.writeText(msg.content);
      b.textContent = 'Copied';
      setTimeout(() => (b.textContent = 'Copy'), 1500);
    }));
  }
  div.append(m, actions);
  ui.log.append(div);
  div.scrollIntoView({ block: 'end' });
  return { body, meta: m, div, thinking };
}

/**
 * A reasoning model's thinking, folded above its answer (open while it streams). Shown as
 * plain text: it is the model's scratch work, and never markup.
 */
function thinkingBlock(reasoning) {
  const details = document.createElement('details');
  details.className = 'thinking';
  const summary = document.createElement('summary');
  summary.textContent = 'Thinking';
  const text = document.createElement('div');
  text.className = 'thinking-text';
  details.append(summary, text);
  const show = (r, { streaming = false } = {}) => {
    details.hidden = !r;
    text.textContent = r ?? '';
    summary.textContent = streaming ? 'Thinking…' : 'Thinking';
  };
  show(reasoning);
  return { details, show };
}

function actionButton(text, label, onClick, className = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.className = className;
  b.setAttribute('aria-label', label);
  b.onclick = () => onClick(b);
  return b;
}

/** Regenerate on the last reply and Edit on the last question: they rewrite the end only. */
function updateActions() {
  for (const b of ui.log.querySelectorAll('.turn-action')) b.remove();
  const bubbles = [...ui.log.querySelectorAll('.msg:not(.failed)')];
  const last = state.messages.length - 1;
  if (bubbles.length !== state.messages.length || last < 0) return;
  const lastUser = state.messages.findLastIndex((m) => m.role === 'user');
  if (state.messages[last].role === 'assistant' && lastUser === last - 1) {
    bubbles[last].querySelector('.actions').append(actionButton('Regenerate', 'Regenerate the last reply', regenerate, 'turn-action'));
  }
  if (lastUser >= 0) {
    bubbles[lastUser].querySelector('.actions').append(actionButton('Edit', 'Edit the last message', editLast, 'turn-action'));
  }
}

function renderConversation() {
  ui.log.replaceChildren();
  for (const msg of state.messages) addBubble(msg);
  updateActions();
}

function showError(e) {
  if (!e) {
    ui.error.hidden = true;
    ui.error.textContent = '';
    return;
  }
  ui.error.hidden = false;
  ui.error.textContent = e.message || String(e);
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

function showProgress(p) {
  ui.progress.hidden = false;
  const frac = p.total ? p.loaded / p.total : 0;
  ui.bar.value = frac;
  const verb = { download: 'Downloading', storage: 'Reading from storage', file: 'Reading file' }[p.phase] ?? 'Loading';
  const speed = p.bytesPerSecond ? ` · ${mb(p.bytesPerSecond)}/s` : '';
  const eta = p.secondsLeft != null && p.phase === 'download' ? ` · ${Math.ceil(p.secondsLeft)} s left` : '';
  // Parts download side by side, so the bar is the model's, not one part's.
  const part = p.parts ? ` (${p.parts} parts)` : '';
  ui.progressText.textContent = `${verb} ${mb(p.loaded)} of ${mb(p.total)}${part}${speed}${eta}`;
}

function setBusy(b) {
  busy = b;
  ui.send.disabled = b || !engine.model;
  ui.stop.disabled = !b;
  $('task-stop').disabled = !b;
  ui.load.disabled = b;
}

// ---------------------------------------------------------------- models

function fillModelPicker() {
  const opts = MODELS.map((m) => new Option(m.label, m.url));
  opts.push(new Option('Local file…', FILE), new Option('Other URL…', OTHER_URL));
  ui.model.replaceChildren(...opts);
  const known = MODELS.some((m) => m.url === state.model);
  ui.model.value = known ? state.model : OTHER_URL;
  if (!known) ui.url.value = state.model;
  syncPickerInputs();
}

function syncPickerInputs() {
  ui.url.hidden = ui.model.value !== OTHER_URL;
  ui.file.hidden = ui.model.value !== FILE;
}

async function refreshStored() {
  let list = [];
  try {
    list = await engine.listStoredModels();
  } catch {
    return;
  }
  ui.stored.replaceChildren(
    ...list.map((m) => {
      const li = document.createElement('li');
      const label = document.createElement('span');
      const parts = m.parts ? ` in ${m.parts} parts` : '';
      label.textContent = `${m.name.replace(/^[0-9a-f]{8}-/, '')} — ${mb(m.size)}${parts}${m.complete ? '' : ` of ${m.total ? mb(m.total) : '?'} (partial)`}`;
      const del = document.createElement('button');
      del.type = 'button';
      del.textContent = 'Delete';
      del.setAttribute('aria-label', `Delete ${m.name}`);
      del.onclick = async () => {
        await engine.deleteStoredModel(m.name);
        refreshStored();
      };
      li.append(label, del);
      return li;
    }),
  );
  if (!list.length) ui.stored.append(Object.assign(document.createElement('li'), { textContent: 'None yet.' }));
}

function describeBackend(info) {
  if (info.backend === 'webgpu') {
    return `Backend: WebGPU (${info.adapter}, ${mb(info.gpuWeightBytes ?? 0)} of weights on the GPU, ${info.gpuMatmul} matrix kernel; ${info.backendReason}).`;
  }
  const threads = `${info.threads} thread${info.threads > 1 ? 's' : ''}${info.threads > 1 ? '' : `: ${info.reason}`}`;
  return `Backend: CPU (wasm ${info.simd === 'relaxed' ? 'relaxed SIMD' : 'SIMD128'}, ${threads}; ${info.backendReason}).`;
}

async function loadModel() {
  showError(null);
  let source;
  if (ui.model.value === FILE) {
    const files = [...(ui.file.files ?? [])];
    if (!files.length) return showError(new Error('Choose a .gguf file first (or all the parts of a split model).'));
    source = files.length > 1 ? { files } : { file: files[0] };
  } else {
    const url = ui.model.value === OTHER_URL ? ui.url.value.trim() : ui.model.value;
    if (!url) return showError(new Error('Enter the URL of a .gguf file.'));
    source = { url };
    state.model = url;
    save();
  }
  // Ask the browser not to evict stored models under storage pressure.
  navigator.storage?.persist?.().catch(() => {});
  if (busy) aborter?.abort();
  setBusy(true);
  ui.send.disabled = true;
  ui.status.textContent = 'Loading…';
  ui.bar.value = 0;
  ui.progress.hidden = false;
  const loadAborter = new AbortController();
  const cancelLoad = $('cancel-load');
  cancelLoad.onclick = () => loadAborter.abort();
  try {
    const info = await engine.load(source, { onProgress: showProgress, backend: $('backend').value, signal: loadAborter.signal });
    ui.progress.hidden = true;
    const from = info.fromStorage ? 'from browser storage' : info.resumedFrom ? `resumed at ${mb(info.resumedFrom)}` : 'downloaded';
    ui.status.textContent = `${info.name.replace(/^[0-9a-f]{8}-/, '')} (${info.architecture}, ${info.layers} layers) ready — ${from} in ${(info.loadMs / 1000).toFixed(1)} s, engine memory ${mb(info.memoryBytes)}. ${describeBackend(info)}`;
    ui.status.dataset.backend = info.backend;
    ui.thinkingRow.hidden = !info.template_switches?.includes('enable_thinking');
    ui.status.dataset.loadMs = String(Math.round(info.loadMs));
  } catch (e) {
    ui.status.textContent = 'No model loaded.';
    // A cancelled download is what the user asked for; say how to continue, not an error.
    if (e.name === 'AbortError') ui.status.textContent = `No model loaded: ${e.message}`;
    else showError(e);
  } finally {
    cancelLoad.onclick = null;
    ui.progress.hidden = true;
    setBusy(false);
    refreshStored();
  }
}

// ---------------------------------------------------------------- chat

async function send() {
  const text = ui.message.value.trim();
  if (!text || busy) return;
  if (!engine.model) return showError(new Error('Load a model first.'));
  ui.message.value = '';
  state.messages.push({ role: 'user', content: text });
  save();
  addBubble(state.messages.at(-1));
  await reply();
}

/** Asks the model for the next reply to the conversation (which ends with a question). */
async function reply() {
  showError(null);
  updateActions();
  const answer = { role: 'assistant', content: '', reasoning: '' };
  const bubble = addBubble(answer);
  // The error that ended this reply, if one did (a GPU failure moves the page to the CPU).
  let failed = null;
  const s = state.settings;
  // Earlier thinking is not sent back (reasoning models' templates drop it too).
  const messages = [...(s.system.trim() ? [{ role: 'system', content: s.system.trim() }] : []), ...state.messages.map(({ role, content }) => ({ role, content }))];
  // The switch only where the model's template reads it (Qwen3, DeepSeek, SmolLM3, …).
  const switches = engine.model?.template_switches ?? [];
  aborter = new AbortController();
  setBusy(true);
  let pending = false;
  let done = false;
  const repaint = () => {
    pending = false;
    bubble.thinking.show(answer.reasoning, { streaming: !answer.content && !done });
    if (answer.reasoning && !answer.content && !done) bubble.thinking.details.open = true;
    renderMarkdown(bubble.body, answer.content);
    bubble.div.scrollIntoView({ block: 'end' });
  };
  try {
    const stream = await engine.chat.completions.create({
      messages,
      stream: true,
      temperature: Number(s.temperature),
      top_p: Number(s.topP),
      max_tokens: Number(s.maxTokens),
      // A long chat goes on: the oldest turns are left out of the model's view.
      truncation: 'auto',
      ...(switches.includes('enable_thinking') ? { chat_template_kwargs: { enable_thinking: !!s.thinking } } : {}),
      signal: aborter.signal,
    });
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta;
      // The thinking folds away once the answer starts.
      if (delta?.content && !answer.content && answer.reasoning) bubble.thinking.details.open = false;
      answer.content += delta?.content ?? '';
      answer.reasoning += delta?.reasoning_content ?? '';
      if (!pending) {
        pending = true;
        requestAnimationFrame(repaint);
      }
      if (chunk.usage) {
        answer.stats = chunk.usage;
        answer.finish = chunk.choices[0].finish_reason;
      }
    }
    done = true;
    repaint();
    bubble.meta.textContent = meta(answer.stats) + (answer.finish === 'abort' ? ' · stopped' : '');
    state.messages.push(answer);
  } catch (e) {
    showError(e);
    if (answer.content || answer.reasoning) state.messages.push(answer);
    else {
      // Not part of the conversation (and gone on the next render); the error says why.
      bubble.div.classList.add('failed');
      bubble.meta.textContent = 'No reply.';
    }
    if (e.fatal) ui.status.textContent = 'The engine stopped; load the model again.';
    failed = e;
  } finally {
    save();
    setBusy(false);
    updateActions();
    aborter = null;
    ui.message.focus();
  }
  await fallBackFromGpu(failed);
}

/** The GPU went away (a lost device, its memory): carry on with the CPU path, from storage. */
async function fallBackFromGpu(error) {
  if (error?.name !== 'Gpu' || ui.status.dataset.backend !== 'webgpu') return;
  $('backend').value = 'cpu';
  await loadModel();
  ui.status.textContent = `The GPU failed (${error.message}), so the model was reloaded on the CPU. ${ui.status.textContent}`;
}

/** Replaces the last reply with a new one; the question's tokens come from the KV cache. */
async function regenerate() {
  if (busy || state.messages.at(-1)?.role !== 'assistant') return;
  if (!engine.model) return showError(new Error('Load a model first.'));
  state.messages.pop();
  save();
  renderConversation();
  await reply();
}

/** Takes the last question (and its reply) back into the composer to change and send again. */
function editLast() {
  if (busy) return;
  const at = state.messages.findLastIndex((m) => m.role === 'user');
  if (at < 0) return;
  ui.message.value = state.messages[at].content;
  state.messages.splice(at);
  save();
  renderConversation();
  ui.message.focus();
}

function newChat() {
  aborter?.abort();
  state.messages = [];
  save();
  renderConversation();
  if (engine.model) engine.resetChat().catch(() => {});
}

// ---------------------------------------------------------------- tasks

/** The task text, once a model is loaded and nothing else runs; null (and a message) otherwise. */
function startTask() {
  if (busy) return null;
  const text = $('task-text').value.trim();
  const problem = !engine.model ? 'Load a model first.' : !text ? 'Enter a text for the task.' : null;
  showError(problem && new Error(problem));
  if (problem) return null;
  setBusy(true);
  // Stop (here or the chat's) cancels the task at its next step.
  aborter = new AbortController();
  return text;
}

async function runTask(kind) {
  const text = startTask();
  if (text === null) return;
  const out = $('task-result');
  out.replaceChildren(Object.assign(document.createElement('li'), { textContent: 'Scoring…' }));
  let failed = null;
  try {
    const calibrate = $('task-calibrate').checked;
    const labels = $('task-labels').value.split(',').map((l) => l.trim()).filter(Boolean);
    const examples = $('task-examples')
      .value.split('\n')
      .map((line) => line.split('=>').map((x) => x.trim()))
      .filter((pair) => pair.length === 2 && pair[0] && pair[1]);
    const { signal } = aborter;
    const scores = kind === 'sentiment' ? await engine.sentiment(text, { calibrate, signal }) : await engine.classify(text, labels, { examples, calibrate, signal });
    out.replaceChildren(
      ...scores.map((s) => {
        const li = document.createElement('li');
        const name = Object.assign(document.createElement('span'), { textContent: s.label });
        const bar = Object.assign(document.createElement('span'), { className: 'bar' });
        bar.style.width = `${Math.round(s.probability * 100)}%`;
        const pct = Object.assign(document.createElement('span'), { textContent: `${(s.probability * 100).toFixed(1)}%` });
        li.append(name, bar, pct);
        return li;
      }),
    );
  } catch (e) {
    if (e.name === 'AbortError') out.replaceChildren(Object.assign(document.createElement('li'), { textContent: 'Stopped.' }));
    else {
      out.replaceChildren();
      showError(e);
      failed = e;
    }
  } finally {
    setBusy(false);
    aborter = null;
  }
  await fallBackFromGpu(failed);
}

async function runTextTask(kind) {
  const text = startTask();
  if (text === null) return;
  const out = $('task-output');
  const meta = $('task-meta');
  out.textContent = '';
  meta.textContent = 'Working…';
  let failed = null;
  const options = { persona: $('task-persona').value.trim() || undefined, reasoning: $('task-reasoning').checked, max_tokens: 300, signal: aborter.signal };
  try {
    let r;
    if (kind === 'translate') r = await engine.translate(text, { to: $('task-language').value.trim(), ...options });
    else if (kind === 'summarize') r = await engine.summarize(text, { points: Number($('task-points').value) || 3, ...options });
    else if (kind === 'edit') r = await engine.edit(text, $('task-instruction').value.trim(), options);
    else {
      let schema;
      try {
        schema = JSON.parse($('task-schema').value);
      } catch (e) {
        throw new Error(`The JSON Schema does not parse: ${e.message}`);
      }
      r = await engine.extract(text, schema, options);
    }
    // Model output is untrusted: shown as text, never as HTML.
    out.textContent = kind === 'extract' ? JSON.stringify(r.value, null, 2) : r.text;
    // The whole answer's probability shrinks with its length; the mean per token reads better.
    meta.textContent =
      `confidence ${r.confidence.toPrecision(2)} (mean token probability ${(Math.exp(r.mean_logprob) * 100).toFixed(0)}%) · ${r.tokens} tokens · ${r.finish_reason}` +
      (r.reasoning ? ` · reasoning: ${r.reasoning}` : '');
  } catch (e) {
    meta.textContent = e.name === 'AbortError' ? 'Stopped.' : '';
    if (e.name !== 'AbortError') {
      showError(e);
      failed = e;
    }
  } finally {
    setBusy(false);
    aborter = null;
  }
  await fallBackFromGpu(failed);
}

// ---------------------------------------------------------------- semantic search

const EMBEDDER_URL = '/models/minilm/';

async function runSearch() {
  if (busy) return;
  const passages = $('search-passages').value.split('\n').map((p) => p.trim()).filter(Boolean);
  const query = $('search-query').value.trim();
  if (!query || passages.length === 0) return showError(new Error('Enter passages and a query.'));
  showError(null);
  setBusy(true);
  const list = $('search-results');
  list.replaceChildren();
  try {
    if (!engine.embedder) {
      $('search-status').textContent = 'Loading the embedding model…';
      const info = await engine.loadEmbedder(EMBEDDER_URL, { onProgress: showProgress });
      $('search-status').textContent = `Embedding model ready (${info.fromStorage ? 'from browser storage' : 'downloaded'} in ${(info.loadMs / 1000).toFixed(1)} s).`;
    }
    const { data } = await engine.embeddings.create({ input: [query, ...passages] });
    const q = data[0].embedding;
    const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
    const ranked = passages.map((p, i) => ({ p, score: dot(q, data[i + 1].embedding) })).sort((a, b) => b.score - a.score);
    list.replaceChildren(
      ...ranked.map(({ p, score }) => Object.assign(document.createElement('li'), { textContent: `${score.toFixed(3)}  ${p}` })),
    );
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

// ---------------------------------------------------------------- wiring

function bindSettings() {
  ui.thinking.checked = state.settings.thinking !== false;
  ui.thinking.addEventListener('change', () => {
    state.settings.thinking = ui.thinking.checked;
    save();
  });
  const fields = [[ui.system, 'system'], [ui.temperature, 'temperature'], [ui.topP, 'topP'], [ui.maxTokens, 'maxTokens']];
  for (const [el, key] of fields) {
    el.value = state.settings[key];
    el.addEventListener('change', () => {
      state.settings[key] = el.type === 'number' ? Number(el.value) : el.value;
      save();
    });
  }
}

ui.model.addEventListener('change', syncPickerInputs);
ui.load.addEventListener('click', loadModel);
ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
ui.message.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
ui.stop.addEventListener('click', () => aborter?.abort());
$('task-stop').addEventListener('click', () => aborter?.abort());
ui.newChat.addEventListener('click', newChat);
$('task-sentiment').addEventListener('click', () => runTask('sentiment'));
$('task-classify').addEventListener('click', () => runTask('classify'));
for (const kind of ['translate', 'summarize', 'edit', 'extract']) $(`task-${kind}`).addEventListener('click', () => runTextTask(kind));
$('search-run').addEventListener('click', runSearch);

fillModelPicker();
bindSettings();
renderConversation();
setBusy(false);
refreshStored();

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('sw.js').catch((e) => console.warn('service worker:', e));
}
