#!/usr/bin/env node
// Browser benchmark: candlelit vs wllama (llama.cpp in wasm) on the test models, in one
// headless Chromium session, 1 and 2 threads, interleaved runs, medians. candlelit runs as
// the worker picks it (the relaxed-SIMD build in Chromium) and on its SIMD128 build, so the
// table also shows what relaxed SIMD buys. Prints ratios; asserts nothing (these machines
// are shared and noisy).
//
//   node scripts/bench.mjs [--runs 3] [--n-predict 128] [--models a.gguf,b.gguf]
//
// Both pages follow the same contract (www/bench.html, www/bench-wllama.html):
//   window.bench({ model, prompt, nPredict, threads })
//     -> { loadMs, promptTokens, prefillMs, genTokens, decodeMs, text, threads, memoryBytes }
// (candlelit's also takes `simd` and `backend`).

import { launch, startServer } from '../tests/e2e/helpers.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const runs = Number(arg('runs', 3));
const nPredict = Number(arg('n-predict', 128));
// The WebGPU rows: fewer tokens and runs, since headless Chromium's adapter is SwiftShader
// (software: its speed says nothing about a real GPU's, only that the path works end to end).
const gpuRuns = Number(arg('webgpu-runs', 1));
const gpuPredict = Number(arg('webgpu-n-predict', 32));
const models = arg('models', 'smollm2-135m-instruct-q4_1.gguf,gemma-3-270m-q4_k_m.gguf').split(',');
// About 145 tokens with either tokenizer: the prompt length of the reference table.
const prompt =
  'In the early morning light, the old lighthouse keeper climbed the spiral stairs one more time. ' +
  'He had done this every day for forty years, through storms and calm seas, through long winters ' +
  'and short summers. The lamp needed oil, the glass needed cleaning, and the log book needed its ' +
  'daily entry. Today, however, something was different. Far out on the horizon, a ship he did not ' +
  'recognise was sailing straight toward the rocks, its lights dark and its sails torn. He reached ' +
  'for the brass telescope, wiped the lens with his sleeve, and looked again. The wind was rising ' +
  'and the gulls had gone quiet, as they always did before trouble. Then he';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startServer();
const browser = await launch({ webgpu: true });
const pages = {};
for (const [engine, path] of [['candlelit', '/bench.html'], ['wllama', '/bench-wllama.html']]) {
  pages[engine] = await browser.context.newPage();
  await pages[engine].goto(server.base + path);
  await pages[engine].waitForFunction(() => window.benchReady);
}

// What runs, interleaved: name, page, extra bench() arguments.
const runners = [
  ['candlelit', 'candlelit', {}],
  ['candlelit SIMD128', 'candlelit', { simd: 'simd128' }],
  ['wllama', 'wllama', {}],
];

const rows = [];
try {
  for (const model of models) {
    const url = `/models/${model}`;
    // First loads download into each engine's browser storage; later loads come from there.
    for (const engine of Object.keys(pages)) await pages[engine].evaluate((a) => window.bench(a), { model: url, prompt: 'Hi', nPredict: 2, threads: 1 });
    for (const threads of [1, 2]) {
      const results = Object.fromEntries(runners.map(([name]) => [name, []]));
      for (let i = 0; i < runs; i++) {
        for (const [engine, page, extra] of runners) {
          const r = await pages[page].evaluate((a) => window.bench(a), { model: url, prompt, nPredict, threads, ...extra });
          results[engine].push(r);
          process.stderr.write(`${model} ${engine} t=${threads} run ${i + 1}: prefill ${((r.promptTokens / r.prefillMs) * 1000).toFixed(1)} decode ${((r.genTokens / r.decodeMs) * 1000).toFixed(1)} tok/s\n`);
        }
      }
      if (threads === 1 && gpuRuns > 0) {
        results['candlelit webgpu'] = [];
        for (let i = 0; i < gpuRuns; i++) {
          const r = await pages.candlelit.evaluate((a) => window.bench(a), { model: url, prompt, nPredict: gpuPredict, threads: 1, backend: 'webgpu' });
          results['candlelit webgpu'].push(r);
          process.stderr.write(`${model} webgpu (${r.adapter}) run ${i + 1}: prefill ${((r.promptTokens / r.prefillMs) * 1000).toFixed(1)} decode ${((r.genTokens / r.decodeMs) * 1000).toFixed(1)} tok/s\n`);
        }
      }
      for (const engine of Object.keys(results)) {
        const rs = results[engine];
        rows.push({
          model,
          engine:
            engine === 'candlelit webgpu'
              ? `candlelit WebGPU (${rs[0].adapter})`
              : engine === 'candlelit'
                ? `candlelit (${rs[0].simd === 'relaxed' ? 'relaxed SIMD' : 'SIMD128'})`
                : engine,
          threads,
          loadMs: median(rs.map((r) => r.loadMs)),
          prefill: median(rs.map((r) => (r.promptTokens / r.prefillMs) * 1000)),
          decode: median(rs.map((r) => (r.genTokens / r.decodeMs) * 1000)),
          promptTokens: rs[0].promptTokens,
          genTokens: rs[0].genTokens,
          // candlelit: wasm memory after the run (it only grows, so this is the peak);
          // wllama does not expose its worker's memory.
          memoryMB: rs[0].memoryBytes ? Math.max(...rs.map((r) => r.memoryBytes)) / 1e6 : null,
        });
      }
    }
  }
} finally {
  await browser.close();
  server.stop();
}

const fmt = (x, d = 1) => (x == null ? '—' : x.toFixed(d));
console.log(`\nChromium, greedy, ${rows[0]?.promptTokens ?? '?'}-token prompt, ${nPredict} generated tokens, median of ${runs} interleaved runs\n`);
console.log('| model | threads | engine | load from storage ms | prefill tok/s | decode tok/s | prefill × wllama | decode × wllama | wasm memory MB |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const peer = rows.find((p) => p.model === r.model && p.threads === r.threads && p.engine === 'wllama');
  const ratio = (a, b) => (r.engine === 'wllama' ? '1.00' : fmt(a / b, 2));
  console.log(`| ${r.model} | ${r.threads} | ${r.engine} | ${fmt(r.loadMs, 0)} | ${fmt(r.prefill)} | ${fmt(r.decode)} | ${ratio(r.prefill, peer.prefill)} | ${ratio(r.decode, peer.decode)} | ${fmt(r.memoryMB, 0)} |`);
}
