// <candlelit-chat>: a chat widget any site can add with two tags, the model running in the
// visitor's browser:
//
//   <script type="module" src="https://cdn.example/candlelit/widget.js"></script>
//   <candlelit-chat model="https://cdn.example/models/smollm2-135m-instruct-q4_1.gguf"
//                   heading="Ask us" system="You answer questions about our shop."></candlelit-chat>
//
// It drives the same client and worker as the chat page, from a shadow root so that the
// host's styles and the widget's do not mix. Nothing starts until the visitor opens it, and
// the model is downloaded only after they agree (it is tens to hundreds of MB); it is then
// kept in the site's browser storage, so later visits load it from there, offline too.
// Replies are untrusted text: Markdown, sanitized before it reaches the DOM.

import { CandlelitEngine } from './client.js';
import { renderMarkdown } from './markdown.js';
import { remoteSize } from './split.js';

const DEFAULTS = { title: 'Chat', system: 'You are a helpful assistant.', temperature: 0.2, topP: 0.9, maxTokens: 256 };

const STYLE = `
:host { all: initial; position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1f;
  --accent: var(--candlelit-accent, #3b5bdb); }
:host([inline]) { position: static; display: block; }
[hidden] { display: none !important; }
button { font: inherit; cursor: pointer; border-radius: 8px; border: 1px solid #c8c8d0;
  background: #fff; color: inherit; padding: 6px 12px; }
button:disabled { opacity: .5; cursor: default; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
.launcher { width: 56px; height: 56px; border-radius: 50%; background: var(--accent);
  color: #fff; border: none; font-weight: 600; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
.panel { width: min(380px, calc(100vw - 40px)); height: min(560px, calc(100vh - 100px));
  display: flex; flex-direction: column; background: #fff; border: 1px solid #d6d6de;
  border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.2); overflow: hidden; }
:host(:not([inline])) .panel { margin-bottom: 12px; }
:host([inline]) .panel { width: auto; box-shadow: none; }
header { display: flex; align-items: center; gap: 8px; padding: 10px 12px;
  background: var(--accent); color: #fff; }
header h2 { font-size: 15px; margin: 0; flex: 1; font-weight: 600; }
header button { background: transparent; border-color: rgba(255,255,255,.5); color: #fff; padding: 2px 8px; }
.status { margin: 0; padding: 6px 12px; font-size: 12px; color: #55555f; border-bottom: 1px solid #eee; }
.consent { padding: 12px; display: flex; flex-direction: column; gap: 8px; }
.consent p { margin: 0; }
.progress { padding: 0 12px 8px; font-size: 12px; color: #55555f; }
.progress progress { width: 100%; }
.progress .cancel-load { margin-top: 4px; padding: 2px 10px; font-size: 12px; }
.error { margin: 0; padding: 8px 12px; color: #a61b1b; background: #fff0f0; font-size: 13px; }
.log { flex: 1; overflow-y: auto; padding: 10px 12px; display: flex; flex-direction: column; gap: 8px; }
.msg { max-width: 88%; padding: 7px 10px; border-radius: 10px; overflow-wrap: anywhere; }
.msg.user { align-self: flex-end; background: var(--accent); color: #fff; white-space: pre-wrap; }
.msg.assistant { align-self: flex-start; background: #f1f1f5; }
.msg.assistant p { margin: 0 0 .5em; } .msg.assistant p:last-child { margin-bottom: 0; }
.msg.assistant .thinking { color: #77778a; font-style: italic; }
.msg.assistant pre { overflow-x: auto; background: #e4e4ea; padding: 6px; border-radius: 6px; }
form { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #eee; align-items: flex-end; }
textarea { flex: 1; font: inherit; resize: none; border: 1px solid #c8c8d0; border-radius: 8px; padding: 6px 8px; }
.buttons { display: flex; flex-direction: column; gap: 4px; }
`;

const mb = (n) => `${(n / 1e6).toFixed(0)} MB`;

export class CandlelitChat extends HTMLElement {
  static observedAttributes = ['heading'];

  #root;
  #ui;
  #engine = null;
  #messages = [];
  #state = 'idle'; // idle | checking | consent | loading | ready | failed
  #loading = null;
  #aborter = null;
  #busy = false;
  // Counts conversations, so that a reply still streaming when New is pressed stays out of
  // the new one.
  #epoch = 0;

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: 'open' });
    this.#root.innerHTML = `<style>${STYLE}</style>
      <div class="panel" part="panel" hidden>
        <header><h2></h2>
          <button type="button" class="new" aria-label="New chat" title="New chat">New</button>
          <button type="button" class="close" aria-label="Close chat">×</button></header>
        <p class="status" aria-live="polite"></p>
        <div class="consent" hidden>
          <p class="consent-text"></p>
          <button type="button" class="primary start">Download and start</button>
        </div>
        <div class="progress" hidden><progress max="1" value="0" aria-label="Loading model"></progress><div class="progress-text"></div><button type="button" class="cancel-load">Cancel</button></div>
        <p class="error" role="alert" hidden></p>
        <div class="log" role="log" aria-label="Conversation" aria-live="polite"></div>
        <form>
          <textarea rows="2" aria-label="Message" placeholder="Message (Enter to send)" disabled></textarea>
          <div class="buttons">
            <button type="submit" class="primary send" disabled>Send</button>
            <button type="button" class="stop" disabled>Stop</button>
          </div>
        </form>
      </div>
      <button type="button" class="launcher" part="launcher" aria-label="Open chat" aria-expanded="false">Chat</button>`;
    const q = (s) => this.#root.querySelector(s);
    this.#ui = {
      panel: q('.panel'), title: q('h2'), newChat: q('.new'), close: q('.close'), status: q('.status'),
      consent: q('.consent'), consentText: q('.consent-text'), start: q('.start'), progress: q('.progress'),
      bar: q('progress'), progressText: q('.progress-text'), cancelLoad: q('.cancel-load'), error: q('.error'), log: q('.log'),
      form: q('form'), message: q('textarea'), send: q('.send'), stop: q('.stop'), launcher: q('.launcher'),
    };
    const ui = this.#ui;
    ui.launcher.onclick = () => (ui.panel.hidden ? this.open() : this.close());
    ui.close.onclick = () => this.close();
    ui.start.onclick = () => this.load().catch(() => {});
    ui.newChat.onclick = () => this.reset();
    ui.stop.onclick = () => this.#aborter?.abort();
    ui.form.onsubmit = (e) => {
      e.preventDefault();
      const text = ui.message.value.trim();
      if (text) this.send(text).catch(() => {});
    };
    ui.panel.onkeydown = (e) => {
      if (e.key === 'Escape' && !this.hasAttribute('inline')) {
        this.close();
        ui.launcher.focus();
      }
    };
    ui.message.onkeydown = (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        ui.form.requestSubmit();
      }
    };
  }

  connectedCallback() {
    this.#ui.title.textContent = this.getAttribute('heading') || DEFAULTS.title;
    this.#ui.launcher.hidden = this.hasAttribute('inline');
    this.#restore();
    if (this.hasAttribute('inline') || this.hasAttribute('open')) this.open();
  }

  disconnectedCallback() {
    // Moving the element fires disconnect and connect; only a removal ends the engine.
    queueMicrotask(() => {
      if (this.isConnected) return;
      this.#aborter?.abort();
      this.#engine?.terminate();
      this.#engine = null;
      this.#state = 'idle';
      this.#loading = null;
    });
  }

  attributeChangedCallback(name) {
    if (name === 'heading') this.#ui.title.textContent = this.getAttribute('heading') || DEFAULTS.title;
  }

  /** The engine behind the widget (created on first use): the whole client API. */
  get engine() {
    if (!this.#engine) {
      const worker = this.getAttribute('worker');
      this.#engine = new CandlelitEngine(worker ? { workerUrl: new URL(worker, document.baseURI) } : {});
    }
    return this.#engine;
  }

  /** The conversation so far: `[{ role, content }]`. */
  get messages() {
    return this.#messages.map(({ role, content }) => ({ role, content }));
  }

  get ready() {
    return this.#state === 'ready';
  }

  /** Shows the panel; loads the model at once if it is stored (or `autoload` is set), else asks. */
  open() {
    const ui = this.#ui;
    ui.panel.hidden = false;
    ui.launcher.setAttribute('aria-expanded', 'true');
    ui.launcher.setAttribute('aria-label', 'Close chat');
    if (this.#state === 'idle') this.#prepare();
    if (this.#state === 'ready') ui.message.focus();
  }

  close() {
    if (this.hasAttribute('inline')) return;
    this.#ui.panel.hidden = true;
    this.#ui.launcher.setAttribute('aria-expanded', 'false');
    this.#ui.launcher.setAttribute('aria-label', 'Open chat');
  }

  #modelUrl() {
    const model = this.getAttribute('model');
    if (!model) throw new Error('<candlelit-chat> needs a model="URL of a .gguf file" attribute.');
    return new URL(model, document.baseURI).href;
  }

  #number(name, fallback) {
    const v = this.getAttribute(name);
    const n = v === null || v.trim() === '' ? NaN : Number(v);
    return Number.isFinite(n) ? n : fallback;
  }

  async #prepare() {
    this.#state = 'checking';
    this.#setStatus('Checking for a stored copy of the model…');
    try {
      const url = this.#modelUrl();
      const stored = (await this.engine.listStoredModels()).find((m) => m.url === url);
      if (stored?.complete || this.hasAttribute('autoload')) {
        await this.load();
        return;
      }
      this.#state = 'consent';
      const size = stored?.total ?? (await remoteSize(url));
      const what = size ? `its model (${mb(size)})` : 'its model';
      const resumed = stored && !stored.complete ? ` ${mb(stored.size)} of it are already here.` : '';
      this.#ui.consentText.textContent = `This assistant runs entirely in your browser: nothing you type leaves this device. It needs to download ${what} once; later visits start from this browser's storage.${resumed}`;
      this.#ui.consent.hidden = false;
      this.#setStatus('Not started.');
    } catch (e) {
      this.#fail(e);
    }
  }

  /**
   * Downloads (or reads from storage) and loads the model; resolves with the model info, or
   * with null when the visitor cancels (the download then resumes where it stopped).
   */
  load() {
    if (this.#loading) return this.#loading;
    const ui = this.#ui;
    this.#state = 'loading';
    ui.consent.hidden = true;
    this.#showError(null);
    this.#setStatus('Loading the model…');
    ui.bar.value = 0;
    ui.progressText.textContent = '';
    ui.progress.hidden = false;
    const onProgress = (p) => {
      ui.bar.value = p.total ? p.loaded / p.total : 0;
      const verb = p.phase === 'download' ? 'Downloading' : 'Reading from storage';
      const eta = p.secondsLeft != null && p.phase === 'download' ? ` · ${Math.ceil(p.secondsLeft)} s left` : '';
      ui.progressText.textContent = `${verb} ${mb(p.loaded)} of ${mb(p.total)}${eta}`;
    };
    const aborter = new AbortController();
    ui.cancelLoad.onclick = () => aborter.abort();
    this.#loading = (async () => {
      try {
        navigator.storage?.persist?.().catch(() => {});
        const backend = this.getAttribute('backend') || undefined;
        // Several hashes (whitespace between them) pin a split model's parts, in order.
        const pins = (this.getAttribute('integrity') || '').trim().split(/\s+/).filter(Boolean);
        const integrity = pins.length > 1 ? pins : pins[0];
        const info = await this.engine.load({ url: this.#modelUrl() }, { onProgress, backend, integrity, signal: aborter.signal });
        this.#state = 'ready';
        const from = info.fromStorage ? 'from this browser' : 'downloaded';
        this.#setStatus(`Ready (${from}). Runs on this device; nothing you type leaves it.`);
        ui.status.dataset.fromStorage = String(!!info.fromStorage);
        this.#setBusy(false);
        if (!ui.panel.hidden) ui.message.focus();
        this.dispatchEvent(new CustomEvent('candlelit-ready', { detail: info }));
        return info;
      } catch (e) {
        if (e.name !== 'AbortError') {
          this.#fail(e);
          throw e;
        }
        // The visitor changed their mind: back to the question, with the way to continue.
        this.#state = 'consent';
        this.#setStatus('Download paused.');
        ui.consentText.textContent = `${e.message} What arrived is kept, so it continues where it stopped.`;
        ui.start.textContent = 'Continue download';
        ui.consent.hidden = false;
        return null;
      } finally {
        ui.cancelLoad.onclick = null;
        ui.progress.hidden = true;
        if (this.#state !== 'ready') this.#loading = null;
      }
    })();
    return this.#loading;
  }

  #fail(e) {
    this.#state = 'failed';
    this.#loading = null;
    this.#showError(e);
    this.#setStatus('The model could not be loaded.');
    this.#ui.start.textContent = 'Try again';
    this.#ui.consent.hidden = false;
    this.#ui.consentText.textContent = '';
    this.#setBusy(false);
    this.dispatchEvent(new CustomEvent('candlelit-error', { detail: { name: e?.name, message: e?.message ?? String(e) } }));
  }

  /** Sends a message as the visitor would; resolves with the reply's text. */
  async send(text) {
    if (this.#busy) throw new Error('A reply is still being written.');
    if (this.#state !== 'ready') throw new Error('The model is not loaded yet.');
    const ui = this.#ui;
    this.#showError(null);
    ui.message.value = '';
    this.#messages.push({ role: 'user', content: text });
    this.#bubble('user', text);
    const reply = { role: 'assistant', content: '' };
    const body = this.#bubble('assistant', '');
    const epoch = this.#epoch;
    this.#aborter = new AbortController();
    this.#setBusy(true);
    let painted = true;
    let thinking = false;
    const paint = () => {
      painted = true;
      // A reasoning model's thinking is not shown in the widget, only that it is thinking.
      if (thinking && !reply.content) {
        const note = document.createElement('span');
        note.className = 'thinking';
        note.textContent = 'Thinking…';
        body.replaceChildren(note);
      } else renderMarkdown(body, reply.content);
      ui.log.scrollTop = ui.log.scrollHeight;
    };
    const system = this.getAttribute('system') ?? DEFAULTS.system;
    try {
      const stream = await this.engine.chat.completions.create({
        messages: [...(system.trim() ? [{ role: 'system', content: system }] : []), ...this.messages],
        stream: true,
        temperature: this.#number('temperature', DEFAULTS.temperature),
        top_p: this.#number('top-p', DEFAULTS.topP),
        max_tokens: this.#number('max-tokens', DEFAULTS.maxTokens),
        // A long chat goes on: the oldest turns are left out of the model's view.
        truncation: 'auto',
        // thinking="off": a reasoning model answers at once (where its template has the switch).
        ...(this.engine.model?.template_switches?.includes('enable_thinking') && this.hasAttribute('thinking')
          ? { chat_template_kwargs: { enable_thinking: this.getAttribute('thinking') !== 'off' } }
          : {}),
        signal: this.#aborter.signal,
      });
      let last = null;
      for await (const chunk of stream) {
        reply.content += chunk.choices[0]?.delta?.content ?? '';
        thinking ||= !!chunk.choices[0]?.delta?.reasoning_content;
        last = chunk;
        if (painted) {
          painted = false;
          requestAnimationFrame(paint);
        }
      }
      paint();
      if (epoch === this.#epoch) {
        this.#messages.push(reply);
        this.#save();
      }
      this.dispatchEvent(new CustomEvent('candlelit-reply', {
        detail: { content: reply.content, finish_reason: last?.choices[0]?.finish_reason ?? null, usage: last?.usage ?? null },
      }));
      return reply.content;
    } catch (e) {
      // The question stays out of the history when it got no answer, so a retry is clean.
      if (epoch === this.#epoch) this.#messages.pop();
      body.previousElementSibling?.remove();
      body.remove();
      if (!ui.message.value) ui.message.value = text;
      this.#showError(e);
      if (e.fatal || e.name === 'NoModel') {
        // The model is gone (a crashed worker, or unloaded through `engine`): offer to load again.
        this.#state = 'failed';
        this.#loading = null;
        this.#setStatus('The model is no longer loaded.');
        this.#ui.start.textContent = 'Load again';
        this.#ui.consentText.textContent = '';
        this.#ui.consent.hidden = false;
      }
      throw e;
    } finally {
      this.#aborter = null;
      this.#setBusy(false);
    }
  }

  /** Starts a new conversation. */
  reset() {
    this.#epoch++;
    this.#aborter?.abort();
    this.#messages = [];
    this.#save();
    this.#ui.log.replaceChildren();
    if (this.#state === 'ready') this.engine.resetChat().catch(() => {});
  }

  #bubble(role, text) {
    const div = document.createElement('div');
    div.className = `msg ${role}`;
    div.setAttribute('aria-label', role === 'user' ? 'You' : 'Assistant');
    if (role === 'user') div.textContent = text;
    else renderMarkdown(div, text);
    this.#ui.log.append(div);
    this.#ui.log.scrollTop = this.#ui.log.scrollHeight;
    return div;
  }

  // The conversation lasts for the visitor's session on this site (moving between pages),
  // kept per model in sessionStorage; a broken saved value starts a fresh conversation.
  #key() {
    return `candlelit-chat:${this.getAttribute('model') ?? ''}`;
  }

  #restore() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.#key()));
      if (Array.isArray(saved)) {
        this.#messages = saved.filter((m) => (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string');
      }
    } catch {
      this.#messages = [];
    }
    this.#ui.log.replaceChildren();
    for (const m of this.#messages) this.#bubble(m.role, m.content);
  }

  #save() {
    try {
      sessionStorage.setItem(this.#key(), JSON.stringify(this.messages));
    } catch {
      // storage full or disabled: the conversation just does not survive a reload
    }
  }

  #setStatus(text) {
    this.#ui.status.textContent = text;
  }

  #showError(e) {
    this.#ui.error.hidden = !e;
    this.#ui.error.textContent = e ? (e.message || String(e)) : '';
  }

  #setBusy(b) {
    this.#busy = b;
    const ready = this.#state === 'ready';
    this.#ui.send.disabled = b || !ready;
    this.#ui.message.disabled = !ready;
    this.#ui.stop.disabled = !b;
  }
}

if (!customElements.get('candlelit-chat')) customElements.define('candlelit-chat', CandlelitChat);
