// Types for the candlelit client API (client.js).

export interface LoadProgress {
  phase: 'download' | 'storage' | 'file';
  loaded: number;
  total: number;
  bytesPerSecond: number;
  secondsLeft: number | null;
  /** Split models: which part is loading (loaded/total then cover all parts when their sizes are known). */
  part?: number;
  parts?: number;
}

/**
 * A URL naming the first part of a split model (`NAME-00001-of-0000N.gguf`, llama.cpp's
 * gguf-split layout, made by `candlelit split`) loads every part; so does an array of the
 * parts' Files (ordered by name), or the stored name of a first part.
 */
export type ModelSource = string | Blob | Blob[] | { url: string } | { file: Blob } | { files: Blob[] } | { stored: string };

export interface ModelInfo {
  name: string;
  architecture: string;
  layers: number;
  embedding: number;
  vocab: number;
  context: number;
  chat_template: boolean;
  /** Switches its chat template reads ('enable_thinking', 'reasoning_effort'), for `chat_template_kwargs`. */
  template_switches: string[];
  /**
   * How the model writes a function call where its template offers tools itself: 'hermes'
   * (JSON in <tool_call> tags: Qwen 2.5/3, Granite 4) or 'llama3' (bare JSON: Llama 3.x);
   * null: the functions are described in the system message instead.
   */
  tool_format: 'hermes' | 'llama3' | null;
  fromStorage: boolean;
  resumedFrom?: number;
  /** How many files a split model came in (absent for one file). */
  parts?: number;
  loadMs: number;
  memoryBytes: number;
  /** Threads the engine runs its matrix products on, and why (e.g. no cross-origin isolation). */
  threads: number;
  reason: string;
  /** The kernels' instruction set: 'relaxed' (relaxed-SIMD dot products) or 'simd128'. */
  simd: 'relaxed' | 'simd128';
  /** Where the model runs, and why ('auto' falls back to the CPU with the reason here). */
  backend: 'cpu' | 'webgpu';
  backendReason: string;
  /** The WebGPU adapter, when the backend is 'webgpu'. */
  adapter?: string;
  /** Bytes of weights held in GPU buffers (WebGPU backend). */
  gpuWeightBytes?: number;
  /** The WebGPU matrix product kernel: 'subgroup' (hardware adapters with subgroups) or 'thread'. */
  gpuMatmul?: 'subgroup' | 'thread';
  /** True when the load pinned an `integrity` hash and the bytes matched it. */
  verified?: boolean;
  /** Whether this load hashed the bytes (a stored copy verified against the same hash is not hashed again). */
  hashed?: boolean;
}

export type Backend = 'auto' | 'webgpu' | 'cpu';

export interface EngineOptions {
  workerUrl?: string | URL;
  /** Web Workers for the matrix products (threaded build, cross-origin isolated pages only). */
  threads?: number;
  /** 'auto' runs the relaxed-SIMD build where the browser has it; 'simd128' never does. */
  simd?: 'auto' | 'simd128';
}

export interface LabelScore {
  label: string;
  /** Normalised over the labels (calibrated if asked). */
  probability: number;
  /** The model's log-probability of the label's tokens. */
  logprob: number;
}

/** A stored model; a split model is one entry named by its first part, sizes over all parts. */
export interface StoredModel {
  name: string;
  url: string | null;
  size: number;
  total: number | null;
  /** For a split model: every part is stored whole. */
  complete: boolean;
  /** How many files a split model has (absent for one file). */
  parts?: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  /**
   * null on an assistant message that only calls functions. OpenAI's text parts are read one
   * after another on their own lines; other parts (images) are refused: the model reads text.
   */
  content: string | null | { type: 'text'; text: string }[];
  /** The functions an assistant message called (pass the reply's message back as it came). */
  tool_calls?: ToolCall[];
  /** On a 'tool' message: which call this is the result of. */
  tool_call_id?: string;
  /** An earlier reply's thinking, for templates that show it (Qwen3 keeps the last one's). */
  reasoning_content?: string;
}

export interface ToolCall {
  id: string;
  type: 'function';
  /** `arguments` is a JSON object as text, as in OpenAI's API. */
  function: { name: string; arguments: string };
}

/** A function the model may call; `parameters` is a JSON Schema of its arguments object. */
export interface Tool {
  type: 'function';
  function: { name: string; description?: string; parameters?: object };
}

export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

export interface CompletionParams {
  messages?: ChatMessage[];
  /** A raw prompt instead of messages (no chat template). */
  prompt?: string;
  stream?: boolean;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  max_tokens?: number;
  stop?: string | string[];
  seed?: number;
  logit_bias?: Record<number, number>;
  /** Keep generating past end-of-generation tokens (benchmarks). */
  ignore_eos?: boolean;
  logprobs?: boolean;
  top_logprobs?: number;
  /** Constrained decoding: the reply always matches (JSON Schema, regex, choices, Lark grammar). */
  response_format?: ResponseFormat;
  /**
   * A conversation too long for the context: 'disabled' (default) fails with
   * ContextOverflow; 'auto' leaves out the oldest turns (never the system messages or the
   * last message), keeping room for `max_tokens` of reply (at most a quarter of the context).
   */
  truncation?: 'auto' | 'disabled';
  /**
   * Functions the model may call (any chat model: they are described in the system message).
   * `tool_choice` 'required' or a named function decodes the reply under a JSON Schema of the
   * allowed calls, so it is always a well-formed call; 'auto' (the default with tools) lets the
   * model answer in text or call; 'none' never calls. A call ends the reply with
   * finish_reason 'tool_calls'; send its result back as `{ role: 'tool', tool_call_id, content }`.
   */
  tools?: Tool[];
  tool_choice?: ToolChoice;
  /**
   * Variables for the model's chat template, as transformers' `apply_chat_template` takes
   * them: `{ enable_thinking: false }` has Qwen3 (DeepSeek, SmolLM3, GLM…) answer without
   * thinking first; `{ reasoning_effort: 'low' }` for gpt-oss. `messages` and
   * `add_generation_prompt` cannot be set here.
   */
  chat_template_kwargs?: Record<string, unknown>;
  /** WebLLM's form of the thinking switch. */
  extra_body?: { enable_thinking?: boolean };
  /**
   * A reply's `<think>…</think>` comes back apart from the answer, as `reasoning_content`
   * ('auto', the default), or stays in `content` ('none').
   */
  reasoning_format?: 'auto' | 'parsed' | 'none';
  signal?: AbortSignal;
}

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name?: string; schema: object; strict?: boolean } }
  | { type: 'regex'; pattern: string }
  | { type: 'choices'; choices: string[] }
  | { type: 'grammar'; grammar: string };

export interface TaskOptions {
  /** Answer as this role, e.g. "a patient French teacher". */
  persona?: string;
  /** Think step by step first; the thinking comes back as `reasoning`. */
  reasoning?: boolean;
  /** Few-shot examples as [input, output] pairs, shown as earlier turns. */
  examples?: [string, string][];
  max_tokens?: number;
  /** Greedy when absent. */
  sampling?: { temperature?: number; top_k?: number; top_p?: number; min_p?: number; seed?: number };
  /** Cancels the recipe at its next step: the promise rejects with an AbortError. */
  signal?: AbortSignal;
}

export interface TaskResult {
  text: string;
  reasoning: string | null;
  /** Probability the model gives this exact answer (product of its token probabilities). */
  confidence: number;
  mean_logprob: number;
  finish_reason: 'stop' | 'length' | 'context_full';
  tokens: number;
}

export interface EmbeddingResponse {
  object: 'list';
  data: { object: 'embedding'; index: number; embedding: number[] }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  extra: {
    prefill_tokens: number;
    prefill_tokens_per_s: number;
    decode_tokens_per_s: number;
    prefill_ms: number;
    decode_ms: number;
    /** Oldest messages left out to fit the context (`truncation: 'auto'`). */
    dropped_messages: number;
  };
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'tool_calls';

export interface TokenLogprob {
  token_id: number;
  logprob: number;
  top_logprobs: { token_id: number; logprob: number }[];
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: {
    index: number;
    delta: { role?: 'assistant'; content?: string | null; reasoning_content?: string; tool_calls?: (ToolCall & { index: number })[] };
    finish_reason: FinishReason | null;
    logprobs?: { content: TokenLogprob[] };
  }[];
  /** Only on the last chunk. */
  usage?: Usage;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: {
    index: number;
    message: { role: 'assistant'; content: string | null; reasoning_content?: string; tool_calls?: ToolCall[] };
    finish_reason: FinishReason;
    logprobs: { content: TokenLogprob[] } | null;
  }[];
  usage: Usage;
}

export interface TextCompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; finish_reason: FinishReason | null; logprobs: { content: TokenLogprob[] } | null }[];
  /** Only on the last chunk (always on a whole completion). */
  usage?: Usage;
}

export interface TextCompletion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; finish_reason: FinishReason; logprobs: { content: TokenLogprob[] } | null }[];
  usage: Usage;
}

/** OpenAI's legacy text completions: a raw prompt, no chat template, no messages or tools. */
export type TextCompletionParams = Omit<CompletionParams, 'messages' | 'prompt' | 'tools' | 'tool_choice'> & { prompt: string };

export class CandlelitEngine {
  constructor(options?: EngineOptions);
  static create(options?: EngineOptions): Promise<CandlelitEngine>;
  model: ModelInfo | null;
  /**
   * Loads a model (a split model's first part brings the other parts).
   * `backend`: 'auto' (default: a hardware WebGPU adapter if there is one, else the CPU),
   * 'webgpu' (fails with the reason when unavailable) or 'cpu'; chat, scoring, classification
   * and the text recipes run on either. `gpuMatmul` (WebGPU): 'auto' (the subgroup kernel
   * on hardware adapters with subgroups), 'subgroup' or 'thread'.
   * `integrity`: the file's SHA-256 as Subresource Integrity's `sha256-<base64>` or 64 hex
   * digits, or for a split model one per part, in part order; the bytes are hashed as they
   * stream in (a stored copy once) and a mismatch fails with IntegrityError naming the part
   * (and deletes its stored copy) instead of loading another file.
   * `signal`: cancels the load (AbortError); a download's bytes so far stay stored and the
   * next load resumes from there.
   */
  load(source: ModelSource, options?: { onProgress?: (p: LoadProgress) => void; contextSize?: number; backend?: Backend; gpuMatmul?: 'auto' | 'subgroup' | 'thread'; integrity?: string | string[]; /** Jinja source that replaces the file's chat template. */ chatTemplate?: string; signal?: AbortSignal }): Promise<ModelInfo>;
  unload(): Promise<void>;
  resetChat(): Promise<void>;
  /** `signal` cancels it between two of the engine's steps (rejecting with an AbortError); so for every recipe. */
  score(prompt: { messages?: ChatMessage[]; prompt?: string }, continuations: string[], options?: { signal?: AbortSignal }): Promise<{ logprob: number; token_logprobs: number[] }[]>;
  classify(text: string, labels: string[], options?: { instruction?: string; examples?: [string, string][]; calibrate?: boolean; signal?: AbortSignal }): Promise<LabelScore[]>;
  sentiment(text: string, options?: { calibrate?: boolean; signal?: AbortSignal }): Promise<LabelScore[]>;
  tokenize(text: string): Promise<number[]>;
  translate(text: string, options: TaskOptions & { to: string; from?: string }): Promise<TaskResult>;
  summarize(text: string, options?: TaskOptions & { maxWords?: number; points?: number }): Promise<TaskResult>;
  edit(text: string, instruction: string, options?: TaskOptions): Promise<TaskResult>;
  /** `value` validates against `schema` by construction. */
  extract<T = unknown>(text: string, schema: object, options?: TaskOptions): Promise<TaskResult & { value: T }>;
  /** Folder URL with config.json, model.safetensors and tokenizer.json (e.g. all-MiniLM-L6-v2). */
  loadEmbedder(baseUrl: string, options?: { onProgress?: (p: LoadProgress & { file: string }) => void }): Promise<{ dims: number; fromStorage: boolean; loadMs: number; name: string }>;
  embeddings: { create(params: { input: string | string[]; model?: string }): Promise<EmbeddingResponse> };
  listStoredModels(): Promise<StoredModel[]>;
  /** Deletes a stored model (all the parts of a split model, given its first part's name). */
  deleteStoredModel(name: string): Promise<void>;
  memoryBytes(): Promise<number>;
  terminate(): void;
  chat: {
    completions: {
      create(params: CompletionParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(params: CompletionParams & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  completions: {
    create(params: TextCompletionParams & { stream: true }): Promise<AsyncIterable<TextCompletionChunk>>;
    create(params: TextCompletionParams & { stream?: false }): Promise<TextCompletion>;
  };
}
