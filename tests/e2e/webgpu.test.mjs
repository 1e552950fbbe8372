// The WebGPU backend in a real headless Chromium (SwiftShader's software adapter): the same
// greedy reply and task results as the CPU path, `auto` choosing and explaining, and the fallback when the
// browser has no WebGPU at all.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ask, loadModel, session } from './helpers.mjs';

// The Tasks panel's extraction and sentiment, as the page shows them.
async function tasks(ui) {
  const { page } = ui;
  await page.evaluate(() => {
    document.getElementById('tasks').open = true;
  });
  const text = page.getByRole('textbox', { name: 'Task text' });
  const finished = (selector) =>
    page.waitForFunction((selector) => document.querySelector(selector).textContent.trim().length > 0 && !/…/.test(document.querySelector(selector).textContent) || document.getElementById('error').textContent.length > 0, selector, { timeout: 600_000 });
  await text.fill('Maria Lopez, 34, lives in Madrid.');
  await page.getByRole('button', { name: 'Extract' }).click();
  await finished('#task-output');
  assert.equal(await page.locator('#error').textContent(), '');
  const extract = JSON.parse(await page.locator('#task-output').textContent());
  await text.fill('The battery died after two days and the seller ignored my emails.');
  // Calibrated: SmolLM2-135M's prior leans to Neutral (two scoring passes per request).
  await page.locator('#task-calibrate').check();
  await page.getByRole('button', { name: 'Sentiment' }).click();
  await finished('#task-result');
  assert.equal(await page.locator('#error').textContent(), '');
  const sentiment = (await page.locator('#task-result li').allInnerTexts()).map((r) => {
    const [label, pct] = r.split(/\s+/).filter(Boolean);
    return { label, p: parseFloat(pct) };
  });
  return { extract, sentiment };
}

async function loadOn(ui, backend) {
  await ui.page.getByLabel('Backend').selectOption(backend);
  await loadModel(ui);
  return { text: await ui.status.textContent(), backend: await ui.status.getAttribute('data-backend') };
}

test('WebGPU gives the CPU path\'s greedy reply and task results; auto skips a software adapter and says so', { timeout: 900_000 }, async () => {
  const s = await session({ webgpu: true });
  try {
    const { ui } = s;
    const probe = await ui.page.evaluate(async () => {
      const a = await navigator.gpu?.requestAdapter();
      return a ? { ok: true, info: { vendor: a.info?.vendor, architecture: a.info?.architecture } } : { ok: false };
    });
    assert.ok(probe.ok, 'headless Chromium with --enable-unsafe-webgpu offers an adapter');

    // WebGPU first, in a fresh worker: the weights stream into GPU buffers, so wasm memory
    // (which only grows) stays well below the 98 MB file.
    const question = 'What is the capital of France?';
    const gpu = await loadOn(ui, 'webgpu');
    assert.equal(gpu.backend, 'webgpu', gpu.text);
    assert.match(gpu.text, /Backend: WebGPU \(.+ of weights on the GPU/);
    const wasmMB = Number(gpu.text.match(/engine memory ([\d.]+) MB/)[1]);
    const t0 = Date.now();
    const gpuReply = await ask(ui, question, { timeout: 600_000 });
    const gpuSeconds = (Date.now() - t0) / 1000;

    await ui.newChat.click();
    const cpu = await loadOn(ui, 'cpu');
    assert.equal(cpu.backend, 'cpu');
    const cpuMB = Number(cpu.text.match(/engine memory ([\d.]+) MB/)[1]);
    const cpuReply = await ask(ui, question);
    console.log(`CPU: ${JSON.stringify(cpuReply)} (wasm memory ${cpuMB} MB)\nWebGPU (${gpuSeconds.toFixed(1)} s): ${JSON.stringify(gpuReply)} (wasm memory ${wasmMB} MB)`);
    assert.match(gpuReply, /Paris/);
    assert.equal(gpuReply, cpuReply, 'the WebGPU reply differs from the CPU one');
    assert.ok(wasmMB < 30, `wasm memory after a WebGPU load: ${wasmMB} MB`);

    const auto = await loadOn(ui, 'auto');
    assert.equal(auto.backend, 'cpu', auto.text);
    assert.match(auto.text, /software WebGPU adapter/);

    await ui.newChat.click();
    await loadOn(ui, 'webgpu');
    assert.match(await ask(ui, question, { timeout: 600_000 }), /Paris/);
    // A second turn on the GPU reuses its KV cache and still answers.
    const second = await ask(ui, 'And of Italy?', { timeout: 600_000 });
    assert.match(second, /Rome/);

    // The recipes run on the GPU too, each step awaiting its logits (compared with the CPU's
    // below, after the fallback).
    const t1 = Date.now();
    const onGpu = await tasks(ui);
    console.log(`tasks on WebGPU (${((Date.now() - t1) / 1000).toFixed(1)} s): ${JSON.stringify(onGpu)}`);
    assert.equal(onGpu.extract.city, 'Madrid');

    // The GPU device is lost mid-chat (as after a driver reset): the error is shown and the
    // page carries on with the CPU path.
    assert.equal(await ui.page.evaluate(() => window.candlelitEngine._debugCall({ type: 'fault-inject-gpu-loss' })), true);
    await ask(ui, 'What is the capital of Spain?', { timeout: 600_000 });
    await ui.page.waitForFunction(() => document.getElementById('status').dataset.backend === 'cpu' && /ready/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    const lost = await ui.status.textContent();
    console.log(`after the device loss: ${lost}`);
    assert.match(lost, /The GPU failed \(.+\), so the model was reloaded on the CPU\. .*Backend: CPU/);
    await ui.newChat.click();
    assert.match(await ask(ui, question), /Paris/);

    // A GPU failure during a task moves the page to the CPU as well.
    assert.equal((await loadOn(ui, 'webgpu')).backend, 'webgpu');
    assert.equal(await ui.page.evaluate(() => window.candlelitEngine._debugCall({ type: 'fault-inject-gpu-loss' })), true);
    await ui.page.getByRole('button', { name: 'Extract' }).click();
    await ui.page.waitForFunction(() => document.getElementById('status').dataset.backend === 'cpu' && /ready/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    assert.match(await ui.status.textContent(), /The GPU failed \(.+\), so the model was reloaded on the CPU\./);

    const onCpu = await tasks(ui);
    console.log(`tasks on the CPU: ${JSON.stringify(onCpu)}`);
    assert.deepEqual(onGpu.extract, onCpu.extract);
    assert.deepEqual(onGpu.sentiment.map((r) => r.label), ['Positive', 'Negative', 'Neutral']);
    assert.deepEqual(onCpu.sentiment.map((r) => r.label), ['Positive', 'Negative', 'Neutral']);
    // Within the backends' noise floor (tests/gpu.rs: a mean logit difference of about 0.2).
    onGpu.sentiment.forEach((r, i) => assert.ok(Math.abs(r.p - onCpu.sentiment[i].p) < 5, `${r.label}: ${r.p}% on WebGPU, ${onCpu.sentiment[i].p}% on the CPU`));
    const top = (rows) => rows.reduce((a, b) => (b.p > a.p ? b : a)).label;
    assert.equal(top(onGpu.sentiment), 'Negative');
    assert.equal(top(onCpu.sentiment), 'Negative');
  } finally {
    await s.close();
  }
});

test('without WebGPU, auto runs on the CPU and webgpu fails with the reason', { timeout: 600_000 }, async () => {
  const s = await session({ webgpu: false });
  try {
    const { ui } = s;
    const auto = await loadOn(ui, 'auto');
    assert.equal(auto.backend, 'cpu', auto.text);
    assert.match(auto.text, /auto: (this browser has no WebGPU|no WebGPU adapter)/);
    assert.match(await ask(ui, 'What is the capital of France?'), /Paris/);

    await ui.page.getByLabel('Backend').selectOption('webgpu');
    await loadModel(ui);
    assert.match(await ui.error.textContent(), /WebGPU is unavailable/);
  } finally {
    await s.close();
  }
});

test('the WebGPU matrix kernel choice: thread-per-row on a software adapter; the subgroup kernel gives the CPU\'s text where the engine can use subgroups', { timeout: 900_000 }, async () => {
  const s = await session({ webgpu: true, greedy: false });
  try {
    const page = s.ui.page;
    const adapterHasSubgroups = await page.evaluate(async () => (await navigator.gpu.requestAdapter()).features.has('subgroups'));
    const run = (options) =>
      page.evaluate(async (options) => {
        const { CandlelitEngine } = await import('/pkg/client.js');
        const e = new CandlelitEngine({ threads: 1 });
        try {
          const info = await e.load({ url: '/models/smollm2-135m-instruct-q4_1.gguf' }, options);
          const out = await e.chat.completions.create({
            messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is the capital of France?' }],
            temperature: 0,
            max_tokens: 12,
          });
          return { text: out.choices[0].message.content, gpuMatmul: info.gpuMatmul };
        } catch (err) {
          return { error: err.message };
        } finally {
          e.terminate();
        }
      }, options);
    const cpu = await run({ backend: 'cpu' });
    // SwiftShader is a software adapter: left to itself it keeps the thread-per-row kernel.
    const auto = await run({ backend: 'webgpu' });
    assert.equal(auto.gpuMatmul, 'thread');
    assert.match(cpu.text, /Paris/);
    assert.equal(auto.text, cpu.text);
    const subgroup = await run({ backend: 'webgpu', gpuMatmul: 'subgroup' });
    console.log(`adapter subgroups: ${adapterHasSubgroups}; CPU ${JSON.stringify(cpu.text)}; thread kernel ${JSON.stringify(auto.text)}; subgroup kernel ${JSON.stringify(subgroup)}`);
    if (subgroup.error) {
      // wgpu 30 cannot request subgroups from a browser: the refusal says why (the kernel is
      // tested natively on lavapipe, tests/gpu.rs).
      assert.match(subgroup.error, adapterHasSubgroups ? /cannot request them in a browser/ : /has no subgroups/);
    } else {
      assert.equal(subgroup.gpuMatmul, 'subgroup');
      assert.equal(subgroup.text, cpu.text);
    }
  } finally {
    await s.close();
  }
});
