// The threaded build: used when the page is cross-origin isolated, same greedy text as the
// single-thread build.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { session } from './helpers.mjs';

let s;
let page;

before(async () => {
  s = await session({ greedy: false });
  page = s.ui.page;
  await page.goto(s.server.base + '/bench.html');
  await page.waitForFunction(() => window.benchReady);
});

after(() => s?.close());

test('single-thread and threaded builds give the same greedy text', async () => {
  const prompt = 'The history of the printing press begins';
  const runs = {};
  for (const threads of [1, 2]) {
    for (const model of ['/models/smollm2-135m-instruct-q4_1.gguf', '/models/gemma-3-270m-q4_k_m.gguf']) {
      const r = await page.evaluate((a) => window.bench(a), { model, prompt, nPredict: 24, threads });
      console.log(`${model} threads=${r.threads}: prefill ${(r.promptTokens / r.prefillMs * 1000).toFixed(1)} tok/s, decode ${(r.genTokens / r.decodeMs * 1000).toFixed(1)} tok/s: ${JSON.stringify(r.text)}`);
      assert.equal(r.threads, threads, 'the page is cross-origin isolated, so the threaded build should run');
      assert.equal(r.genTokens, 24);
      runs[`${model}/${threads}`] = r.text;
    }
  }
  for (const model of ['/models/smollm2-135m-instruct-q4_1.gguf', '/models/gemma-3-270m-q4_k_m.gguf']) {
    assert.equal(runs[`${model}/2`], runs[`${model}/1`], `${model}: threaded text differs`);
  }
});
