// The embeddable widget as a site owner uses it: a page on one origin (a plain site, not
// cross-origin isolated) loads widget.js and the model from another origin (a CDN sending
// CORS headers), in a real headless Chromium.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { launch, SMOLLM2, startServer } from './helpers.mjs';

let cdn;
let site;
let browser;
let page;

// Hostile-ish site styles: none of them may reach the widget's shadow tree.
const sitePage = (cdnBase) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A shop</title>
<style>
  button { background: rgb(255, 0, 0) !important; font-size: 40px; }
  .log, .msg, textarea { display: none !important; }
</style>
<script type="module" src="${cdnBase}/pkg/widget.js"></script>
</head><body><h1>Welcome to the shop</h1>
<candlelit-chat model="${cdnBase}${SMOLLM2}" heading="Ask the shop" temperature="0" max-tokens="40"></candlelit-chat>
</body></html>`;

async function startSite(html) {
  const server = createServer((req, res) => {
    if (req.url !== '/') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(html());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${server.address().port}`, stop: () => server.close() };
}

const widget = (i = 0) => page.locator('candlelit-chat').nth(i);
const ggufRequests = async () => (await cdn.hook('/__test/log')).filter((r) => r.path.endsWith('.gguf'));

/** Sends a message through the widget's own textbox; resolves with the reply's text. */
async function ask(text, { timeout = 120_000 } = {}) {
  const w = widget();
  const before = await w.locator('.msg.assistant').count();
  await w.getByRole('textbox', { name: 'Message' }).fill(text);
  await w.getByRole('textbox', { name: 'Message' }).press('Enter');
  await w.locator('.msg.assistant').nth(before).waitFor();
  await page.waitForFunction(() => document.querySelector('candlelit-chat').shadowRoot.querySelector('.stop').disabled, null, { timeout });
  return w.locator('.msg.assistant').nth(before).innerText();
}

async function waitReady(i = 0) {
  await page.waitForFunction(
    (n) => /Ready|could not/.test(document.querySelectorAll('candlelit-chat')[n].shadowRoot.querySelector('.status').textContent),
    i,
    { timeout: 240_000 },
  );
}

before(async () => {
  cdn = await startServer({ cors: true });
  site = await startSite(() => sitePage(cdn.base));
  browser = await launch();
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
});

after(async () => {
  if (process.env.E2E_LOGS) console.log(browser.logs.join('\n'));
  await browser.close();
  site.stop();
  cdn.stop();
});

test('on another site the widget asks before downloading, then answers from the model', async () => {
  assert.notEqual(new URL(site.base).origin, new URL(cdn.base).origin);
  await page.goto(site.base);
  // Nothing is fetched from the model until the visitor opens the chat and agrees.
  await widget().getByRole('button', { name: 'Open chat' }).click();
  const start = widget().getByRole('button', { name: 'Download and start' });
  await start.waitFor();
  const consent = await widget().locator('.consent-text').innerText();
  console.log(`consent: ${consent}`);
  assert.match(consent, /download its model \(98 MB\) once/);
  assert.deepEqual((await ggufRequests()).map((r) => r.method), ['HEAD']);

  // The visitor starts the download, cancels it part way, then lets it go on.
  await cdn.hook('/__test/slow?bytesPerSecond=20000000');
  await start.click();
  await page.waitForFunction(() => document.querySelector('candlelit-chat').shadowRoot.querySelector('progress').value > 0.15, null, { timeout: 60_000 });
  await widget().getByRole('button', { name: 'Cancel' }).click();
  const resume = widget().getByRole('button', { name: 'Continue download' });
  await resume.waitFor({ timeout: 10_000 });
  assert.match(await widget().locator('.status').innerText(), /Download paused/);
  assert.match(await widget().locator('.consent-text').innerText(), /continues where it stopped/);
  await resume.click();
  await waitReady();
  const status = await widget().locator('.status').innerText();
  assert.match(status, /^Ready \(downloaded\)/, status);
  const gets = (await ggufRequests()).filter((r) => r.method === 'GET');
  assert.equal(gets.length, 2, JSON.stringify(gets));
  assert.equal(gets[0].status, 200);
  assert.equal(gets[1].status, 206, 'the second request resumes the first');
  assert.match(gets[1].range, /^bytes=[1-9]\d{6,}-$/);

  const info = await page.evaluate(() => ({ isolated: crossOriginIsolated, model: document.querySelector('candlelit-chat').engine.model }));
  console.log(`engine: ${JSON.stringify({ isolated: info.isolated, threads: info.model.threads, simd: info.model.simd, backend: info.model.backend })}`);
  assert.equal(info.isolated, false);
  assert.equal(info.model.threads, 1);

  const reply = await ask('What is the capital of France?');
  console.log(`reply: ${JSON.stringify(reply)}`);
  assert.match(reply, /Paris/);

  // The site's styles did not reach inside: the conversation shows, buttons keep their look.
  assert.equal(await widget().locator('.msg.assistant').first().isVisible(), true);
  const sendBg = await widget().getByRole('button', { name: 'Send' }).evaluate((b) => getComputedStyle(b).backgroundColor);
  assert.notEqual(sendBg, 'rgb(255, 0, 0)');
});

test('Stop ends a reply mid-way and the widget chats on', async () => {
  await page.evaluate(() => {
    const w = document.querySelector('candlelit-chat');
    w.setAttribute('max-tokens', '300');
    w.addEventListener('candlelit-reply', (e) => (window.__lastReply = e.detail));
  });
  const w = widget();
  const before = await w.locator('.msg.assistant').count();
  await w.getByRole('textbox', { name: 'Message' }).fill('Write a long story about a dragon who learns to bake bread.');
  await w.getByRole('button', { name: 'Send' }).click();
  await page.waitForFunction((n) => (document.querySelector('candlelit-chat').shadowRoot.querySelectorAll('.msg.assistant')[n]?.textContent.length ?? 0) > 20, before);
  await w.getByRole('button', { name: 'Stop' }).click();
  await page.waitForFunction(() => window.__lastReply, null, { timeout: 30_000 });
  const r = await page.evaluate(() => window.__lastReply);
  console.log(`stopped after ${r.usage.completion_tokens} tokens: ${JSON.stringify(r.content.slice(0, 80))}`);
  assert.equal(r.finish_reason, 'abort');
  assert.ok(r.usage.completion_tokens < 300);
  assert.equal(await w.getByRole('button', { name: 'Send' }).isEnabled(), true);
  await page.evaluate(() => document.querySelector('candlelit-chat').setAttribute('max-tokens', '40'));
  // (A template SmolLM2 was not trained on: what it answers with it is not the point here.)
  const second = await ask('What is the capital of Italy?');
  assert.ok(second.length > 0 && !/Thinking…/.test(second), second);
});

test('a reply that fails keeps the conversation and the question, and offers to load again', async () => {
  const w = widget();
  const turns = await w.locator('.msg').count();
  // The model goes away under the widget (as after a crash): the next reply cannot start.
  await page.evaluate(() => document.querySelector('candlelit-chat').engine.unload());
  await w.getByRole('textbox', { name: 'Message' }).fill('What is the capital of Portugal?');
  await w.getByRole('button', { name: 'Send' }).click();
  await w.getByRole('alert').waitFor();
  assert.match(await w.getByRole('alert').innerText(), /No model is loaded/);
  assert.equal(await w.locator('.msg').count(), turns, 'the failed turn stayed on screen');
  assert.equal(await w.locator('.log').isVisible(), true);
  assert.equal(await w.getByRole('textbox', { name: 'Message' }).inputValue(), 'What is the capital of Portugal?');
  await w.getByRole('button', { name: 'Load again' }).click();
  await waitReady();
  await w.getByRole('textbox', { name: 'Message' }).fill('');
  assert.match(await ask('What is the capital of Portugal?'), /Lisbon/);
  assert.equal(await w.locator('.msg').count(), turns + 2);
});

test('the next visit loads the model from the site\'s storage and keeps the conversation', async () => {
  const before = (await ggufRequests()).length;
  const turns = await widget().locator('.msg').count();
  await page.reload();
  await widget().getByRole('button', { name: 'Open chat' }).click();
  // A stored model loads without asking again.
  await waitReady();
  assert.equal(await widget().getByRole('button', { name: 'Download and start' }).isVisible(), false);
  assert.match(await widget().locator('.status').innerText(), /^Ready \(from this browser\)/);
  assert.equal((await ggufRequests()).length, before, 'the model was fetched again');
  assert.equal(await widget().locator('.msg').count(), turns);
  const reply = await ask('And the capital of Germany?');
  console.log(`after reload: ${JSON.stringify(reply)}`);
  assert.match(reply, /Berlin/);
  // New chat forgets the conversation, a reply still streaming included, on screen and
  // after a reload.
  await page.evaluate(() => document.querySelector('candlelit-chat').setAttribute('max-tokens', '300'));
  await widget().getByRole('textbox', { name: 'Message' }).fill('Write a long story about a lighthouse.');
  await widget().getByRole('button', { name: 'Send' }).click();
  await page.waitForFunction(() => (document.querySelector('candlelit-chat').shadowRoot.querySelector('.msg.assistant:last-child')?.textContent.length ?? 0) > 20);
  await widget().getByRole('button', { name: 'New chat' }).click();
  await page.waitForFunction(() => !document.querySelector('candlelit-chat').shadowRoot.querySelector('.send').disabled);
  await page.evaluate(() => document.querySelector('candlelit-chat').setAttribute('max-tokens', '40'));
  assert.equal(await widget().locator('.msg').count(), 0);
  await page.reload();
  await widget().getByRole('button', { name: 'Open chat' }).click();
  await waitReady();
  assert.equal(await widget().locator('.msg').count(), 0);
  assert.deepEqual(await page.evaluate(() => document.querySelector('candlelit-chat').messages), []);
});

test('HTML in replies is inert in the widget', async () => {
  const payloads = [
    '<img src=x onerror="window.__pwned=1">',
    '<script>window.__pwned=2</script>',
    '[click](javascript:window.__pwned=3)',
    '<a href="#" onclick="window.__pwned=4">x</a><svg onload="window.__pwned=5"></svg>',
  ];
  // A restored conversation goes through the same renderer as streamed replies.
  await page.evaluate(({ ps, model }) => {
    const msgs = ps.flatMap((p) => [{ role: 'user', content: 'echo' }, { role: 'assistant', content: `Here: ${p}` }]);
    sessionStorage.setItem(`candlelit-chat:${model}`, JSON.stringify(msgs));
  }, { ps: payloads, model: `${cdn.base}${SMOLLM2}` });
  await page.reload();
  await widget().getByRole('button', { name: 'Open chat' }).click();
  await waitReady();
  assert.equal(await widget().locator('.msg.assistant').count(), payloads.length);
  const live = await ask('Repeat exactly, without changes: <img src=x onerror="window.__pwned=6"> <script>window.__pwned=7</script>');
  console.log(`live echo: ${JSON.stringify(live)}`);
  for (const a of await widget().locator('.msg.assistant a').all()) {
    const href = (await a.getAttribute('href')) ?? '';
    assert.ok(!href.startsWith('javascript:'), href);
    assert.equal(await a.getAttribute('rel'), 'noopener noreferrer');
    await a.click({ trial: true }).catch(() => {});
  }
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__pwned ?? null), null, 'a payload executed');
  const dom = await page.evaluate(() => {
    const log = document.querySelector('candlelit-chat').shadowRoot.querySelector('.log');
    const els = [...log.querySelectorAll('*')];
    return {
      scripts: log.querySelectorAll('script').length,
      handlers: els.flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith('on')).map((a) => `${e.tagName} ${a.name}`)),
    };
  });
  console.log(`rendered: ${JSON.stringify(dom)}`);
  assert.equal(dom.scripts, 0);
  assert.deepEqual(dom.handlers, []);
});

test('a missing model is a clear error in the widget, not a hang', async () => {
  await page.evaluate((src) => {
    const w = document.createElement('candlelit-chat');
    w.setAttribute('inline', '');
    w.setAttribute('model', src);
    document.body.append(w);
  }, `${cdn.base}/models/no-such-model.gguf`);
  // An inline widget is open from the start; the model is not stored, so it asks first.
  const start = widget(1).getByRole('button', { name: 'Download and start' });
  await start.waitFor();
  await start.click();
  await waitReady(1);
  const error = await widget(1).getByRole('alert').innerText();
  console.log(`error: ${error}`);
  assert.match(error, /404/);
  assert.equal(await widget(1).getByRole('button', { name: 'Try again' }).isVisible(), true);
  assert.equal(await widget(1).getByRole('textbox', { name: 'Message' }).isDisabled(), true);
  // The first widget is unaffected.
  assert.match(await ask('What is the capital of Spain?'), /Madrid/);
});

test('thinking="off" turns a reasoning model\'s thinking off; while one thinks the reply says so', async () => {
  // SmolLM2 with Qwen3's chat template (the same ChatML tokens) has Qwen3's switch; a regex
  // makes it think first. The requests are seen on their way to the engine.
  const template = await (await fetch(`${cdn.base}/models/templates/Qwen-Qwen3-0.6B.jinja`)).text();
  const pattern = '<think>[A-Za-z ,]{10,60}</think>\\n\\n[A-Z][a-z]+( [a-z]+){0,6}\\.';
  await page.evaluate(async ([url, chatTemplate, pattern]) => {
    const w = document.querySelector('candlelit-chat');
    await w.engine.load({ url }, { chatTemplate });
    const create = w.engine.chat.completions.create;
    globalThis.__requests = [];
    w.engine.chat.completions.create = (p) => {
      globalThis.__requests.push(p);
      return create({ ...p, ...(globalThis.__think ? { response_format: { type: 'regex', pattern } } : {}) });
    };
    globalThis.__think = true;
    globalThis.__sawThinking = false;
    new MutationObserver(() => {
      if (w.shadowRoot.querySelector('.msg.assistant .thinking')?.textContent === 'Thinking…') globalThis.__sawThinking = true;
    }).observe(w.shadowRoot, { subtree: true, childList: true, characterData: true });
  }, [`${cdn.base}${SMOLLM2}`, template, pattern]);
  const reply = await ask('What is the capital of France?');
  console.log(`after thinking: ${JSON.stringify(reply)}`);
  assert.ok(reply.length > 0 && !/think>|Thinking…/.test(reply), reply);
  assert.equal(await page.evaluate(() => globalThis.__sawThinking), true, 'no "Thinking…" while it thought');
  await page.evaluate(() => {
    globalThis.__think = false;
    document.querySelector('candlelit-chat').setAttribute('thinking', 'off');
  });
  // (A template SmolLM2 was not trained on: what it answers with it is not the point here.)
  const second = await ask('What is the capital of Italy?');
  assert.ok(second.length > 0 && !/Thinking…/.test(second), second);
  const kwargs = await page.evaluate(() => globalThis.__requests.map((p) => p.chat_template_kwargs ?? null));
  assert.deepEqual(kwargs, [null, { enable_thinking: false }]);
});

test('the demo page shows the widget, served next to the package', async () => {
  await page.goto(`${cdn.base}/widget.html`);
  await widget().getByRole('button', { name: 'Open chat' }).click();
  await widget().getByRole('button', { name: 'Download and start' }).waitFor();
  assert.equal(await widget().getByRole('heading').innerText(), 'Ask the demo');
  assert.match(await widget().locator('.consent-text').innerText(), /\(98 MB\)/);
  await widget().getByRole('button', { name: 'Close chat' }).first().click();
  assert.equal(await widget().locator('.panel').isVisible(), false);
});
