// Split models in llama.cpp's gguf-split layout: one model stored as `NAME-00001-of-0000N.gguf`
// … `NAME-0000N-of-0000N.gguf`. Static hosts cap file sizes (GitHub Pages at 100 MB,
// Cloudflare Pages at 25 MiB) and larger GGUF models are published this way, so a URL naming
// a first part loads every part, one after another (`candlelit split` makes them).

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
 * which falls back to the part's own bytes with `part`/`parts` saying which one).
 */
export function partsProgress(onProgress, sizes) {
  const known = sizes.every((s) => s);
  const total = known ? sizes.reduce((a, b) => a + b, 0) : null;
  return (i) => (p) => {
    if (!onProgress) return;
    if (sizes.length < 2) return onProgress(p);
    const parts = { part: i + 1, parts: sizes.length };
    if (!known) return onProgress({ ...p, ...parts });
    const loaded = sizes.slice(0, i).reduce((a, b) => a + b, 0) + p.loaded;
    const secondsLeft = p.bytesPerSecond > 0 ? (total - loaded) / p.bytesPerSecond : null;
    onProgress({ ...p, ...parts, loaded, total, secondsLeft });
  };
}
