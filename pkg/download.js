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

const isQuota = (e) => e?.name === 'QuotaExceededError' || /no space/i.test(e?.message ?? '');

/** The error a cancelled load ends with. */
export function cancelled(what = 'Loading the model') {
  return namedError('AbortError', `${what} was cancelled.`);
}

async function pump(stream, onChunk, signal) {
  const reader = stream.getReader();
  try {
    for (;;) {
      if (signal?.aborted) {
        await reader.cancel().catch(() => {});
        throw cancelled();
      }
      const { done, value } = await reader.read();
      if (done) return;
      onChunk(value);
    }
  } finally {
    reader.releaseLock();
  }
}

/** Reads a Blob/File into `sink(chunk)`; `signal` cancels it between chunks. */
export async function streamBlob(blob, sink, onProgress, phase = 'file', signal) {
  const meter = progressMeter(blob.size, onProgress, phase);
  await pump(
    blob.stream(),
    (c) => {
      sink(c);
      meter.add(c.byteLength);
    },
    signal,
  );
  meter.add(0, true);
}

/**
 * Fetches `url` into `makeSink(totalBytes, stored)`'s sink, storing it in OPFS as it arrives
 * (with `makeSink` null, only stores it: a stored complete copy is then left unread).
 * A stored complete copy is used without the network (`stored` is then its metadata); a
 * stored partial copy is replayed from storage and the rest is requested with `Range`.
 */
export async function loadUrl(url, makeSink, { onProgress, signal } = {}) {
  // A full quota can refuse even the models folder: the download is then refused below,
  // once the server has said how large the file is.
  let store = null;
  try {
    store = await ModelStore.open();
  } catch (e) {
    if (!isQuota(e)) throw e;
  }
  const name = ModelStore.nameFor(url);
  const meta = await store?.meta(name);
  const stored = await store?.complete(name, meta);
  if (stored && !makeSink) return { name, fromStorage: true, resumedFrom: 0 };
  if (stored) {
    const sink = makeSink(stored.size, meta);
    await streamBlob(stored, sink, onProgress, 'storage', signal);
    return { name, fromStorage: true, resumedFrom: 0 };
  }

  let offset = (await store?.partialSize(name)) ?? 0;
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
    if (signal?.aborted) throw cancelled('The download');
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
  if (quota - usage < need || !store) {
    await resp.body?.cancel();
    throw quotaError(quota - usage);
  }
  // Something else (the service worker keeping the app shell) may take the space after the
  // estimate, so any write below (metadata, the file, a flush, the final rename) can be
  // refused: every such refusal is said the same way, with a fresh estimate, and the partial
  // file is dropped since it cannot be finished.
  let out;
  try {
    return await storeAndFeed();
  } catch (e) {
    if (!isQuota(e)) throw e;
    await resp.body?.cancel().catch(() => {});
    try {
      out?.close();
    } catch {
      // the flush on close is what the browser refuses
    }
    await store.remove(name).catch(() => {});
    const now = (await navigator.storage.estimate?.()) ?? {};
    throw quotaError((now.quota ?? 0) - (now.usage ?? 0));
  }

  async function storeAndFeed() {
    await store.writeMeta(name, { url: new URL(url, self.location.href).href, total, validator });
    const sink = makeSink?.(total) ?? (() => {});
    const meter = progressMeter(total, onProgress, 'download');
    if (offset > 0 && makeSink) {
      // Replay what we already have, then continue from the network.
      const part = await store.partialFile(name);
      await pump(
        part.slice(0, offset).stream(),
        (c) => {
          sink(c);
          meter.add(c.byteLength);
        },
        signal,
      );
      meter.resumed = offset;
    } else if (offset > 0) {
      meter.add(offset);
      meter.resumed = offset;
    }
    out = await store.appender(name, offset);
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
      }, signal);
      const closing = out;
      out = null;
      closing.close();
    } catch (e) {
      if (isQuota(e)) throw e;
      try {
        out?.close();
      } catch {
        // already closed after an engine error
      }
      if (e.fromEngine) {
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
    }
    meter.add(0, true);
    if (received !== total) {
      throw namedError('DownloadInterrupted', `The download ended after ${received} of ${total} bytes. Press Load to resume it.`);
    }
    await store.markComplete(name);
    return { name, fromStorage: false, resumedFrom: offset };
  }
}
