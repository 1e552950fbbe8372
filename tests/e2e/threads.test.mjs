// The four builds (single-thread and threaded, each with SIMD128 or relaxed SIMD): the threaded
// one runs when the page is cross-origin isolated, the relaxed one where the browser has
// relaxed SIMD (Chromium does), and all four give the same greedy text. Their kernels equal the
// scalar references bit for bit, which the native CLI runs for SmolLM2's block types, so it
// gives that text too. (Natively Gemma 3 runs candle's AVX kernels for Q8_0 and the k-quants,
// and glibc's exp/tanh/sin/cos where the browser has Rust's libm: its text parts at token 24.)

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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

/** The native CLI's greedy text (token by token, from `generate --json`). */
function nativeText(model, prompt, n) {
  const bin = 'target/release/candlelit';
  if (!existsSync(bin)) execFileSync('cargo', ['build', '--release', '--bin', 'candlelit'], { stdio: 'inherit' });
  const out = execFileSync(bin, ['generate', '--model', model, '--prompt', prompt, '--max-tokens', String(n), '--temperature', '0', '--json'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.startsWith('{"id"')).map((l) => JSON.parse(l).text).join('');
}

test('single-thread, threaded, SIMD128 and relaxed-SIMD builds give the same greedy text (the native CLI\'s for SmolLM2)', async () => {
  const prompt = 'The history of the printing press begins';
  const models = ['/models/smollm2-135m-instruct-q4_1.gguf', '/models/gemma-3-270m-q4_k_m.gguf'];
  const runs = {};
  for (const simd of ['auto', 'simd128']) {
    for (const threads of [1, 2]) {
      for (const model of models) {
        const r = await page.evaluate((a) => window.bench(a), { model, prompt, nPredict: 24, threads, simd });
        console.log(`${model} threads=${r.threads} simd=${r.simd}: prefill ${(r.promptTokens / r.prefillMs * 1000).toFixed(1)} tok/s, decode ${(r.genTokens / r.decodeMs * 1000).toFixed(1)} tok/s: ${JSON.stringify(r.text)}`);
        assert.equal(r.threads, threads, 'the page is cross-origin isolated, so the threaded build should run');
        assert.equal(r.simd, simd === 'auto' ? 'relaxed' : 'simd128', 'Chromium runs relaxed SIMD, so auto should pick that build');
        assert.equal(r.genTokens, 24);
        runs[`${model}/${threads}/${r.simd}`] = r.text;
      }
    }
  }
  for (const model of models) {
    const base = runs[`${model}/1/simd128`];
    for (const k of ['2/simd128', '1/relaxed', '2/relaxed']) assert.equal(runs[`${model}/${k}`], base, `${model}: ${k} text differs`);
  }
  const smol = models[0];
  const native = nativeText(smol.slice(1), prompt, 24);
  console.log(`${smol} native: ${JSON.stringify(native)}`);
  assert.equal(runs[`${smol}/1/relaxed`], native, 'the native CLI gives another text');
});
