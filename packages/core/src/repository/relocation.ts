import type { LogEntry } from "./lease.js";
import type { ObjectStorage, StoredObject } from "./storage.js";

/**
 * Relocations: how a shared bucket (an s3:// root) takes a rewritten snapshot without ever
 * overwriting an object. Nothing there is overwritten (Ceph RGW 16 has no If-Match, so a reader
 * could never tell an old object from a new one mid-read), so `keys rotate` writes the
 * re-encrypted artifact, its .sha256, its sidecar manifest, their signatures and the children's
 * manifests (their parent.sha256) under new keys of its own,
 *   <context>/rotations/<rotation>/<snapshot>/<name>
 * and then commits one small create-only entry in the context's fenced log (carrying the lease's
 * epoch: a rotation that paused past its lease cannot commit):
 *   { relocation: { rotation, snapshot, sha256, payloadSha256, at, keys: { <key readers know>: <new key> } } }
 * Every reader goes through relocatedView, which follows the newest committed entry of each key:
 * list shows the new object under the key readers know, get/head/locate read it there, delete
 * removes both. The objects an entry replaced stay until the maintenance sweep removes them, once
 * the entry is older than the delete delay (two phases, as prune's marks): a reader that listed
 * before the commit reads the old bytes to the end.
 */
export interface Relocation {
  /** the rotation record's id */
  rotation: string;
  /** the snapshot whose artifact moved */
  snapshot: string;
  /** the new artifact's sha256 (its .sha256 file says the same) */
  sha256: string;
  /** the plaintext .tar.gz's sha256, unchanged by a rotation */
  payloadSha256: string;
  /** the server's time just before the commit: the delete delay of what it replaced counts from it */
  at: string;
  /** the keys readers know -> where their bytes are now */
  keys: Record<string, string>;
}

export const RELOCATIONS_FOLDER = "rotations";

/** Where a rotation writes one object of a snapshot's step (unique per rotation and snapshot: nothing is ever written twice over a committed key). */
export function relocationKey(context: string, rotation: string, snapshot: string, name: string): string {
  return `${context}/${RELOCATIONS_FOLDER}/${rotation}/${snapshot}/${name}`;
}

/** The relocation a log entry's data carries, or null (a snapshot's commit, or something else). */
export function relocationOf(data: Record<string, unknown>): Relocation | null {
  const r = data.relocation as Partial<Relocation> | undefined;
  if (!r || typeof r !== "object") return null;
  if (typeof r.rotation !== "string" || typeof r.snapshot !== "string" || typeof r.at !== "string")
    return null;
  if (!r.keys || typeof r.keys !== "object") return null;
  const keys: Record<string, string> = {};
  for (const [from, to] of Object.entries(r.keys)) if (typeof to === "string") keys[from] = to;
  return {
    rotation: r.rotation,
    snapshot: r.snapshot,
    sha256: typeof r.sha256 === "string" ? r.sha256 : "",
    payloadSha256: typeof r.payloadSha256 === "string" ? r.payloadSha256 : "",
    at: r.at,
    keys,
  };
}

/** The committed relocations of a fenced log, oldest first (fenced-out commits left out). */
export function relocationsIn(entries: readonly (LogEntry & { fenced: boolean })[]): Relocation[] {
  const out: Relocation[] = [];
  for (const e of entries) {
    if (e.kind !== "commit" || e.fenced) continue;
    const r = relocationOf(e.data);
    if (r) out.push(r);
  }
  return out;
}

export interface RelocationMap {
  /** a key readers know -> where it is now (the newest entry wins) */
  current: Map<string, string>;
  /** keys an entry replaced, with that entry's time: removed once older than the delete delay */
  superseded: { key: string; at: string }[];
}

export function relocationMap(relocations: readonly Relocation[]): RelocationMap {
  const current = new Map<string, string>();
  const superseded: { key: string; at: string }[] = [];
  for (const r of relocations)
    for (const [from, to] of Object.entries(r.keys)) {
      const before = current.get(from) ?? from;
      if (before !== to) superseded.push({ key: before, at: r.at });
      current.set(from, to);
    }
  // a key that is some entry's current target is never superseded (an entry committed twice)
  const live = new Set(current.values());
  return { current, superseded: superseded.filter((s) => !live.has(s.key)) };
}

/** The folder (`<context>/rotations/`) a relocated key lives under. */
function folderOf(key: string): string | null {
  const at = key.indexOf(`/${RELOCATIONS_FOLDER}/`);
  return at < 0 ? null : key.slice(0, at + RELOCATIONS_FOLDER.length + 2);
}

/**
 * The storage as readers must see it: every relocated key read, listed, located and deleted
 * where its newest committed entry says. Writes go where they are asked (nothing writes over a
 * committed snapshot's keys). A relocated key whose new object is gone (its snapshot removed) is
 * not listed.
 */
export function relocatedView(storage: ObjectStorage, current: ReadonlyMap<string, string>): ObjectStorage {
  if (current.size === 0) return storage;
  const to = (key: string) => current.get(key) ?? key;
  async function* list(
    prefix: string,
    options?: { shallow?: boolean; keysOnly?: boolean },
  ): AsyncIterable<StoredObject> {
    const wanted = [...current.keys()].filter(
      (k) => k.startsWith(prefix) && !(options?.shallow && k.slice(prefix.length).includes("/")),
    );
    if (wanted.length === 0) {
      yield* storage.list(prefix, options);
      return;
    }
    const out: StoredObject[] = [];
    for await (const o of storage.list(prefix, options)) if (!current.has(o.key)) out.push(o);
    // the new objects, under the keys readers know: one listing of each rotations folder, not a
    // request per object
    const known = new Map(wanted.map((k) => [current.get(k)!, k]));
    const folders = new Set([...known.keys()].map(folderOf).filter((f): f is string => f !== null));
    for (const folder of folders)
      for await (const o of storage.list(folder, { ...(options?.keysOnly ? { keysOnly: true } : {}) })) {
        const key = known.get(o.key);
        if (key !== undefined) out.push({ ...o, key });
      }
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* out;
  }
  return new Proxy(storage, {
    get(target, prop, receiver) {
      switch (prop) {
        case "list":
          return list;
        case "get":
          return (key: string) => target.get(to(key));
        case "head":
          return async (key: string) => {
            const o = await target.head(to(key));
            return o ? { ...o, key } : null;
          };
        case "locate":
          return (key: string) => target.locate(to(key));
        case "delete":
          return async (key: string) => {
            if (current.has(key)) await target.delete(current.get(key)!);
            await target.delete(key);
          };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
