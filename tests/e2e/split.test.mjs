// Split models (llama.cpp's gguf-split layout, made here by `candlelit split`): the page
// loads every part from the first part's URL with one progress bar, answers as the one-file
// model does, keeps the parts in storage for the next visit, and says what is wrong when a
// part is missing, out of order or pinned.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SMOLLM2, root, session } from './helpers.mjs';

let s;
let server;
let ui;
let files;
let sizes;
const FIRST = '/test-files/smol-00001-of-00003.gguf';

before(async () => {
  files = mkdtempSync(path.join(os.tmpdir(), 'candlelit-split-'));
  const model = path.join(process.env.CANDLELIT_MODELS || path.join(root, 'models'), path.basename(SMOLLM2));
  // Builds the CLI if `cargo test` has not; parts of at most 40 MB (a static host's cap).
  execFileSync('cargo', ['run', '--release', '-q', '--bin', 'candlelit', '--', 'split', '--model', model, '--max-size', '40M', '--out', path.join(files, 'smol')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  sizes = readdirSync(files).sort().map((f) => statSync(path.join(files, f)).size);
  // The same parts in a folder missing the last one.
  const broken = path.join(files, 'broken');
  execFileSync('cargo', ['run', '--release', '-q', '--bin', 'candlelit', '--', 'split', '--model', model, '--max-size', '40M', '--out', path.join(broken, 'smol')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  rmSync(path.join(broken, 'smol-00003-of-00003.gguf'));
  s = await session({ testFiles: files });
  ({ server, ui } = s);
});

after(async () => {
  await s?.close();
  rmSync(files, { recursive: true, force: true });
});

/** Runs `body(engine, args)` in the page with a fresh client; returns its result or error. */
function inPage(body, args) {
  return ui.page.evaluate(
    async ([src, a]) => {
      const { CandlelitEngine } = await import('/pkg/client.js');
      const engine = new CandlelitEngine();
      try {
        return { ok: await new Function('engine', 'args', `return (${src})(engine, args);`)(engine, a) };
      } catch (e) {
        return { error: e.name, message: e.message };
      } finally {
        engine.terminate?.();
      }
    },
    [body.toString(), args],
  );
}

const greedyReply = async (engine, question) => {
  const messages = [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: question },
  ];
  const r = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 32 });
  return r.choices[0].message.content;
};

test('a first part URL loads all three parts and answers as the one-file model does', async () => {
  assert.equal(sizes.length, 3);
  assert.ok(sizes.every((n) => n <= 40_000_000), `parts ${sizes}`);
  // Each part's download paced at 40 MB/s (about a second each), so that parallel downloads
  // show as overlapping requests.
  await server.hook('/__test/slow?bytesPerSecond=40000000&count=3');
  const r = await inPage(
    async (engine, { url, whole, ask }) => {
      const events = [];
      const info = await engine.load({ url }, { onProgress: (p) => events.push(p) });
      const reply = await new Function('return ' + ask)()(engine, 'What is the capital of France?');
      await engine.load({ url: whole });
      const wholeReply = await new Function('return ' + ask)()(engine, 'What is the capital of France?');
      return { info, events: events.map(({ loaded, total, part, parts, phase }) => ({ loaded, total, part, parts, phase })), reply, wholeReply };
    },
    { url: server.base + FIRST, whole: server.base + SMOLLM2, ask: greedyReply.toString() },
  );
  assert.ok(r.ok, JSON.stringify(r));
  const { info, events, reply, wholeReply } = r.ok;
  console.log(`split: ${info.parts} parts, ${(info.loadMs / 1000).toFixed(1)} s, ${events.length} progress events; reply ${JSON.stringify(reply)}`);
  assert.equal(info.parts, 3);
  assert.equal(info.fromStorage, false);
  assert.match(reply, /Paris/);
  assert.equal(reply, wholeReply, 'the split model must answer exactly as the one-file model');
  // One bar over all the parts: the grand total throughout, never going back, ending full.
  const total = sizes.reduce((a, b) => a + b, 0);
  assert.ok(events.every((e) => e.total === total && e.parts === 3), JSON.stringify(events.slice(0, 3)));
  assert.ok(events.every((e, i) => i === 0 || e.loaded >= events[i - 1].loaded), 'progress went backwards');
  assert.deepEqual([...new Set(events.map((e) => e.part))].sort(), [1, 2, 3]);
  assert.equal(events.at(-1).loaded, total);
  const gets = (await server.hook('/__test/log')).filter((q) => q.path.startsWith('/test-files/smol-') && q.method === 'GET');
  assert.deepEqual(gets.map((q) => path.basename(q.path)).sort(), ['smol-00001-of-00003.gguf', 'smol-00002-of-00003.gguf', 'smol-00003-of-00003.gguf']);
  // Parts 2 and 3 download while part 1 does (one GET each, all paced).
  const [first, ...later] = [...gets].sort((a, b) => a.path.localeCompare(b.path));
  console.log(`downloads (ms from the first request): ${gets.map((q) => `${path.basename(q.path)} ${q.start - first.start}–${q.end - first.start}`).join(', ')}`);
  assert.ok(gets.every((q) => q.slow), 'every part was paced');
  assert.ok(later.every((q) => q.start < first.end), 'the later parts start before the first ends');
});

test('the next visit loads every part from storage without the network', async () => {
  await server.hook('/__test/reset');
  const r = await inPage(
    async (engine, { url }) => {
      const info = await engine.load({ url });
      const stored = await engine.listStoredModels();
      return { info, stored };
    },
    { url: server.base + FIRST },
  );
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.ok.info.fromStorage, true);
  assert.equal(r.ok.info.parts, 3);
  const requests = (await server.hook('/__test/log')).filter((q) => q.path.startsWith('/test-files/'));
  assert.deepEqual(requests, [], 'no request for the parts (not even HEAD)');
  // Storage lists the split model as one entry over its three parts.
  const total = sizes.reduce((a, b) => a + b, 0);
  const entries = r.ok.stored.filter((m) => /smol-0000\d-of-00003/.test(m.name));
  assert.equal(entries.length, 1, JSON.stringify(r.ok.stored));
  assert.deepEqual({ parts: entries[0].parts, size: entries[0].size, total: entries[0].total, complete: entries[0].complete }, { parts: 3, size: total, total, complete: true });
  const first = entries[0].name;
  assert.match(first, /-smol-00001-of-00003\.gguf$/);
  // Loading by the first part's stored name brings the other parts too; a later part's alone is refused.
  const byName = await inPage(async (engine, { name }) => (await engine.load({ stored: name })).parts, { name: first });
  assert.deepEqual(byName, { ok: 3 });
  const second = await ui.page.evaluate(async (u) => (await import('/pkg/storage.js')).ModelStore.nameFor(u), server.base + FIRST.replace('00001-of', '00002-of'));
  const wrong = await inPage(async (engine, { name }) => engine.load({ stored: name }), { name: second });
  assert.equal(wrong.error, 'Split', JSON.stringify(wrong));
  assert.match(wrong.message, /part 2 of a split model; load the model from its first part/);
  // Deleting the model deletes every part.
  const left = await inPage(
    async (engine, { name }) => {
      await engine.deleteStoredModel(name);
      const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('candlelit-models');
      const names = [];
      for await (const n of dir.keys()) names.push(n);
      return names.filter((n) => n.includes('smol-0000'));
    },
    { name: first },
  );
  assert.deepEqual(left, { ok: [] });
});

test('parts picked as files load in name order; a set without its first part is refused', async () => {
  const r = await inPage(
    async (engine, { base }) => {
      const blob = async (n) => new File([await (await fetch(`${base}/test-files/smol-0000${n}-of-00003.gguf`)).blob()], `smol-0000${n}-of-00003.gguf`);
      const [a, b, c] = [await blob(1), await blob(2), await blob(3)];
      const info = await engine.load([c, a, b]);
      let refused;
      try {
        await engine.load([c, b]);
      } catch (e) {
        refused = { name: e.name, message: e.message };
      }
      return { parts: info.parts, name: info.name, refused };
    },
    { base: server.base },
  );
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.ok.parts, 3);
  assert.equal(r.ok.name, 'smol-00001-of-00003.gguf');
  assert.equal(r.ok.refused?.name, 'Split', JSON.stringify(r.ok.refused));
  assert.match(r.ok.refused.message, /part 2 of a split model/);
});

test('a split model pinned part by part loads; a changed part is refused by number and fetched again', async () => {
  const hex = [1, 2, 3].map((i) => createHash('sha256').update(readFileSync(path.join(files, `smol-0000${i}-of-00003.gguf`))).digest('hex'));
  const load = (integrity) =>
    inPage(async (engine, { url, integrity }) => {
      const info = await engine.load({ url }, { integrity });
      return { verified: info.verified, hashed: info.hashed, parts: info.parts };
    }, { url: server.base + FIRST, integrity });
  const first = await load(hex);
  assert.deepEqual(first.ok, { verified: true, hashed: true, parts: 3 }, JSON.stringify(first));
  // Each stored part now records its hash: the same pins read them without hashing again.
  const again = await load(hex);
  assert.deepEqual(again.ok, { verified: true, hashed: false, parts: 3 }, JSON.stringify(again));
  // A pin that part 2 does not match (the CDN changed it, say): refused by number.
  const wrong = [hex[0], hex[2], hex[2]];
  await server.hook('/__test/reset');
  const refused = await load(wrong);
  console.log(`changed part: ${refused.message}`);
  assert.equal(refused.error, 'IntegrityError', JSON.stringify(refused));
  assert.match(refused.message, new RegExp(`^Part 2 of 3 of the model's SHA-256 is ${hex[1]}, not the ${hex[2]}.*stored copy was deleted`));
  // Part 2 was hashed from storage (its recorded hash is not the pinned one): nothing fetched.
  const gets = async () => (await server.hook('/__test/log')).filter((q) => q.path.startsWith('/test-files/smol-') && q.method === 'GET').map((q) => path.basename(q.path));
  assert.deepEqual(await gets(), []);
  // Its stored copy is gone: the right pins fetch part 2 alone again.
  const fixed = await load(hex);
  assert.deepEqual(fixed.ok, { verified: true, hashed: true, parts: 3 }, JSON.stringify(fixed));
  assert.deepEqual(await gets(), ['smol-00002-of-00003.gguf']);
});

test('a missing part or a pinned split model gives a clear error, not a hang', async () => {
  const missing = await inPage(async (engine, { url }) => engine.load({ url }), { url: `${server.base}/test-files/broken/smol-00001-of-00003.gguf` });
  console.log(`missing part: ${missing.message}`);
  assert.equal(missing.error, 'NetworkError', JSON.stringify(missing));
  assert.match(missing.message, /smol-00003-of-00003\.gguf: HTTP 404/);
  const pinned = await inPage(async (engine, { url }) => engine.load({ url }, { integrity: 'sha256-' + 'A'.repeat(43) + '=' }), { url: server.base + FIRST });
  assert.equal(pinned.error, 'InvalidRequest', JSON.stringify(pinned));
  assert.match(pinned.message, /gives 1 SHA-256 hash, but this model comes in 3 parts; give one per part/);
  // The page still works afterwards.
  const ok = await inPage(async (engine, { url }) => (await engine.load({ url })).parts, { url: server.base + FIRST });
  assert.deepEqual(ok, { ok: 3 });
});
