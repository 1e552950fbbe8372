// The chat page end to end: load the default model with a moving progress bar, stream a
// reply, stop a long reply, reuse the KV cache on the second turn.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ask, session } from './helpers.mjs';

let s;
let ui;

before(async () => {
  s = await session();
  ui = s.ui;
});

after(() => s?.close());

test('the default model loads with a progress bar that moves and finishes', async () => {
  const values = [];
  const sample = setInterval(async () => {
    const v = await ui.page.evaluate(() => {
      const p = document.getElementById('progress');
      return p.hidden ? null : Number(document.getElementById('progress-bar').value);
    }).catch(() => null);
    if (v !== null) values.push(v);
  }, 50);
  await ui.model.selectOption('/models/smollm2-135m-instruct-q4_1.gguf');
  await ui.load.click();
  await ui.progress.waitFor({ state: 'visible' });
  await ui.page.waitForFunction(() => /ready/.test(document.getElementById('status').textContent), null, { timeout: 240_000 });
  clearInterval(sample);
  const distinct = new Set(values.map((v) => v.toFixed(2)));
  console.log(`progress samples: ${values.length}, distinct: ${distinct.size}, last ${values.at(-1)}; ${await ui.status.innerText()}`);
  assert.ok(distinct.size >= 3, `progress bar did not move: ${[...distinct]}`);
  assert.ok(await ui.progress.isHidden(), 'progress bar still shown after loading');
  assert.equal(await ui.error.isVisible(), false);
});

test('a question gets a streamed reply naming Paris', async () => {
  const updates = [];
  await ui.page.exposeFunction('recordUpdate', (t) => updates.push(t));
  await ui.page.evaluate(() => {
    new MutationObserver(() => {
      const last = [...document.querySelectorAll('.msg.assistant .body')].at(-1);
      if (last) window.recordUpdate(last.textContent);
    }).observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true });
  });
  const reply = await ask(ui, 'What is the capital of France?');
  const distinct = new Set(updates.filter(Boolean));
  console.log(`reply: ${JSON.stringify(reply)} after ${distinct.size} distinct updates`);
  assert.match(reply, /Paris/);
  assert.ok(distinct.size >= 3, `the reply did not grow over several updates (${distinct.size})`);
  const meta = await ui.page.locator('.msg.assistant .meta').last().innerText();
  assert.match(meta, /tok\/s/);
});

test('a second turn reuses the KV cache', async () => {
  await ask(ui, 'And what is the capital of Germany?');
  const meta = await ui.page.locator('.msg.assistant .meta').last().innerText();
  console.log(`second turn: ${meta}`);
  const m = /prompt (\d+) tokens \((\d+) prefilled, (\d+) from cache\)/.exec(meta);
  assert.ok(m, meta);
  const [, prompt, prefilled, cached] = m.map(Number);
  assert.ok(prefilled < prompt, `prefilled ${prefilled} of ${prompt}`);
  assert.ok(cached > 20, `only ${cached} tokens reused`);
});

test('Stop ends a long reply within a moment and a new message works right after', async () => {
  await ui.message.fill('Write a very long story about a dragon who learns to sing, with many chapters.');
  await ui.message.press('Enter');
  const body = ui.page.locator('.msg.assistant .body').last();
  await ui.page.waitForFunction(() => ([...document.querySelectorAll('.msg.assistant .body')].at(-1)?.textContent.length ?? 0) > 20);
  const t0 = Date.now();
  await ui.stop.click();
  await ui.page.waitForFunction(() => document.getElementById('stop').disabled, null, { timeout: 5_000 });
  const stoppedMs = Date.now() - t0;
  const textAtStop = await body.innerText();
  await ui.page.waitForTimeout(500);
  assert.equal(await body.innerText(), textAtStop, 'the reply kept growing after Stop');
  const meta = await ui.page.locator('.msg.assistant .meta').last().innerText();
  console.log(`stopped after ${stoppedMs} ms: ${meta}`);
  assert.match(meta, /stopped/);
  assert.ok(stoppedMs < 2_000, `Stop took ${stoppedMs} ms`);
  const reply = await ask(ui, 'What is the capital of Italy?');
  assert.match(reply, /Rome/);
});

test('New chat clears the conversation, which is otherwise kept across reloads', async () => {
  const before = await ui.page.locator('.msg').count();
  await ui.page.reload();
  await ui.page.locator('.msg').first().waitFor();
  assert.equal(await ui.page.locator('.msg').count(), before);
  await ui.newChat.click();
  assert.equal(await ui.page.locator('.msg').count(), 0);
});
