// The wasm SIMD128 kernels, where they actually run: against their scalar references on
// random blocks of every supported type and on the real blocks of both test models.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { session } from './helpers.mjs';

let s;
let page;

before(async () => {
  s = await session({ greedy: false });
  page = s.ui.page;
});

after(() => s?.close());

for (const model of ['smollm2-135m-instruct-q4_1.gguf', 'gemma-3-270m-q4_k_m.gguf']) {
  test(`SIMD kernels match the scalar references (${model})`, async () => {
    const r = await page.evaluate(async (url) => {
      const { CandlelitEngine } = await import('/pkg/client.js');
      const e = new CandlelitEngine();
      await e.load({ url });
      const out = await e.kernelSelfTest(7);
      e.terminate();
      return out;
    }, `/models/${model}`);
    console.log(JSON.stringify(r));
    const types = new Set(r.random.map(([t]) => t));
    for (const t of ['F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2K', 'Q3K', 'Q4K', 'Q5K', 'Q6K']) assert.ok(types.has(t), `no random test for ${t}`);
    for (const [t, err] of r.random) assert.ok(err < 1e-4, `${t} on random blocks: ${err}`);
    assert.ok(r.model.length >= 7, JSON.stringify(r.model));
    for (const [name, t, err] of r.model) assert.ok(err < 1e-4, `${name} (${t}): ${err}`);
  });
}
