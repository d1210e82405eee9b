import { Readable } from "node:stream";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError, isNotFound } from "../errors.js";
import { chainOf, parentLinkProblem, readSmallObject, type SnapshotRef } from "./repository.js";
import type { ObjectStorage } from "./storage.js";
import { checkSnapshotChecksum, expectedChecksum } from "./checksum.js";
import { sha256Hex } from "../util/hash.js";

/**
 * Before an incremental extends a chain, every link of that chain must still verify (issue 9 §5):
 * adding hourly incrementals to a chain whose full is corrupt makes nothing of that day restorable.
 *
 * What verified is remembered in a small cache beside the snapshots, the object
 * `<context>/.verified-chain.json` of the repository the chain is in (issue 19 §2: through the
 * storage only, so a bucket needs no local folder; on a folder root it is the same file as ever,
 * <backup_root>/<context>/.verified-chain.json): per snapshot id, the sha256 that verified, the
 * artifact's size and mtime then, and when its bytes were last read. By default it is kept in the
 * repository, so an SDK caller holding only a bucket's storage needs no local folder, and on a
 * bucket several hosts share a link one host verified is vouched for every host. A caller can
 * inject a host cache instead (`cache`): the CLI's s3:// root does, in its cache folder
 * ($XDG_CACHE_HOME/paas-backup/<root id>), because there the bucket object costs a GET and a PUT
 * per incremental tick and a HEAD per listing of the context (measured: 79 -> 84 requests for an
 * incremental tick), for a saving only a host with a new cache sees. Writers race only with writers
 * of the same context (tick and snapshot hold its lock, or its lease on a shared bucket); the last
 * write wins and a lost entry costs one re-read. The cache is never trusted
 * blindly (issue 20 §2): bit rot keeps size and mtime, so
 *   - a link up to CHEAP_REHASH_BYTES (every incremental, and the full of a small context) is
 *     re-read every time: cheap, and nothing else catches a flipped byte before the next restore;
 *   - of the larger links the cache vouches for, the one read longest ago is re-read when that was
 *     more than DEEP_CHECK_EVERY_MS ago: a deep check rotates through the chain, one link a run,
 *     so rot in a large full is found within hours, not at the restore;
 *   - a changed size, mtime or checksum file is always re-read.
 */
export const VERIFIED_CACHE_NAME = ".verified-chain.json";
/** links up to this size are re-hashed on every check (the cache only saves reading large fulls) */
export const CHEAP_REHASH_BYTES = 16 * 1024 * 1024;
/** a large link the cache vouches for is read again once this long has passed since its last read */
export const DEEP_CHECK_EVERY_MS = 6 * 3600_000;

interface CacheEntry {
  sha256: string;
  size: number;
  mtimeMs: number;
  /** when its bytes were last hashed (ms since the epoch); absent in caches written before issue 20 */
  checkedAt?: number;
}

interface CacheFile {
  format: "paas-backup-verified-chain@1";
  entries: Record<string, CacheEntry>;
}

export function verifiedCacheKey(context: string): string {
  return `${context}/${VERIFIED_CACHE_NAME}`;
}

async function readCache(storage: ObjectStorage, key: string): Promise<CacheFile> {
  try {
    const parsed = JSON.parse(await readSmallObject(storage, key, 4 * 1024 * 1024)) as CacheFile;
    if (
      parsed?.format === "paas-backup-verified-chain@1" &&
      parsed.entries &&
      typeof parsed.entries === "object"
    )
      return parsed;
  } catch (err) {
    // A missing, unreadable or absurdly large cache only costs a re-hash; an I/O error is real and propagates.
    if (!isNotFound(err) && !(err instanceof SyntaxError) && !(err instanceof IntegrityError)) throw err;
  }
  return { format: "paas-backup-verified-chain@1", entries: {} };
}

/**
 * null when the chain ending at `newest` verifies (each link's checksum, and each incremental
 * built on exactly its parent's bytes); otherwise the problem, in words for the operator.
 */
export async function checkChainToExtend(
  newest: SnapshotRef,
  all: readonly SnapshotRef[],
  nonce: string,
  now: Date,
  cache?: ObjectStorage,
): Promise<string | null> {
  return verifyChain(newest, all, { now, write: { nonce }, ...(cache ? { cache } : {}) });
}

/**
 * @deprecated use verifyChain(newest, all, options): the cache is in the chain's own repository
 * (`newest.storage`), so the file system and backup root are no longer needed (and not used).
 */
export async function verifyChainCached(
  _fs: FileSystem,
  _backupRoot: string,
  newest: SnapshotRef,
  all: readonly SnapshotRef[],
  options: VerifyChainOptions,
): Promise<string | null> {
  return verifyChain(newest, all, options);
}

export interface VerifyChainOptions {
  now: Date;
  /** record what was read (the nonce is kept for callers; the storage stages its own names) */
  write?: { nonce: string };
  /** links up to this size are always re-read (CHEAP_REHASH_BYTES unless given) */
  cheapRehashBytes?: number;
  /**
   * where the cache object is kept: the chain's own repository (`newest.storage`) unless a host
   * cache is injected (the CLI's s3:// root keeps it in its local cache folder: a local read
   * instead of a GET and a PUT per incremental)
   */
  cache?: ObjectStorage;
}

/**
 * The chain check over the cache; `write` records what was read (tick and snapshot do, `status`
 * only reads the cache, so the rotation advances with the runs that own the lock).
 */
export async function verifyChain(
  newest: SnapshotRef,
  all: readonly SnapshotRef[],
  options: VerifyChainOptions,
): Promise<string | null> {
  const cheap = options.cheapRehashBytes ?? CHEAP_REHASH_BYTES;
  const { chain, missing } = chainOf(newest, all);
  if (missing) return `link ${missing} of the chain of ${newest.id} is missing or damaged`;
  const storage = options.cache ?? newest.storage;
  const key = verifiedCacheKey(newest.context);
  const cache = await readCache(storage, key);
  const live = new Set(all.map((s) => s.id));
  let changed = false;
  for (const id of Object.keys(cache.entries)) {
    if (!live.has(id)) {
      delete cache.entries[id]; // pruned: keep the cache small
      changed = true;
    }
  }
  const now = options.now.getTime();
  const vouched = (link: SnapshotRef, expected: string): CacheEntry | null => {
    const hit = cache.entries[link.id];
    const mtimeMs = link.artifact.lastModified?.getTime() ?? -1;
    return hit && hit.sha256 === expected && hit.size === link.artifact.size && hit.mtimeMs === mtimeMs
      ? hit
      : null;
  };
  // The one large link due for its deep check this run: the one read longest ago.
  let deep: string | null = null;
  let deepAt = Infinity;
  for (const link of chain) {
    const expected = await expectedChecksum(link);
    const hit = expected ? vouched(link, expected) : null;
    if (!hit || link.artifact.size <= cheap) continue;
    const at = hit.checkedAt ?? 0;
    if (now - at > DEEP_CHECK_EVERY_MS && at < deepAt) {
      deep = link.id;
      deepAt = at;
    }
  }
  let problem: string | null = null;
  for (const [i, link] of chain.entries()) {
    const expected = await expectedChecksum(link);
    if (!expected) {
      problem = `link ${link.id} has no readable checksum file`;
      break;
    }
    const hit = vouched(link, expected);
    let actual: string;
    if (hit && link.artifact.size > cheap && link.id !== deep) actual = hit.sha256;
    else {
      const c = await checkSnapshotChecksum(link);
      actual = c.actual;
      if (c.state !== "verified") {
        if (cache.entries[link.id]) {
          delete cache.entries[link.id];
          changed = true;
        }
        problem = `link ${link.id} ${c.state === "mismatch" ? "no longer matches its checksum" : `is ${c.state}`}`;
        break;
      }
      cache.entries[link.id] = {
        sha256: actual,
        size: link.artifact.size,
        mtimeMs: link.artifact.lastModified?.getTime() ?? -1,
        checkedAt: now,
      };
      changed = true;
    }
    problem = parentLinkProblem(link, actual, chain[i + 1]);
    if (problem) break;
  }
  if (changed && options.write) {
    // put() is atomic on every driver: a reader sees the old cache or the new, never a torn one.
    const body = Buffer.from(`${JSON.stringify(cache)}\n`, "utf8");
    await storage.put(key, Readable.from([body]), { sha256: sha256Hex(body), size: body.length });
  }
  return problem;
}
