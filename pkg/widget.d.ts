// Types for `candlelit/widget.js`: importing it defines the <candlelit-chat> element.
//
// Attributes: `model` (URL of a .gguf file, required), `heading`, `system` (system prompt),
// `temperature`, `top-p`, `max-tokens`, `backend` ('auto' | 'webgpu' | 'cpu'), `integrity`
// (the model's SHA-256, `sha256-<base64>` or hex: another file is refused; for a split model
// one per part, in order, separated by spaces), `worker`
// (URL of worker.js when it is not next to widget.js), `open` (start open), `inline`
// (a panel in the page's flow instead of a floating button), `autoload` (download without
// asking first), `thinking` ('off': a reasoning model such as Qwen3 answers without thinking
// first; its thinking is never shown, only "Thinking…" while it runs). CSS: `--candlelit-accent`; parts `panel` and `launcher`.

import type { CandlelitEngine, ChatMessage, FinishReason, ModelInfo, Usage } from './index.js';

export interface ReplyDetail {
  content: string;
  finish_reason: FinishReason | null;
  usage: Usage | null;
}

export declare class CandlelitChat extends HTMLElement {
  /** The engine behind the widget (created on first use): the whole client API. */
  readonly engine: CandlelitEngine;
  /** The conversation so far (kept for the visitor's session on this site). */
  readonly messages: ChatMessage[];
  readonly ready: boolean;
  /** Shows the panel; loads the model at once if it is stored (or `autoload` is set), else asks. */
  open(): void;
  close(): void;
  /** Downloads (or reads from storage) and loads the model; null when the visitor cancels (the download resumes on the next load). */
  load(): Promise<ModelInfo | null>;
  /** Sends a message as the visitor would; resolves with the reply's text. */
  send(text: string): Promise<string>;
  /** Starts a new conversation. */
  reset(): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'candlelit-chat': CandlelitChat;
  }
  interface HTMLElementEventMap {
    'candlelit-ready': CustomEvent<ModelInfo>;
    'candlelit-reply': CustomEvent<ReplyDetail>;
    'candlelit-error': CustomEvent<{ name?: string; message: string }>;
  }
}
