// Model files in the Origin Private File System.
//
// Why OPFS and not Cache Storage: a Cache Storage entry is a whole Response, so an
// interrupted download could not be appended to and resumed with a Range request; an OPFS
// file can be appended to chunk by chunk as bytes arrive (sync access handles in this
// worker), survives the crash of a tab half way, and streams back out with File.stream().
//
// Layout: `<name>` is a complete model, `<name>.partial` a download in progress (always a
// valid prefix of the file), `<name>.json` what we know about it (url, total size, validator).
// A file counts as complete only without the `.partial` suffix and with the recorded size.

import { partUrls } from './split.js';

const DIR = 'candlelit-models';

export class ModelStore {
  constructor(dir) {
    this.dir = dir;
  }

  static async open() {
    if (!navigator.storage?.getDirectory) throw namedError('StorageUnavailable', 'This browser has no Origin Private File System.');
    const root = await navigator.storage.getDirectory();
    // Opened without `create` first: a full quota refuses creating the folder, and listing or
    // deleting stored models is what frees the space.
    try {
      return new ModelStore(await root.getDirectoryHandle(DIR));
    } catch (e) {
      if (e.name !== 'NotFoundError') throw e;
    }
    return new ModelStore(await root.getDirectoryHandle(DIR, { create: true }));
  }

  /** A file name for a model URL: its last path segment, plus a hash of the whole URL. */
  static nameFor(url) {
    const u = new URL(url, self.location.href);
    const base = decodeURIComponent(u.pathname.split('/').pop() || 'model.gguf').replace(/[^A-Za-z0-9._-]/g, '_');
    let h = 2166136261;
    for (const c of u.href) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
    return `${h.toString(16).padStart(8, '0')}-${base}`;
  }

  async #file(name, create = false) {
    try {
      return await this.dir.getFileHandle(name, { create });
    } catch (e) {
      if (e.name === 'NotFoundError') return null;
      throw e;
    }
  }

  async meta(name) {
    const h = await this.#file(name + '.json');
    if (!h) return null;
    try {
      return JSON.parse(await (await h.getFile()).text());
    } catch {
      return null;
    }
  }

  /** Adds `fields` to a model's metadata (e.g. the SHA-256 it was verified against). */
  async updateMeta(name, fields) {
    const meta = await this.meta(name);
    if (meta) await this.writeMeta(name, { ...meta, ...fields });
  }

  async writeMeta(name, meta) {
    const h = await this.#file(name + '.json', true);
    const w = await h.createWritable();
    await w.write(JSON.stringify(meta));
    await w.close();
  }

  /** The complete file, or null (`meta`: the metadata, when the caller has read it). */
  async complete(name, meta) {
    const h = await this.#file(name);
    meta ??= await this.meta(name);
    if (!h || !meta) return null;
    const f = await h.getFile();
    return f.size === meta.total ? f : null;
  }

  /** Bytes already downloaded (0 when none). */
  async partialSize(name) {
    const h = await this.#file(name + '.partial');
    return h ? (await h.getFile()).size : 0;
  }

  async partialFile(name) {
    const h = await this.#file(name + '.partial');
    return h ? h.getFile() : null;
  }

  /** An appender on the partial file starting at `offset` (earlier bytes are kept). */
  async appender(name, offset) {
    const h = await this.#file(name + '.partial', true);
    const handle = await h.createSyncAccessHandle();
    handle.truncate(offset);
    let at = offset;
    let sinceFlush = 0;
    return {
      write(bytes) {
        handle.write(bytes, { at });
        at += bytes.byteLength;
        sinceFlush += bytes.byteLength;
        // Flush every few MB so that a killed tab keeps most of what it downloaded.
        if (sinceFlush > 8 << 20) {
          handle.flush();
          sinceFlush = 0;
        }
      },
      close() {
        handle.flush();
        handle.close();
      },
    };
  }

  /** Turns a finished partial file into the complete one. */
  async markComplete(name) {
    const h = await this.#file(name + '.partial');
    await h.move(name);
  }

  /** Removes one stored file (complete or partial) and its metadata. */
  async remove(name) {
    for (const f of [name, name + '.partial', name + '.json']) {
      try {
        await this.dir.removeEntry(f);
      } catch (e) {
        if (e.name !== 'NotFoundError') throw e;
      }
    }
  }

  /** Removes a stored model: a split model's first part takes its other parts with it. */
  async removeModel(name) {
    for (const n of await this.#partNames(name)) await this.remove(n);
  }

  /** The stored names of every part when `name` is a split model's first part, else `[name]`. */
  async #partNames(name) {
    const url = (await this.meta(name))?.url;
    const urls = url ? partUrls(url) : [];
    return urls.length > 1 ? [name, ...urls.slice(1).map((u) => ModelStore.nameFor(u))] : [name];
  }

  /**
   * Every stored model, complete or partial, with sizes; a split model is one entry (its first
   * part's name, `parts`, the sizes of all its parts, complete when every part is).
   */
  async list() {
    const out = new Map();
    for await (const [entry, h] of this.dir.entries()) {
      if (h.kind !== 'file' || entry.endsWith('.json')) continue;
      const partial = entry.endsWith('.partial');
      const name = partial ? entry.slice(0, -'.partial'.length) : entry;
      const meta = (await this.meta(name)) || {};
      const size = (await h.getFile()).size;
      const complete = !partial && size === meta.total;
      out.set(name, { name, url: meta.url ?? null, size, total: meta.total ?? null, complete });
    }
    for (const m of [...out.values()]) {
      const urls = m.url ? partUrls(m.url) : [];
      if (urls.length < 2 || !out.has(m.name)) continue;
      const parts = urls.slice(1).map((u) => out.get(ModelStore.nameFor(u)));
      for (const p of parts) if (p) out.delete(p.name);
      const all = [m, ...parts];
      out.set(m.name, {
        ...m,
        parts: urls.length,
        size: all.reduce((n, p) => n + (p?.size ?? 0), 0),
        total: all.every((p) => p?.total) ? all.reduce((n, p) => n + p.total, 0) : null,
        complete: all.every((p) => p?.complete),
      });
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

export function namedError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}
