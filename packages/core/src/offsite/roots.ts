import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { listSnapshotsIn, readSmallObject, type SnapshotRef } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { ROOTS } from "./types.js";

/** The keys of one backup root at a target: the same layout as at home, below roots/<id>/. */
export function rootView(storage: ObjectStorage, rootId: string): ObjectStorage {
  const prefix = `${ROOTS}/${rootId}/`;
  const view: ObjectStorage = {
    kind: storage.kind,
    flags: storage.flags,
    url: storage.url,
    put: (key, body, options) => storage.put(prefix + key, body, options).then((r) => ({ ...r, key })),
    stage: async (key) => {
      const staged = await storage.stage(prefix + key);
      return {
        stream: staged.stream,
        commit: async (expect) => ({ ...(await staged.commit(expect)), key }),
        abort: () => staged.abort(),
      };
    },
    get: (key) => storage.get(prefix + key),
    head: async (key) => {
      const h = await storage.head(prefix + key);
      return h ? { ...h, key } : null;
    },
    list: async function* (p, options) {
      for await (const o of storage.list(prefix + p, options))
        yield { ...o, key: o.key.slice(prefix.length) };
    },
    delete: (key) => storage.delete(prefix + key),
    sweepStaged: async (p, olderThan) =>
      (await storage.sweepStaged(prefix + p, olderThan)).map((k) => k.slice(prefix.length)),
    immutability: () => storage.immutability(),
    locate: (key) => storage.locate(prefix + key),
    ...(storage.extendLock
      ? {
          extendLock: (key: string, lock: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date }) =>
            storage.extendLock!(prefix + key, lock),
        }
      : {}),
  };
  return view;
}

export async function ensureRootMarker(
  storage: ObjectStorage,
  rootId: string,
  host: string | null,
  createdAt: string,
): Promise<void> {
  const key = `${ROOTS}/${rootId}.json`;
  if (await storage.head(key)) return;
  const data = Buffer.from(
    `${JSON.stringify({ schema: "paas-backup/root@1", id: rootId, host, createdAt })}\n`,
  );
  await storage.put(key, Readable.from([data]), {
    sha256: createHash("sha256").update(data).digest("hex"),
    size: data.length,
  });
}

/** Other backup roots with copies at a target: roots/<id>.json markers. */
export async function rootsAt(storage: ObjectStorage): Promise<{ id: string; host: string | null }[]> {
  const out: { id: string; host: string | null }[] = [];
  for await (const o of storage.list(`${ROOTS}/`, { shallow: true })) {
    const m = /^roots\/([0-9a-f]{16})\.json$/.exec(o.key);
    if (!m) continue;
    let host: string | null = null;
    try {
      host =
        (JSON.parse(await readSmallObject(storage, o.key, 64 * 1024)) as { host?: string | null }).host ??
        null;
    } catch {
      host = null;
    }
    out.push({ id: m[1]!, host });
  }
  return out;
}

/**
 * The other backup roots at a target that hold copies of a context (those with a checksum file,
 * as a restore needs), each with its copies, oldest first. After a lost disk the fresh backup
 * root has a new identity: this is where restore --from-offsite finds what the lost one pushed.
 */
export async function rootsHoldingContext(
  storage: ObjectStorage,
  context: string,
  except: string | null,
): Promise<{ id: string; host: string | null; snapshots: SnapshotRef[] }[]> {
  const out: { id: string; host: string | null; snapshots: SnapshotRef[] }[] = [];
  for (const root of await rootsAt(storage)) {
    if (root.id === except) continue;
    const snapshots = (await listSnapshotsIn(rootView(storage, root.id), context)).filter((s) => s.checksum);
    if (snapshots.length) out.push({ ...root, snapshots });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
}
