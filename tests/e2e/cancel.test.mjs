// Cancelling a load: the page's Cancel stops a download between two chunks, keeps what
// arrived and the next Load resumes it with a Range request; a load from storage stops too,
// the worker stays usable, and what the engine had received is freed.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SMOLLM2, ask, loadModel, session } from './helpers.mjs';

let s;
let server;
let ui;

before(async () => {
  s = await session();
  ({ server, ui } = s);
});

after(() => s?.close());

test('Cancel stops a download mid-way and the next Load resumes it', async () => {
  await server.hook('/__test/reset');
  await server.hook('/__test/slow?bytesPerSecond=20000000');
  await ui.model.selectOption(SMOLLM2);
  await ui.load.click();
  // Wait until a good part has arrived, then cancel.
  await ui.page.waitForFunction(() => Number(document.getElementById('progress-bar').value) > 0.15, null, { timeout: 60_000 });
  const t0 = Date.now();
  await ui.page.getByRole('button', { name: 'Cancel' }).click();
  await ui.page.waitForFunction(() => /No model loaded/.test(document.getElementById('status').textContent), null, { timeout: 10_000 });
  const stoppedMs = Date.now() - t0;
  const status = await ui.status.innerText();
  console.log(`cancelled after ${stoppedMs} ms: ${status}`);
  assert.match(status, /The download was cancelled; load again to resume it/);
  assert.equal(await ui.error.isVisible(), false, 'a cancel is not an error');
  const stored = await ui.page.evaluate(async () => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    return new CandlelitEngine().listStoredModels();
  });
  const partial = stored.find((m) => !m.complete);
  assert.ok(partial && partial.size > 10_000_000 && partial.size < 90_000_000, JSON.stringify(stored));
  // The response stopped too: the server saw its connection closed long before the end.
  await loadModel(ui);
  assert.match(await ui.status.innerText(), /ready — resumed at/);
  const gets = (await server.hook('/__test/log')).filter((r) => r.path.endsWith('.gguf') && r.method === 'GET');
  assert.equal(gets.length, 2, JSON.stringify(gets));
  assert.equal(gets[1].range, `bytes=${partial.size}-`);
  assert.equal(gets[1].status, 206);
  assert.match(await ask(ui, 'What is the capital of France?'), /Paris/);
});

test('cancelled loads free what they received; a load from storage stops too; the worker goes on', async () => {
  const r = await ui.page.evaluate(async (url) => {
    const { CandlelitEngine } = await import('/pkg/client.js');
    const engine = new CandlelitEngine();
    const attempt = async (u, when) => {
      const aborter = new AbortController();
      try {
        await engine.load({ url: u }, { onProgress: (p) => when(p) && aborter.abort(), signal: aborter.signal });
        return 'loaded';
      } catch (e) {
        return `${e.name}: ${e.message}`;
      }
    };
    // Four downloads of fresh copies (a query string makes another stored entry), each paced
    // by the server and cancelled at 60%: the engine holds 60 MB of each when it stops.
    const downloads = [];
    const memory = [];
    for (let i = 0; i < 4; i++) {
      await fetch('/__test/slow?bytesPerSecond=50000000', { method: 'POST' });
      downloads.push(await attempt(`${url}?copy=${i}`, (p) => p.loaded > 0.6 * p.total));
      memory.push(await engine.memoryBytes());
    }
    const fromStorage = await attempt(url, (p) => p.loaded > 0);
    let early;
    try {
      await engine.load({ url }, { signal: AbortSignal.abort() });
    } catch (e) {
      early = e.name;
    }
    const info = await engine.load({ url });
    const reply = await engine.chat.completions.create({
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is the capital of France?' },
      ],
      temperature: 0,
      max_tokens: 24,
    });
    engine.terminate();
    return { downloads, memory, fromStorage, early, loadedFromStorage: info.fromStorage, reply: reply.choices[0].message.content };
  }, server.base + SMOLLM2);
  console.log(JSON.stringify(r));
  assert.ok(r.downloads.every((o) => o === 'AbortError: The download was cancelled; load again to resume it.'), JSON.stringify(r.downloads));
  // Each cancelled load's bytes are freed before the next one starts: wasm memory stays put
  // instead of growing by ~60 MB per attempt.
  assert.ok(r.memory[3] <= r.memory[0] + 16_000_000, `wasm memory grew: ${r.memory}`);
  assert.equal(r.fromStorage, 'AbortError: Loading the model was cancelled.');
  assert.equal(r.early, 'AbortError');
  assert.equal(r.loadedFromStorage, true);
  assert.match(r.reply, /Paris/);
});
