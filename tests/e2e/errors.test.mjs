// Bad input in the page: a truncated and a corrupted GGUF each give a readable error and
// the page still works with a good model afterwards; model output cannot inject HTML.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SMOLLM2, ask, loadModel, root, session } from './helpers.mjs';

let s;
let server;
let ui;
let files;

before(async () => {
  files = mkdtempSync(path.join(os.tmpdir(), 'candlelit-files-'));
  const good = readFileSync(path.join(process.env.CANDLELIT_MODELS || path.join(root, 'models'), path.basename(SMOLLM2)));
  writeFileSync(path.join(files, 'truncated.gguf'), good.subarray(0, 30_000_000));
  const corrupt = Buffer.from(good.subarray(0, 4_000_000));
  corrupt.write('GGML', 0); // wrong magic
  writeFileSync(path.join(files, 'corrupt.gguf'), corrupt);
  const absurd = Buffer.from(good.subarray(0, 4_000_000));
  absurd.writeBigUInt64LE(1n << 40n, 8); // a header claiming 2^40 tensors
  writeFileSync(path.join(files, 'absurd.gguf'), absurd);
  writeFileSync(path.join(files, 'not-a-model.gguf'), '<!doctype html><p>404 page served as a model</p>');
  s = await session({ testFiles: files });
  ({ server, ui } = s);
});

after(async () => {
  await s?.close();
  rmSync(files, { recursive: true, force: true });
});

async function loadUrl(url) {
  await ui.model.selectOption('__url');
  await ui.page.getByLabel('Model URL').fill(server.base + url);
  await ui.load.click();
  await ui.page.waitForFunction(() => /ready|No model loaded/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
  return (await ui.error.isVisible()) ? ui.error.innerText() : null;
}

test('a truncated GGUF gives a readable error', async () => {
  // Served whole with its short length: the header points past the end of the file.
  const err = await loadUrl('/test-files/truncated.gguf');
  console.log(`truncated: ${err}`);
  assert.match(err ?? '', /outside the file|truncated/i);
});

test('a corrupted GGUF gives a readable error', async () => {
  const err = await loadUrl('/test-files/corrupt.gguf');
  console.log(`corrupt: ${err}`);
  assert.match(err ?? '', /not a GGUF file/);
  const err2 = await loadUrl('/test-files/absurd.gguf');
  console.log(`absurd: ${err2}`);
  assert.match(err2 ?? '', /implausible GGUF header: tensor count/);
  const err3 = await loadUrl('/test-files/not-a-model.gguf');
  assert.match(err3 ?? '', /not a GGUF file/);
});

test('after bad files the page still works with a good model', async () => {
  await loadModel(ui, SMOLLM2);
  assert.equal(await ui.error.isVisible(), false);
  assert.match(await ask(ui, 'What is the capital of France?'), /Paris/);
});

test('HTML in a reply is shown inert: nothing executes', async () => {
  const payloads = [
    '<img src=x onerror="window.__pwned=1">',
    '<script>window.__pwned=2</script>',
    '[click](javascript:window.__pwned=3)',
    '<a href="#" onclick="window.__pwned=4">x</a><svg onload="window.__pwned=5"></svg>',
  ];
  // A conversation restored from storage goes through the same renderer as streamed replies.
  await ui.page.evaluate((ps) => {
    const msgs = ps.flatMap((p) => [{ role: 'user', content: 'echo' }, { role: 'assistant', content: `Here: ${p}` }]);
    const s = JSON.parse(localStorage.getItem('candlelit.state.v1'));
    localStorage.setItem('candlelit.state.v1', JSON.stringify({ ...s, messages: msgs }));
  }, payloads);
  await ui.page.reload();
  await ui.page.locator('.msg.assistant').nth(payloads.length - 1).waitFor();
  // And a live reply asked to repeat the payload.
  await loadModel(ui, SMOLLM2);
  const live = await ask(ui, 'Repeat exactly, without changes: <img src=x onerror="window.__pwned=6"> <script>window.__pwned=7</script>');
  console.log(`live echo: ${JSON.stringify(live)}`);
  for (const a of await ui.page.locator('.msg.assistant a').all()) {
    const href = (await a.getAttribute('href')) ?? '';
    assert.ok(!href.startsWith('javascript:'), href);
    await a.click({ trial: true }).catch(() => {});
  }
  await ui.page.waitForTimeout(300);
  const pwned = await ui.page.evaluate(() => window.__pwned ?? null);
  assert.equal(pwned, null, `a payload executed (${pwned})`);
  const dom = await ui.page.evaluate(() => {
    const els = [...document.querySelectorAll('#log *')];
    return {
      scripts: document.querySelectorAll('#log script').length,
      handlers: els.flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith('on')).map((a) => `${e.tagName} ${a.name}`)),
      imgs: document.querySelectorAll('#log img').length,
    };
  });
  console.log(`rendered: ${JSON.stringify(dom)}`);
  assert.equal(dom.scripts, 0, 'a script element reached the conversation');
  assert.deepEqual(dom.handlers, [], 'event-handler attributes reached the conversation');
});

test('a crashed engine is reported, and the page starts a new worker and chats again', async () => {
  const r = await ui.page.evaluate(async () => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine();
    await e.load({ url: '/models/smollm2-135m-instruct-q4_1.gguf' });
    // A real wasm trap inside the worker (what a bug or memory exhaustion looks like).
    const crash = await e._debugCall?.({ type: 'fault-inject-trap' }).catch((err) => ({ name: err.name, fatal: err.fatal, message: err.message }));
    const afterCrash = e.model;
    let noModel = null;
    try {
      await e.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    } catch (err) {
      noModel = err.name;
    }
    await e.load({ url: '/models/smollm2-135m-instruct-q4_1.gguf' });
    const out = await e.chat.completions.create({ messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is the capital of France?' }], temperature: 0, max_tokens: 20 });
    return { crash, afterCrash, noModel, reply: out.choices[0].message.content };
  });
  console.log(JSON.stringify(r));
  assert.equal(r.crash?.name, 'EngineCrashed');
  assert.equal(r.crash?.fatal, true);
  assert.equal(r.afterCrash, null, 'the client still thinks a model is loaded');
  assert.equal(r.noModel, 'NoModel');
  assert.match(r.reply, /Paris/);
});

test('a chat longer than the context: a clear error, or with truncation its oldest turns left out', async () => {
  const r = await ui.page.evaluate(async () => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine();
    await e.load({ url: '/models/smollm2-135m-instruct-q4_1.gguf' }, { contextSize: 256 });
    const messages = [{ role: 'system', content: 'You are a helpful assistant.' }];
    for (let i = 0; i < 10; i++) {
      messages.push({ role: 'user', content: `Tell me fact number ${i} about the weather in spring.` });
      messages.push({ role: 'assistant', content: `Fact ${i}: spring brings rain showers, mild winds and longer days.` });
    }
    messages.push({ role: 'user', content: 'What is the capital of France?' });
    const params = { messages, temperature: 0, max_tokens: 24 };
    let overflow = null;
    try {
      await e.chat.completions.create(params);
    } catch (err) {
      overflow = { name: err.name, message: err.message };
    }
    const out = await e.chat.completions.create({ ...params, truncation: 'auto' });
    e.terminate();
    return { overflow, reply: out.choices[0].message.content, usage: out.usage };
  });
  console.log(JSON.stringify(r));
  assert.equal(r.overflow?.name, 'ContextOverflow');
  assert.match(r.overflow.message, /the context holds 256/);
  assert.match(r.reply, /Paris/);
  assert.ok(r.usage.extra.dropped_messages >= 2, JSON.stringify(r.usage));
  assert.ok(r.usage.prompt_tokens + 24 <= 256, JSON.stringify(r.usage));
});

test('a pinned SHA-256 loads the right file and refuses another, deleting its stored copy', async () => {
  const bytes = readFileSync(path.join(process.env.CANDLELIT_MODELS || path.join(root, 'models'), path.basename(SMOLLM2)));
  const hex = createHash('sha256').update(bytes).digest('hex');
  const sri = `sha256-${createHash('sha256').update(bytes).digest('base64')}`;
  const r = await ui.page.evaluate(async ({ hex, sri, url }) => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const e = new CandlelitEngine();
    const absolute = new URL(url, location.href).href;
    await e.load({ url });
    // From storage, once without and once with the hash (its cost shows in loadMs).
    const plain = await e.load({ url });
    const bySri = await e.load({ url }, { integrity: sri });
    const byHex = await e.load({ url }, { integrity: hex.toUpperCase() });
    const wrong = (hex[0] === '0' ? '1' : '0') + hex.slice(1);
    const failure = async (integrity) => {
      try {
        await e.load({ url }, { integrity });
        return null;
      } catch (err) {
        return { name: err.name, message: err.message };
      }
    };
    const refused = await failure(wrong);
    const storedAfter = (await e.listStoredModels()).filter((m) => m.url === absolute);
    const malformed = await failure('md5-abc');
    const again = await e.load({ url }, { integrity: hex });
    const cached = await e.load({ url }, { integrity: hex });
    const out = await e.chat.completions.create({ messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is the capital of France?' }], temperature: 0, max_tokens: 16 });
    e.terminate();
    const pick = (i) => ({ fromStorage: i.fromStorage, verified: i.verified ?? false, hashed: i.hashed ?? false, loadMs: Math.round(i.loadMs) });
    return { plain: pick(plain), bySri: pick(bySri), byHex: pick(byHex), refused, storedAfter, malformed, again: pick(again), cached: pick(cached), reply: out.choices[0].message.content };
  }, { hex, sri, url: SMOLLM2 });
  console.log(JSON.stringify(r));
  assert.equal(r.plain.verified, false);
  // The stored copy is hashed once; a later load pinning the same hash trusts that check.
  assert.deepEqual([r.bySri.verified, r.bySri.hashed], [true, true]);
  assert.deepEqual([r.byHex.verified, r.byHex.hashed], [true, false]);
  assert.equal(r.refused?.name, 'IntegrityError');
  assert.match(r.refused.message, new RegExp(`SHA-256 is ${hex}`));
  assert.deepEqual(r.storedAfter, [], 'the refused file stayed in storage');
  assert.equal(r.malformed?.name, 'InvalidRequest');
  assert.deepEqual([r.again.fromStorage, r.again.verified, r.again.hashed], [false, true, true]);
  assert.deepEqual([r.cached.fromStorage, r.cached.verified, r.cached.hashed], [true, true, false]);
  assert.match(r.reply, /Paris/);
});
