// The client API: one engine running in a Web Worker, used through OpenAI-shaped calls.
//
//   const engine = await CandlelitEngine.create();
//   await engine.load({ url: '/models/smollm2-135m-instruct-q4_1.gguf' }, { onProgress });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) {
//     out.textContent += chunk.choices[0]?.delta?.content ?? '';
//   }
//
// The page, the widget, the npm package and the tests all go through this module.

import { mightBeCall, parseToolCalls, planTools } from './tools.js';

let nextId = 1;

function engineError({ name, message, fatal }) {
  const e = new Error(message);
  e.name = name || 'Error';
  e.fatal = !!fatal;
  return e;
}

/**
 * OpenAI's `response_format` (plus candlelit's regex / choices / grammar forms) as the
 * engine's constraint: the reply is decoded so that it always matches.
 */
function constraintOf(format) {
  if (!format || format.type === 'text') return undefined;
  switch (format.type) {
    case 'json_schema': {
      const schema = format.json_schema?.schema ?? format.schema;
      if (!schema || typeof schema !== 'object') throw new TypeError('response_format: json_schema needs a schema');
      return { type: 'json_schema', schema };
    }
    case 'json_object':
      return { type: 'json_schema', schema: { type: 'object' } };
    case 'regex':
      return { type: 'regex', pattern: String(format.pattern) };
    case 'choices':
      return { type: 'choices', choices: format.choices.map(String) };
    case 'grammar':
    case 'lark':
      return { type: 'lark', grammar: String(format.grammar) };
    default:
      throw new TypeError(`response_format: unknown type ${format.type}`);
  }
}

/**
 * A page may only start workers from its own origin, but a widget's script often comes from
 * a CDN: then a same-origin blob module imports the worker, whose relative imports (the
 * wasm builds) still resolve against the CDN. The CDN must send CORS headers.
 */
function startWorker(url) {
  const href = new URL(url, globalThis.location?.href).href;
  if (!globalThis.location || new URL(href).origin === globalThis.location.origin) return new Worker(href, { type: 'module' });
  const shim = new Blob([`import ${JSON.stringify(href)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(shim), { type: 'module' });
}

export class CandlelitEngine {
  #worker = null;
  #pending = new Map();
  #workerUrl;
  #threads;
  #simd;
  model = null;

  /**
   * `threads`: Web Workers for the matrix products (default: up to 4 when the page is
   * cross-origin isolated, else 1). The threaded build needs COOP/COEP headers.
   * `simd`: 'auto' (default) runs the relaxed-SIMD build where the browser supports it,
   * 'simd128' always the plain SIMD128 one (to compare them).
   */
  constructor({ workerUrl, threads, simd } = {}) {
    this.#workerUrl = workerUrl ?? new URL('./worker.js', import.meta.url);
    this.#threads = threads ?? (globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
    this.#simd = simd ?? 'auto';
    this.chat = { completions: { create: (params) => this.#create(params) } };
    this.completions = { create: (params) => this.#complete(params) };
    this.embeddings = { create: (params) => this.#embed(params) };
  }

  static async create(options) {
    return new CandlelitEngine(options);
  }

  #ensureWorker() {
    if (this.#worker) return this.#worker;
    const w = startWorker(this.#workerUrl);
    w.onmessage = (e) => {
      const msg = e.data;
      const p = this.#pending.get(msg.id);
      if (!p) return;
      if (msg.type === 'error') {
        this.#pending.delete(msg.id);
        if (msg.fatal) this.#dropWorker();
        p.reject(engineError(msg));
      } else {
        p.onEvent(msg);
      }
    };
    // A worker that dies (an uncaught error, a failed script load) fails every pending call;
    // the next call starts a fresh worker.
    w.onerror = (e) => {
      e.preventDefault?.();
      this.#failAll(engineError({ name: 'WorkerError', message: e.message || 'The engine worker stopped.', fatal: true }));
    };
    w.onmessageerror = () => this.#failAll(engineError({ name: 'WorkerError', message: 'Bad message from the engine worker.', fatal: true }));
    this.#worker = w;
    // The first message chooses the build (single-thread or threaded) for this worker.
    w.postMessage({ type: 'init', id: 0, threads: this.#threads, simd: this.#simd });
    return w;
  }

  #dropWorker() {
    this.#worker?.terminate();
    this.#worker = null;
    this.model = null;
  }

  #failAll(err) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#dropWorker();
    for (const p of pending) p.reject(err);
  }

  /** Sends a request; `onEvent` sees every event for it; resolves with the final one. */
  #call(msg, onEvent = () => {}, isFinal = (m) => m.type !== 'progress') {
    const id = nextId++;
    const worker = this.#ensureWorker();
    return {
      id,
      done: new Promise((resolve, reject) => {
        this.#pending.set(id, {
          reject,
          onEvent: (m) => {
            onEvent(m);
            if (isFinal(m)) {
              this.#pending.delete(id);
              resolve(m);
            }
          },
        });
        worker.postMessage({ ...msg, id });
      }),
    };
  }

  async #simple(msg) {
    return (await this.#call(msg).done).result;
  }

  /** [`#simple`] that `signal` cancels (between two of the engine's steps: an AbortError). */
  async #cancellable(msg, signal) {
    if (signal?.aborted) throw engineError({ name: 'AbortError', message: 'the request was cancelled' });
    const call = this.#call(msg);
    const cancel = () => this.#worker?.postMessage({ type: 'cancel', target: call.id });
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      return (await call.done).result;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  /**
   * Loads a model. `source` is `{ url }`, `{ file }` (a File or Blob), `{ files }` (a split
   * model's parts) or `{ stored: name }`; a split model's first part brings the others.
   * `onProgress({ phase, loaded, total, bytesPerSecond, secondsLeft })` follows the bytes.
   * `integrity` pins the file's SHA-256 (`sha256-<base64>` or hex), or each part's (a list, in
   * part order): another file is refused.
   * `signal` (an AbortSignal) cancels it: the promise rejects with an `AbortError`.
   * `chatTemplate` (Jinja source) replaces the file's chat template.
   */
  async load(source, { onProgress, contextSize, backend, gpuMatmul, integrity, chatTemplate, signal } = {}) {
    if (source instanceof Blob) source = { file: source };
    if (Array.isArray(source)) source = { files: source };
    if (typeof source === 'string') source = { url: source };
    if (source.url) source = { url: new URL(source.url, globalThis.location?.href).href };
    if (signal?.aborted) throw engineError({ name: 'AbortError', message: 'Loading the model was cancelled.' });
    this.model = null;
    const call = this.#call({ type: 'load', source, options: { contextSize, backend, gpuMatmul, integrity, chatTemplate } }, (m) => {
      if (m.type === 'progress') onProgress?.(m);
    });
    // Cancelling stops the download between two chunks (what arrived stays stored, so the
    // next load resumes it) or the read from storage, and frees what the engine received.
    const cancel = () => this.#worker?.postMessage({ type: 'cancel-load', target: call.id });
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const { info } = await call.done;
      this.model = info;
      return info;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  async unload() {
    if (!this.#worker) return;
    await this.#simple({ type: 'unload' });
    this.model = null;
  }

  /** Forgets the cached conversation (the next request prefills from scratch). */
  resetChat() {
    return this.#simple({ type: 'reset' });
  }

  /**
   * Log-probabilities of `continuations` after a prompt (`{ messages }` or `{ prompt }`),
   * sharing the prompt's KV cache: `[{ logprob, token_logprobs }]`.
   */
  score({ messages, prompt }, continuations, { signal } = {}) {
    const p = messages ? { chat: messages } : { text: prompt };
    return this.#cancellable({ type: 'score', prompt: p, continuations }, signal);
  }

  /**
   * Label probabilities from the model's own token probabilities, normalised over the
   * labels: `[{ label, probability, logprob }]` in the order given. `examples` are
   * `[text, label]` pairs shown as earlier turns; `calibrate` divides by the label prior the
   * model gives a content-free input.
   */
  classify(text, labels, { instruction, examples = [], calibrate = false, signal } = {}) {
    return this.#cancellable({ type: 'classify', text, labels, options: { instruction, examples, calibrate } }, signal);
  }

  /** Positive / Negative / Neutral, with a built-in example of each. */
  sentiment(text, { calibrate = false, signal } = {}) {
    return this.#cancellable({ type: 'classify', text, preset: 'sentiment', options: { calibrate } }, signal);
  }

  tokenize(text) {
    return this.#simple({ type: 'tokenize', text });
  }

  // Text recipes. Every one takes `options`: `persona` (answer as this role), `reasoning`
  // (think step by step first; returned as `reasoning`), `examples` ([input, output]
  // pairs as earlier turns), `max_tokens`, `sampling` (greedy by default), `signal` (an
  // AbortSignal: the recipe stops at its next step and rejects with an AbortError). Each resolves
  // with `{ text, reasoning, confidence, mean_logprob, finish_reason, tokens }`, where
  // `confidence` is the probability the model gives this exact answer.

  /** `to` (and optionally `from`) are language names, e.g. "French". */
  translate(text, { to, from, ...options } = {}) {
    return this.#task('translate', text, { to, from }, options);
  }

  /** `{ maxWords }` (at most, enforced) or `{ points }` (exactly that many "- " lines, enforced). */
  summarize(text, { maxWords, points, ...options } = {}) {
    return this.#task('summarize', text, { max_words: maxWords, points }, options);
  }

  /** Applies an instruction such as "fix spelling and grammar" or "make it more formal". */
  edit(text, instruction, options = {}) {
    return this.#task('edit', text, { instruction }, options);
  }

  /**
   * Information extraction: resolves with `{ value, text, confidence, ... }` where `value`
   * validates against `schema` (a JSON Schema) by construction: the output is decoded
   * under the schema.
   */
  extract(text, schema, options = {}) {
    return this.#task('extract', text, { schema }, options);
  }

  #task(kind, text, args, { signal, ...options }) {
    for (const k of Object.keys(args)) if (args[k] === undefined) delete args[k];
    return this.#cancellable({ type: 'task', kind, text, args, options }, signal);
  }

  /**
   * Loads a sentence-embedding model (BERT family, e.g. all-MiniLM-L6-v2) from the folder
   * URL holding its config.json, model.safetensors and tokenizer.json (each stored like a model).
   */
  async loadEmbedder(baseUrl, { onProgress } = {}) {
    const base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`, globalThis.location?.href).href;
    const urls = Object.fromEntries(['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => [f, new URL(f, base).href]));
    const { info } = await this.#call({ type: 'load-embedder', urls }, (m) => {
      if (m.type === 'progress') onProgress?.(m);
    }).done;
    this.embedder = { ...info, name: base };
    return this.embedder;
  }

  async #embed({ input, model }) {
    const texts = typeof input === 'string' ? [input] : input;
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) throw new TypeError('embeddings.create: input is a string or an array of strings');
    const { vectors, tokens } = await this.#simple({ type: 'embed', texts });
    return {
      object: 'list',
      data: vectors.map((embedding, index) => ({ object: 'embedding', index, embedding })),
      model: model ?? this.embedder?.name ?? 'embedder',
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }

  /** Stored models: `[{ name, url, size, total, complete }]`. */
  listStoredModels() {
    return this.#simple({ type: 'list-stored' });
  }

  deleteStoredModel(name) {
    return this.#simple({ type: 'delete-stored', name });
  }

  /** The engine's SIMD kernels against their scalar references (random and model blocks). */
  kernelSelfTest(seed = 1) {
    return this.#simple({ type: 'kernel-self-test', seed });
  }

  /** Sends a raw protocol message (diagnostics and fault-injection tests). */
  _debugCall(msg) {
    return this.#simple(msg);
  }

  /** Bytes of wasm memory the engine holds. */
  memoryBytes() {
    return this.#simple({ type: 'memory' });
  }

  /** Stops the worker; the next call starts a new one. */
  terminate() {
    this.#failAll(engineError({ name: 'AbortError', message: 'The engine was terminated.' }));
  }

  /**
   * OpenAI's (legacy) text completions, as WebLLM offers them: a raw `prompt` continued with no
   * chat template; chunks and the result carry `choices[0].text`.
   */
  async #complete(params) {
    if (typeof params?.prompt !== 'string') throw new TypeError('completions.create: give a prompt (a string)');
    if (params.messages || params.tools) throw new TypeError('completions.create: a raw prompt only; use chat.completions.create for messages and tools');
    const chat = await this.#create({ ...params, messages: undefined });
    const recast = (c, choice) => ({ id: c.id.replace(/^chatcmpl-/, 'cmpl-'), object: 'text_completion', created: c.created, model: c.model, choices: [choice] });
    const logprobsOf = (lp) => (lp ? { content: lp.content } : null);
    if (!params.stream) {
      const ch = chat.choices[0];
      return { ...recast(chat, { index: 0, text: ch.message.content ?? '', finish_reason: ch.finish_reason, logprobs: logprobsOf(ch.logprobs) }), usage: chat.usage };
    }
    return (async function* () {
      for await (const c of chat) {
        const ch = c.choices[0];
        const out = recast(c, { index: 0, text: ch.delta.content ?? '', finish_reason: ch.finish_reason, logprobs: logprobsOf(ch.logprobs) });
        if (c.usage) out.usage = c.usage;
        yield out;
      }
    })();
  }

  #create(params) {
    const { messages, prompt, stream = false, signal } = params;
    if (!messages && prompt === undefined) throw new TypeError('create: give messages (or a raw prompt)');
    const sampling = {
      temperature: params.temperature,
      top_k: params.top_k,
      top_p: params.top_p,
      min_p: params.min_p,
      repetition_penalty: params.repetition_penalty,
      presence_penalty: params.presence_penalty,
      frequency_penalty: params.frequency_penalty,
      seed: params.seed,
      top_logprobs: params.logprobs ? (params.top_logprobs ?? 1) : undefined,
      logit_bias: params.logit_bias ? Object.entries(params.logit_bias).map(([k, v]) => [Number(k), v]) : undefined,
    };
    for (const k of Object.keys(sampling)) if (sampling[k] === undefined || sampling[k] === null) delete sampling[k];
    if (!messages && (params.tools || params.tool_choice)) throw new TypeError('create: tools need messages, not a raw prompt');
    // Function calling: in the template's own format where it has one, else the tools
    // described in the system message and earlier calls and results as turns (tools.js).
    const tools = messages ? planTools(messages, params.tools, params.tool_choice, this.model?.tool_format) : { mode: 'none' };
    if (tools.constraint && params.response_format && params.response_format.type !== 'text') {
      throw new TypeError('create: a required tool call and response_format cannot both shape the reply');
    }
    const request = {
      sampling,
      max_tokens: params.max_tokens ?? 512,
      stop: typeof params.stop === 'string' ? [params.stop] : (params.stop ?? []),
      ignore_eos: !!params.ignore_eos,
      constraint: tools.constraint ?? constraintOf(params.response_format),
    };
    // Template switches, as vLLM takes them (`chat_template_kwargs`) and WebLLM
    // (`extra_body.enable_thinking`): Qwen3's thinking, gpt-oss's reasoning effort.
    const ctk = params.chat_template_kwargs;
    if (ctk !== undefined && (typeof ctk !== 'object' || ctk === null || Array.isArray(ctk))) throw new TypeError('chat_template_kwargs: an object of template variables');
    const kwargs = { ...(tools.tools ? { tools: tools.tools } : {}), ...(params.extra_body?.enable_thinking !== undefined ? { enable_thinking: params.extra_body.enable_thinking } : {}), ...ctk };
    if (Object.keys(kwargs).length) request.chat_template_kwargs = kwargs;
    // The thinking comes apart from the answer (`reasoning_content`) unless 'none' is asked
    // for, as llama.cpp's server does it.
    if (params.reasoning_format !== undefined) {
      if (!['none', 'auto', 'parsed'].includes(params.reasoning_format)) throw new TypeError(`reasoning_format: 'auto', 'parsed' or 'none', not ${params.reasoning_format}`);
      request.separate_reasoning = params.reasoning_format !== 'none';
    }
    if (params.truncation !== undefined) {
      if (params.truncation !== 'auto' && params.truncation !== 'disabled') throw new TypeError(`truncation: 'auto' or 'disabled', not ${params.truncation}`);
      request.truncation = params.truncation;
    }
    const enginePrompt = messages ? { chat: tools.messages } : { text: prompt };
    const completionId = `chatcmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.model?.name ?? 'candlelit';

    // Events arrive from the worker; the async iterator hands them out in order.
    const queue = [];
    let wake = null;
    let failure = null;
    const push = (m) => {
      queue.push(m);
      wake?.();
    };
    const call = this.#call({ type: 'generate', prompt: enginePrompt, request }, push, (m) => m.type === 'done');
    call.done.catch((e) => {
      failure = e;
      wake?.();
    });
    const cancel = () => this.#worker?.postMessage({ type: 'cancel', target: call.id });
    if (signal) {
      if (signal.aborted) cancel();
      else signal.addEventListener('abort', cancel, { once: true });
    }

    const chunk = (delta, finish_reason = null, extra = {}) => ({
      id: completionId,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason, ...extra }],
    });
    const usageOf = (stats) => ({
      prompt_tokens: stats.prompt_tokens,
      completion_tokens: stats.generated_tokens,
      total_tokens: stats.prompt_tokens + stats.generated_tokens,
      prompt_tokens_details: { cached_tokens: stats.cached_tokens },
      extra: {
        prefill_tokens: stats.prefill_tokens,
        prefill_tokens_per_s: stats.prefill_tokens_per_s,
        decode_tokens_per_s: stats.decode_tokens_per_s,
        prefill_ms: stats.prefill_ms,
        decode_ms: stats.decode_ms,
        dropped_messages: stats.dropped_messages ?? 0,
      },
    });
    const finishReason = (r) => ({ stop: 'stop', length: 'length', context_full: 'length', cancelled: 'abort' })[r] ?? r;

    async function* events() {
      let first = true;
      for (;;) {
        if (queue.length === 0) {
          if (failure) throw failure;
          await new Promise((r) => (wake = r));
          wake = null;
          continue;
        }
        const m = queue.shift();
        if (m.type === 'prefill') continue;
        if (m.type === 'token') {
          const delta = first ? { role: 'assistant', content: m.text } : { content: m.text };
          if (m.reasoning) delta.reasoning_content = m.reasoning;
          first = false;
          const extra = m.top_logprobs?.length
            ? { logprobs: { content: [{ token_id: m.token, logprob: m.logprob, top_logprobs: m.top_logprobs.map(([id, lp]) => ({ token_id: id, logprob: lp })) }] } }
            : {};
          if (m.text || m.reasoning || extra.logprobs) yield chunk(delta, null, extra);
          continue;
        }
        if (m.type === 'done') {
          signal?.removeEventListener('abort', cancel);
          if (m.text || m.reasoning) yield chunk({ content: m.text ?? '', ...(m.reasoning ? { reasoning_content: m.reasoning } : {}) });
          const last = chunk({}, finishReason(m.reason));
          last.usage = usageOf(m.stats);
          yield last;
          return;
        }
      }
    }

    // With tools on offer, text that may be a call is held back; a call comes out as one
    // `tool_calls` delta and the reply ends with finish_reason 'tool_calls'.
    async function* withToolCalls(inner) {
      let held = '';
      let holding = tools.mode !== 'none';
      for await (const c of inner) {
        const ch = c.choices[0];
        if (!ch.finish_reason) {
          if (!holding) yield c;
          else {
            // Thinking is never a call: it goes on as it comes.
            if (ch.delta.reasoning_content) yield chunk({ reasoning_content: ch.delta.reasoning_content });
            held += ch.delta.content ?? '';
            if (tools.mode === 'auto' && !mightBeCall(held)) {
              holding = false;
              yield chunk({ role: 'assistant', content: held });
            }
          }
          continue;
        }
        const calls = holding ? parseToolCalls(held, tools.allowed) : null;
        if (calls) {
          yield chunk({ role: 'assistant', content: null, tool_calls: calls.map((call, index) => ({ index, ...call })) });
          ch.finish_reason = 'tool_calls';
        } else if (holding && held) {
          yield chunk({ role: 'assistant', content: held });
        }
        yield c;
        return;
      }
    }

    if (stream) return Promise.resolve(withToolCalls(events()));
    return (async () => {
      let content = '';
      let reasoning = '';
      let last;
      const logprobs = [];
      const toolCalls = [];
      for await (const c of withToolCalls(events())) {
        content += c.choices[0].delta.content ?? '';
        reasoning += c.choices[0].delta.reasoning_content ?? '';
        for (const { index, ...call } of c.choices[0].delta.tool_calls ?? []) toolCalls[index] = call;
        if (c.choices[0].logprobs) logprobs.push(...c.choices[0].logprobs.content);
        last = c;
      }
      const message = toolCalls.length ? { role: 'assistant', content: content || null, tool_calls: toolCalls } : { role: 'assistant', content };
      if (reasoning) message.reasoning_content = reasoning;
      return {
        id: completionId,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, finish_reason: last.choices[0].finish_reason, logprobs: logprobs.length ? { content: logprobs } : null }],
        usage: last.usage,
      };
    })();
  }
}
