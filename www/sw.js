// Service worker: keeps the app shell (page, scripts, wasm) so the page opens with the
// network off. Model files are not cached here: the engine keeps them in OPFS.
// Network first, so a new build is picked up when online; the cache answers offline.

importScripts('../pkg/simd-probe.js');

const CACHE = 'candlelit-shell-v6';
const SHELL = [
  './',
  './index.html',
  './app.js',
  './style.css',
  './manifest.webmanifest',
  '../pkg/markdown.js',
  '../pkg/vendor/marked.esm.js',
  '../pkg/vendor/purify.es.mjs',
  '../pkg/client.js',
  '../pkg/worker.js',
  '../pkg/download.js',
  '../pkg/storage.js',
  '../pkg/split.js',
  '../pkg/tools.js',
  '../pkg/wasm/candlelit.js',
  '../pkg/wasm/candlelit_bg.wasm',
  '../pkg/wasm-mt/candlelit.js',
  '../pkg/wasm-mt/candlelit_bg.wasm',
  '../pkg/simd-probe.js',
  // The relaxed-SIMD builds only where the worker will choose them.
  ...(self.candlelitRelaxedSimd()
    ? ['../pkg/wasm-relaxed/candlelit.js', '../pkg/wasm-relaxed/candlelit_bg.wasm', '../pkg/wasm-mt-relaxed/candlelit.js', '../pkg/wasm-mt-relaxed/candlelit_bg.wasm']
    : []),
];

self.addEventListener('install', (e) => {
  // One by one, so a missing optional file (the threaded build) does not fail the install.
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => Promise.all(SHELL.map((u) => c.add(u).catch(() => {}))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (e) => {
  e.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.endsWith('.gguf') || url.pathname.startsWith('/__test/')) return;
  e.respondWith(
    fetch(e.request)
      .then((resp) => {
        if (resp.ok && resp.status === 200) {
          const copy = resp.clone();
          caches.open(CACHE).then((c) => c.put(e.request, copy));
        }
        return resp;
      })
      .catch(() => caches.match(e.request, { ignoreSearch: true }).then((r) => r || Response.error())),
  );
});
