// Shared set-up for the browser tests: the dev server (with test hooks) on a free port and
// a real headless Chromium driven by playwright-core.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SMOLLM2 = '/models/smollm2-135m-instruct-q4_1.gguf';

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** `cors`: serve as a CDN would for other sites (no isolation headers, CORS allowed). */
export async function startServer({ testFiles, cors = false } = {}) {
  const port = await freePort();
  const proc = spawn(process.execPath, [path.join(root, 'scripts/serve.mjs')], {
    env: { ...process.env, PORT: String(port), CANDLELIT_TEST_HOOKS: '1', ...(cors ? { CANDLELIT_CORS: '1' } : {}), ...(testFiles ? { CANDLELIT_TEST_FILES: testFiles } : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => String(d).includes('serving') && resolve());
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    hook: async (p) => (await fetch(base + p, { method: p.startsWith('/__test/log') ? 'GET' : 'POST' })).json(),
    stop: () => proc.kill(),
  };
}

export async function launch({ webgpu = false } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'candlelit-chromium-'));
  const args = [
    '--no-sandbox',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    ...(webgpu ? ['--enable-unsafe-webgpu'] : []),
  ];
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
    viewport: { width: 1000, height: 800 },
  });
  const logs = [];
  context.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  context.on('weberror', (e) => logs.push(`pageerror: ${e.error().message}`));
  return {
    context,
    logs,
    close: async () => {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Opens the chat page and returns handles to its controls, found by accessible name. */
export async function openChat(context, base) {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(base + '/');
  return {
    page,
    model: page.getByLabel('Model', { exact: true }),
    load: page.getByRole('button', { name: 'Load' }),
    send: page.getByRole('button', { name: 'Send' }),
    stop: page.getByRole('button', { name: 'Stop' }),
    newChat: page.getByRole('button', { name: 'New chat' }),
    message: page.getByRole('textbox', { name: 'Message' }),
    log: page.getByRole('log'),
    progress: page.getByRole('progressbar'),
    error: page.getByRole('alert'),
    status: page.locator('#status'),
  };
}

/** A server, a browser and the chat page, for one test file; `close()` ends all three. */
export async function session({ greedy = true, testFiles, webgpu = false } = {}) {
  const server = await startServer({ testFiles });
  const browser = await launch({ webgpu });
  const ui = await openChat(browser.context, server.base);
  if (greedy) await useGreedy(ui);
  return {
    server,
    browser,
    ui,
    close: async () => {
      if (process.env.E2E_LOGS) console.log(browser.logs.join('\n'));
      await browser.close();
      server.stop();
    },
  };
}

/** Greedy decoding through the Settings panel, so replies are reproducible. */
export async function useGreedy(ui) {
  await ui.page.getByText('Settings', { exact: true }).click();
  await ui.page.getByLabel('Temperature').fill('0');
  await ui.page.getByLabel('Temperature').dispatchEvent('change');
  await ui.page.getByText('Settings', { exact: true }).click();
}

/** Clicks Load and waits until the model is ready (or an error shows). */
export async function loadModel(ui, value = SMOLLM2) {
  await ui.model.selectOption(value);
  await ui.load.click();
  await ui.page.waitForFunction(() => /ready|No model loaded/.test(document.getElementById('status').textContent), null, { timeout: 240_000 });
}

/** Sends a message; resolves with the assistant reply's text once it is complete. */
export async function ask(ui, text, { timeout = 120_000 } = {}) {
  const before = await ui.page.locator('.msg.assistant').count();
  await ui.message.fill(text);
  await ui.message.press('Enter');
  await ui.page.waitForFunction((n) => document.querySelectorAll('.msg.assistant').length > n, before);
  await ui.page.waitForFunction(() => document.getElementById('stop').disabled, null, { timeout });
  return ui.page.locator('.msg.assistant .body').nth(before).innerText();
}
