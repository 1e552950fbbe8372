// The wasm kernels where they actually run, in both builds (SIMD128 and relaxed SIMD):
// against their scalar references on random blocks of every supported type and on the real
// blocks of both test models.

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
  for (const simd of ['relaxed', 'simd128']) {
    test(`${simd} kernels match the scalar references (${model})`, async () => {
      const r = await page.evaluate(async ([url, simd]) => {
        const { CandlelitEngine } = await import('/pkg/client.js');
        const e = new CandlelitEngine({ simd: simd === 'relaxed' ? 'auto' : 'simd128' });
        const info = await e.load({ url });
        const out = await e.kernelSelfTest(7);
        e.terminate();
        return { ...out, simd: info.simd };
      }, [`/models/${model}`, simd]);
      console.log(JSON.stringify(r));
      assert.equal(r.simd, simd, 'the build that ran');
      const types = new Set(r.random.map(([t]) => t));
      const all = ['F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q8_0 (signs moved)', 'Q2K', 'Q3K', 'Q4K', 'Q5K', 'Q6K', 'attention in groups of 4', 'attention in groups of 3', 'attention in groups of 2', 'attention in groups of 1'];
      for (const t of all) assert.ok(types.has(t), `no random test for ${t}`);
      // The relaxed build packs weights at load (quartets of rows for the 32-value types,
      // block by block for the k-quants): its kernels on packed rows must be tested too.
      if (simd === 'relaxed') {
        for (const t of ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4K', 'Q5K', 'Q6K']) {
          assert.ok([...types].some((x) => x.startsWith(`${t} packed`)), `no packed test for ${t}`);
        }
      }
      // The quantized kernels add exact integer sums per block and scale and add them in the
      // scalar references' order, and the attention sums add in the scalar loops' order:
      // equal bit for bit. The 16-bit float kernels keep eight f32 partial sums per row:
      // close, not equal.
      const within = (t, err) => (/^B?F16$/.test(t) ? err < 1e-4 : err === 0);
      for (const [t, err] of r.random) assert.ok(within(t, err), `${t} on random blocks: ${err}`);
      assert.ok(r.model.length >= 7, JSON.stringify(r.model));
      for (const [name, t, err] of r.model) assert.ok(within(t, err), `${name} (${t}): ${err}`);
    });
  }
}
