// Split models in llama.cpp's gguf-split layout: one model stored as `NAME-00001-of-0000N.gguf`
// … `NAME-0000N-of-0000N.gguf`. Static hosts cap file sizes (GitHub Pages at 100 MB,
// Cloudflare Pages at 25 MiB) and larger GGUF models are published this way, so a URL naming
// a first part loads every part, the later ones downloading while the first loads
// (`candlelit split` makes them).

const FIRST = /-00001-of-(\d{5})\.gguf$/;

/** Every part's URL when `url` names the first part of a split model, else `[url]`. */
export function partUrls(url) {
  const u = new URL(url, self.location?.href);
  const m = FIRST.exec(u.pathname);
  const count = m ? Number(m[1]) : 1;
  if (count < 2) return [u.href];
  return Array.from({ length: count }, (_, i) => {
    const part = new URL(u.href);
    part.pathname = u.pathname.replace(FIRST, `-${String(i + 1).padStart(5, '0')}-of-${m[1]}.gguf`);
    return part.href;
  });
}

/** A file's size from a HEAD request, or null when the server does not say. */
export async function headSize(url) {
  try {
    const r = await fetch(url, { method: 'HEAD', cache: 'no-store' });
    return r.ok ? Number(r.headers.get('Content-Length')) || null : null;
  } catch {
    return null;
  }
}

/** The size of a model (all its parts), or null when a server does not say. */
export async function remoteSize(url) {
  const sizes = await Promise.all(partUrls(url).map(headSize));
  return sizes.every((s) => s) ? sizes.reduce((a, b) => a + b, 0) : null;
}

/**
 * Progress over all the parts as one bar: `sizes` are the parts' sizes (null where unknown,
 * which falls back to the part's own bytes with `part`/`parts` saying which one). Parts may
 * download at the same time, and a part downloaded ahead is then read from storage: each
 * part counts the most bytes any of its phases reached, the speed is the sum of the parts
 * downloading, and the bar never goes back.
 */
export function partsProgress(onProgress, sizes) {
  const known = sizes.every((s) => s);
  const total = known ? sizes.reduce((a, b) => a + b, 0) : null;
  const done = sizes.map(() => 0);
  const speed = sizes.map(() => 0);
  return (i) => (p) => {
    if (!onProgress) return;
    if (sizes.length < 2) return onProgress(p);
    const parts = { part: i + 1, parts: sizes.length };
    if (!known) return onProgress({ ...p, ...parts });
    done[i] = Math.max(done[i], p.loaded);
    // Reading a part downloaded ahead moves nothing on the bar: its speed is not the line's.
    speed[i] = p.phase === 'download' && p.loaded < sizes[i] ? p.bytesPerSecond : 0;
    const loaded = done.reduce((a, b) => a + b, 0);
    const downloading = speed.reduce((a, b) => a + b, 0);
    const bytesPerSecond = downloading || p.bytesPerSecond;
    const phase = downloading ? 'download' : p.phase;
    const secondsLeft = bytesPerSecond > 0 ? (total - loaded) / bytesPerSecond : null;
    onProgress({ ...p, ...parts, phase, loaded, total, bytesPerSecond, secondsLeft });
  };
}

/** How many parts download at once: the one loading and the next ones, into storage. */
export const PARALLEL_PARTS = 3;

/**
 * Starts downloading parts 2… of `urls` into storage, `PARALLEL_PARTS - 1` at a time, while
 * the caller loads part 1: one connection rarely fills the line, and the parts come from one
 * host. `fetchToStore(url, i, signal)` does one part. `done[i]` settles when part i is
 * stored (or failed; a failure is the caller's to throw when it reaches that part); `stop()`
 * aborts what is still running (its bytes stay stored, to be resumed).
 */
export function downloadAhead(urls, fetchToStore, signal) {
  const inner = new AbortController();
  const abort = () => inner.abort();
  signal?.addEventListener('abort', abort, { once: true });
  const jobs = urls.map((url, i) => ({ url, i })).slice(1);
  const settle = [];
  const done = urls.map((_, i) => (i ? new Promise((resolve, reject) => (settle[i] = { resolve, reject })) : null));
  for (const p of done) p?.catch(() => {}); // not awaited at all once an earlier part fails
  const worker = async () => {
    for (let job = jobs.shift(); job; job = jobs.shift()) {
      try {
        settle[job.i].resolve(await fetchToStore(job.url, job.i, inner.signal));
      } catch (e) {
        settle[job.i].reject(e);
      }
    }
  };
  const width = Math.min(PARALLEL_PARTS - 1, jobs.length);
  for (let w = 0; w < width; w++) worker();
  // Nothing ahead (one part at a time): each part downloads when its turn comes.
  if (!width) for (const s of settle) s?.resolve(null);
  return {
    done,
    stop() {
      signal?.removeEventListener('abort', abort);
      inner.abort();
    },
  };
}
