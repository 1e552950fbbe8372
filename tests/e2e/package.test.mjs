// The npm package as a JS developer gets it: `npm pack` of pkg/, unpacked into an app's
// node_modules, type-checked with `tsc --strict` against a consumer's code, and used by a
// plain page (an import map, no bundler) that loads a model and streams a reply.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, createReadStream, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SMOLLM2, launch, root } from './helpers.mjs';

let dir;
let app;
let files;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'candlelit-package-'));
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: path.join(root, 'pkg'), encoding: 'utf8' });
  const [{ filename, files: packed }] = JSON.parse(out);
  files = packed.map((f) => f.path);
  app = path.join(dir, 'app');
  const installed = path.join(app, 'node_modules', 'candlelit');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', path.join(dir, filename), '-C', installed, '--strip-components=1']);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('the package holds what its modules import, and nothing of the source tree', () => {
  for (const f of ['client.js', 'worker.js', 'widget.js', 'split.js', 'index.d.ts', 'wasm/candlelit_bg.wasm', 'wasm-mt/candlelit_bg.wasm']) {
    assert.ok(files.includes(f), `${f} missing from the package: ${files.join(' ')}`);
  }
  // Every relative import of every packed module resolves to a packed file.
  const missing = [];
  for (const f of files.filter((f) => f.endsWith('.js') && !f.startsWith('vendor/') && !/^wasm/.test(f))) {
    const src = execFileSync('cat', [path.join(app, 'node_modules', 'candlelit', f)], { encoding: 'utf8' });
    for (const [, spec] of src.matchAll(/(?:import|from)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), spec));
      if (!files.includes(target)) missing.push(`${f} → ${spec}`);
    }
  }
  assert.deepEqual(missing, []);
  assert.ok(!files.some((f) => f.endsWith('.rs') || f.startsWith('tests/') || f.includes('node_modules')), files.join(' '));
});

test("a consumer's TypeScript checks against the package's types (tsc --strict)", () => {
  copyFileSync(path.join(root, 'tests/e2e/package/consumer.ts'), path.join(app, 'consumer.ts'));
  const tsc = path.join(root, 'node_modules/.bin/tsc');
  const args = ['--strict', '--noEmit', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', '--lib', 'es2022,dom,dom.iterable', 'consumer.ts'];
  try {
    execFileSync(tsc, args, { cwd: app, encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc: ${e.stdout}${e.stderr}`);
  }
});

test('a page using the installed package (import map, no bundler) streams a reply', async () => {
  const model = path.join(process.env.CANDLELIT_MODELS || path.join(root, 'models'), path.basename(SMOLLM2));
  writeFileSync(
    path.join(app, 'index.html'),
    `<!doctype html><meta charset="utf-8"><title>app</title>
<script type="importmap">{ "imports": { "candlelit": "/node_modules/candlelit/client.js" } }</script>
<script type="module">
  import { CandlelitEngine } from 'candlelit';
  window.run = async () => {
    const engine = await CandlelitEngine.create();
    const info = await engine.load('/model.gguf');
    const stream = await engine.chat.completions.create({
      messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is the capital of France?' }],
      stream: true, temperature: 0, max_tokens: 24,
    });
    let text = '';
    let chunks = 0;
    for await (const c of stream) { text += c.choices[0]?.delta?.content ?? ''; chunks++; }
    return { text, chunks, simd: info.simd, architecture: info.architecture };
  };
</script>`,
  );
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
  const server = createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const file = p === '/model.gguf' ? model : path.join(app, path.normalize(p === '/' ? '/index.html' : p));
    if (!file.startsWith(app) && file !== model) return res.writeHead(403).end();
    let size;
    try {
      size = statSync(file).size;
    } catch {
      return res.writeHead(404).end();
    }
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] ?? 'application/octet-stream', 'Content-Length': size });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const browser = await launch();
  try {
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const r = await page.evaluate(() => window.run());
    console.log(`installed package: ${JSON.stringify(r)}`);
    assert.match(r.text, /Paris/);
    assert.ok(r.chunks > 3, 'the reply streams in chunks');
    assert.equal(r.architecture, 'llama');
  } finally {
    await browser.close();
    server.close();
  }
  assert.ok(readdirSync(app).includes('node_modules'));
});
