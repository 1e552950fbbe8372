// Weights in browser storage: an interrupted download resumes with a Range request and
// ends byte-identical; after one visit the page, the stored model and a chat work offline.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SMOLLM2, ask, loadModel, root, session } from './helpers.mjs';

let s;
let server;
let browser;
let ui;

before(async () => {
  s = await session();
  ({ server, browser, ui } = s);
});

after(() => s?.close());

const sha = (buf) => createHash('sha256').update(buf).digest('hex');

async function storedSha(page, name) {
  return page.evaluate(async (n) => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('candlelit-models');
    const file = await (await dir.getFileHandle(n)).getFile();
    const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }, name);
}

test('a model that does not fit in the storage quota is refused with a clear reason', async () => {
  const cdp = await browser.context.newCDPSession(ui.page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.base, quotaSize: 20_000_000 });
  try {
    await loadModel(ui);
    const err = await ui.error.innerText();
    console.log(`small quota: ${err}`);
    // The estimate's free space, or (when the service worker's app-shell cache took the space
    // after the estimate) the browser's refusal of the write, said the same way.
    assert.match(err, /needs 98 MB of browser storage (but only \d+ MB are free|and the browser refused to store it)/);
  } finally {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.base });
  }
});

test('a download cut half way resumes with a Range request and ends identical', async () => {
  const original = readFileSync(path.join(process.env.CANDLELIT_MODELS || path.join(root, 'models'), path.basename(SMOLLM2)));
  await server.hook('/__test/reset');
  await server.hook(`/__test/cut?after=${40_000_000}`);
  await loadModel(ui);
  const err = await ui.error.innerText();
  console.log(`after the cut: ${err}`);
  assert.match(err, /download stopped after/i);
  const stored = await ui.page.evaluate(async () => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    return new CandlelitEngine().listStoredModels();
  });
  const partial = stored.find((m) => !m.complete);
  assert.ok(partial && partial.size > 10_000_000 && partial.size < original.length, JSON.stringify(stored));

  await loadModel(ui);
  assert.match(await ui.status.innerText(), /ready — resumed at/);
  const log = await server.hook('/__test/log');
  const ggufRequests = log.filter((r) => r.path.endsWith('.gguf'));
  console.log(JSON.stringify(ggufRequests));
  assert.equal(ggufRequests.length, 2);
  assert.equal(ggufRequests[0].range, null);
  assert.equal(ggufRequests[1].range, `bytes=${partial.size}-`);
  assert.equal(ggufRequests[1].status, 206);
  const name = stored[0].name;
  assert.equal(await storedSha(ui.page, name), sha(original), 'the stored file differs from the original');
  assert.match(await ask(ui, 'What is the capital of France?'), /Paris/);
});

test('with the network off, the page, the stored model and a new chat work', async () => {
  // The service worker must control the page before we go offline.
  await ui.page.reload();
  await ui.page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20_000 });
  // Really offline: the server is gone and the browser context is offline too
  // (DevTools' offline emulation alone does not cover worker and service-worker fetches).
  server.stop();
  await browser.context.setOffline(true);
  const t0 = Date.now();
  await ui.page.reload();
  await ui.newChat.click();
  await loadModel(ui);
  const status = await ui.status.innerText();
  console.log(`offline reload + load: ${Date.now() - t0} ms; ${status}`);
  assert.match(status, /ready — from browser storage/);
  const reply = await ask(ui, 'What is the capital of France?');
  assert.match(reply, /Paris/);
  const meta = await ui.page.locator('.msg.assistant .meta').last().innerText();
  console.log(`offline reply: ${JSON.stringify(reply)}; ${meta}`);
});

test('stored models are listed with sizes and can be deleted (offline too)', async () => {
  await ui.page.getByText('Stored models', { exact: true }).click();
  const item = ui.page.locator('#stored li').first();
  await item.waitFor();
  assert.match(await item.innerText(), /smollm2-135m-instruct-q4_1\.gguf — 98\.4 MB/);
  await item.getByRole('button', { name: /Delete/ }).click();
  await ui.page.waitForFunction(() => document.querySelector('#stored li')?.textContent === 'None yet.');
});

