#!/usr/bin/env node
// Development server for the chat page: static files with the COOP/COEP headers that
// threaded wasm needs, HTTP Range requests (resumable model downloads) and ETags.
//
//   /          www/      the app
//   /pkg/      pkg/      the client package, worker and generated wasm
//   /models/   models/   local GGUF files (CANDLELIT_MODELS overrides)
//
// With CANDLELIT_TEST_HOOKS=1 the browser tests can also ask it to cut the next model
// download after N bytes (POST /__test/cut?after=N), pace the next one at N bytes a second
// (POST /__test/slow?bytesPerSecond=N, and the next K with &count=K), read the request log
// (GET /__test/log: path, method, range, status, start and end times)
// and fetch files from CANDLELIT_TEST_FILES under /test-files/.
// With CANDLELIT_CORS=1 it serves as another site's CDN would (see baseHeaders).

import { createServer } from 'node:http';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || '127.0.0.1';
const hooks = process.env.CANDLELIT_TEST_HOOKS === '1';
const mounts = [
  ['/pkg/', path.join(root, 'pkg')],
  ['/models/', process.env.CANDLELIT_MODELS || path.join(root, 'models')],
  ...(hooks && process.env.CANDLELIT_TEST_FILES ? [['/test-files/', process.env.CANDLELIT_TEST_FILES]] : []),
  ['/', path.join(root, 'www')],
];
const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.webmanifest': 'application/manifest+json',
};

const log = [];
let cutAfter = null;
let slowBps = null;
let slowCount = 0;

function resolve(urlPath) {
  for (const [prefix, dir] of mounts) {
    if (!urlPath.startsWith(prefix)) continue;
    const rel = decodeURIComponent(urlPath.slice(prefix.length)) || 'index.html';
    const file = path.resolve(dir, rel);
    if (file !== dir && !file.startsWith(dir + path.sep)) return null; // no escaping the mount
    return file;
  }
  return null;
}

// CANDLELIT_CORS=1 serves like a CDN for other sites (the widget's tests): any origin may
// fetch the package and the models, Range and If-Range allowed, the download's headers visible.
const cors = process.env.CANDLELIT_CORS === '1';

function baseHeaders(extra = {}) {
  const isolation = cors
    ? {
        'Access-Control-Allow-Origin': '*',
        'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified',
        'Cross-Origin-Resource-Policy': 'cross-origin',
      }
    : {
        'Cross-Origin-Opener-Policy': 'same-origin',
        'Cross-Origin-Embedder-Policy': 'require-corp',
        'Cross-Origin-Resource-Policy': 'same-origin',
      };
  return { ...isolation, 'Cache-Control': 'no-cache', ...extra };
}

async function handle(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (hooks && url.pathname.startsWith('/__test/')) {
    if (url.pathname === '/__test/cut') cutAfter = Number(url.searchParams.get('after'));
    if (url.pathname === '/__test/slow') {
      slowBps = Number(url.searchParams.get('bytesPerSecond'));
      slowCount = Number(url.searchParams.get('count') ?? 1);
    }
    if (url.pathname === '/__test/reset') log.length = 0;
    res.writeHead(200, baseHeaders({ 'Content-Type': 'application/json' }));
    res.end(JSON.stringify(url.pathname === '/__test/log' ? log : { ok: true }));
    return;
  }
  if (cors && req.method === 'OPTIONS') {
    res.writeHead(204, baseHeaders({
      'Access-Control-Allow-Methods': 'GET, HEAD',
      'Access-Control-Allow-Headers': 'Range, If-Range',
      'Access-Control-Max-Age': '600',
    }));
    res.end();
    return;
  }
  const file = resolve(url.pathname);
  let stat = file && (await fs.stat(file).catch(() => null));
  if (stat?.isDirectory()) {
    stat = null;
  }
  // When the request came and its response ended (ms): parallel downloads overlap.
  const entry = { path: url.pathname, method: req.method, range: req.headers.range ?? null, status: 404, start: Date.now() };
  log.push(entry);
  res.on('close', () => (entry.end = Date.now()));
  if (!stat) {
    res.writeHead(404, baseHeaders({ 'Content-Type': 'text/plain' }));
    res.end('not found');
    return;
  }
  const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
  const headers = baseHeaders({
    'Content-Type': types[path.extname(file)] || 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: etag,
    'Last-Modified': stat.mtime.toUTCString(),
  });
  let start = 0;
  let end = stat.size - 1;
  let status = 200;
  const range = req.headers.range;
  const ifRange = req.headers['if-range'];
  const m = range && /^bytes=(\d*)-(\d*)$/.exec(range);
  if (m && (!ifRange || ifRange === etag || ifRange === headers['Last-Modified'])) {
    start = m[1] === '' ? Math.max(0, stat.size - Number(m[2])) : Number(m[1]);
    end = m[1] !== '' && m[2] !== '' ? Math.min(Number(m[2]), stat.size - 1) : stat.size - 1;
    if (start > end || start >= stat.size) {
      entry.status = 416;
      res.writeHead(416, baseHeaders({ 'Content-Range': `bytes */${stat.size}` }));
      res.end();
      return;
    }
    status = 206;
    headers['Content-Range'] = `bytes ${start}-${end}/${stat.size}`;
  }
  headers['Content-Length'] = String(end - start + 1);
  entry.status = status;
  res.writeHead(status, headers);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = createReadStream(file, { start, end });
  const cut = url.pathname.endsWith('.gguf') ? cutAfter : null;
  if (cut !== null) {
    cutAfter = null;
    entry.cut = cut;
    let sent = 0;
    stream.on('data', (chunk) => {
      if (sent + chunk.length >= cut) {
        res.write(chunk.subarray(0, Math.max(0, cut - sent)));
        stream.destroy();
        // Close the connection mid-body, as a dropped network would.
        res.socket?.destroy();
        return;
      }
      sent += chunk.length;
      if (!res.write(chunk)) {
        stream.pause();
        res.once('drain', () => stream.resume());
      }
    });
    stream.on('end', () => res.end());
    return;
  }
  const slow = url.pathname.endsWith('.gguf') && req.method === 'GET' ? slowBps : null;
  if (slow) {
    if (--slowCount <= 0) slowBps = null;
    entry.slow = slow;
    stream.on('data', (chunk) => {
      stream.pause();
      res.write(chunk);
      setTimeout(() => stream.resume(), (chunk.length / slow) * 1000);
    });
    stream.on('end', () => res.end());
    res.on('close', () => stream.destroy());
    return;
  }
  stream.pipe(res);
  stream.on('error', () => res.destroy());
}

createServer((req, res) => {
  handle(req, res).catch((e) => {
    res.writeHead(500, baseHeaders({ 'Content-Type': 'text/plain' }));
    res.end(String(e));
  });
}).listen(port, host, () => {
  console.log(`candlelit: serving http://${host}:${port}/`);
});
