// Streams a model into a sink chunk by chunk (never the whole body in one ArrayBuffer),
// storing it as it arrives and resuming an interrupted download with an HTTP Range request.

import { ModelStore, namedError } from './storage.js';

const MB = 1e6;

/** Reports bytes, total, speed and remaining time, at most every 100 ms. */
export function progressMeter(total, onProgress, phase) {
  const t0 = performance.now();
  let last = 0;
  let done = 0;
  let resumedFrom = 0;
  return {
    set resumed(n) {
      resumedFrom = n;
    },
    add(n, force = false) {
      done += n;
      const now = performance.now();
      if (!force && now - last < 100) return;
      last = now;
      const secs = (now - t0) / 1000;
      const speed = secs > 0 ? (done - resumedFrom) / secs : 0;
      onProgress?.({ phase, loaded: done, total, bytesPerSecond: speed, secondsLeft: speed > 0 ? (total - done) / speed : null });
    },
  };
}

async function pump(stream, onChunk) {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      onChunk(value);
    }
  } finally {
    reader.releaseLock();
  }
}

/** Reads a Blob/File into `sink(chunk)`. */
export async function streamBlob(blob, sink, onProgress, phase = 'file') {
  const meter = progressMeter(blob.size, onProgress, phase);
  await pump(blob.stream(), (c) => {
    sink(c);
    meter.add(c.byteLength);
  });
  meter.add(0, true);
}

/**
 * Fetches `url` into `makeSink(totalBytes)`'s sink, storing it in OPFS as it arrives.
 * A stored complete copy is used without the network; a stored partial copy is replayed
 * from storage and the rest is requested with `Range`.
 */
export async function loadUrl(url, makeSink, { onProgress, signal } = {}) {
  const store = await ModelStore.open();
  const name = ModelStore.nameFor(url);
  const stored = await store.complete(name);
  if (stored) {
    const sink = makeSink(stored.size);
    await streamBlob(stored, sink, onProgress, 'storage');
    return { name, fromStorage: true, resumedFrom: 0 };
  }

  let offset = await store.partialSize(name);
  const meta = await store.meta(name);
  const headers = {};
  if (offset > 0 && meta?.total) {
    headers.Range = `bytes=${offset}-`;
    // If the file changed on the server, If-Range makes it send the whole new file.
    if (meta.validator) headers['If-Range'] = meta.validator;
  } else {
    offset = 0;
  }
  let resp;
  try {
    resp = await fetch(url, { headers, signal, cache: 'no-store' });
  } catch (e) {
    throw namedError('NetworkError', `Could not download ${url}: ${e.message}`);
  }
  if (!resp.ok) throw namedError('NetworkError', `Could not download ${url}: HTTP ${resp.status}`);
  if (offset > 0 && resp.status !== 206) offset = 0; // the server sent the whole file
  const length = Number(resp.headers.get('Content-Length'));
  const total = resp.status === 206 ? Number((resp.headers.get('Content-Range') || '').split('/')[1]) : length;
  if (!Number.isFinite(total) || total <= 0) throw namedError('NetworkError', `The server did not say how large ${url} is.`);
  const validator = resp.headers.get('ETag') || resp.headers.get('Last-Modified');

  const { quota = Infinity, usage = 0 } = (await navigator.storage.estimate?.()) ?? {};
  const need = total - offset;
  // `free` is what the browser's estimate says; when the browser refused a write the estimate
  // allowed, the number would mislead and is left out.
  const quotaError = (free) =>
    namedError(
      'QuotaExceeded',
      `This model needs ${(need / MB).toFixed(0)} MB of browser storage ` +
        (free < need ? `but only ${(Math.max(0, free) / MB).toFixed(0)} MB are free. ` : 'and the browser refused to store it. ') +
        'Delete stored models below, or free disk space, and try again.',
    );
  const isQuota = (e) => e?.name === 'QuotaExceededError' || /no space/i.test(e?.message ?? '');
  if (quota - usage < need) {
    await resp.body?.cancel();
    throw quotaError(quota - usage);
  }
  // Something else (the service worker keeping the app shell) may take the space after the
  // estimate: the browser's refusal is then said the same way, with a fresh estimate.
  const refused = async () => {
    await resp.body?.cancel().catch(() => {});
    const now = (await navigator.storage.estimate?.()) ?? {};
    return quotaError((now.quota ?? 0) - (now.usage ?? 0));
  };
  try {
    await store.writeMeta(name, { url: new URL(url, self.location.href).href, total, validator });
  } catch (e) {
    throw isQuota(e) ? await refused() : e;
  }

  const sink = makeSink(total);
  const meter = progressMeter(total, onProgress, 'download');
  if (offset > 0) {
    // Replay what we already have, then continue from the network.
    const part = await store.partialFile(name);
    await pump(part.slice(0, offset).stream(), (c) => {
      sink(c);
      meter.add(c.byteLength);
    });
    meter.resumed = offset;
  }
  let out;
  try {
    out = await store.appender(name, offset);
  } catch (e) {
    throw isQuota(e) ? await refused() : e;
  }
  let received = offset;
  try {
    await pump(resp.body, (c) => {
      out.write(c);
      try {
        sink(c);
      } catch (err) {
        err.fromEngine = true;
        throw err;
      }
      received += c.byteLength;
      meter.add(c.byteLength);
    });
  } catch (e) {
    if (isQuota(e)) {
      // The estimate was optimistic: the browser refused the write. Keep nothing.
      out.close();
      await store.remove(name);
      throw quotaError(received - offset);
    }
    if (e.fromEngine) {
      out.close();
      // The bytes are not a model we can run: keep nothing, so a retry starts clean. A GPU
      // or memory refusal says nothing against the bytes: keep them for a resumed load.
      if (!['Gpu', 'OutOfMemory'].includes(e.name)) await store.remove(name);
      throw e;
    }
    if (signal?.aborted) throw namedError('AbortError', 'The download was cancelled; load again to resume it.');
    throw namedError(
      'DownloadInterrupted',
      `The download stopped after ${(received / MB).toFixed(1)} of ${(total / MB).toFixed(1)} MB (${e.message}). Press Load to resume it.`,
    );
  } finally {
    try {
      out.close();
    } catch {
      // already closed after an engine error
    }
  }
  meter.add(0, true);
  if (received !== total) {
    throw namedError('DownloadInterrupted', `The download ended after ${received} of ${total} bytes. Press Load to resume it.`);
  }
  await store.markComplete(name);
  return { name, fromStorage: false, resumedFrom: offset };
}
