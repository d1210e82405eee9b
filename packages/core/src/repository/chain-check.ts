import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { chainOf, parentLinkProblem, type SnapshotRef } from "./repository.js";
import { checkSnapshotChecksum, expectedChecksum } from "./checksum.js";
import { contextBackupDir, join } from "../util/paths.js";
import { writeFileAtomic } from "../util/atomic.js";

/**
 * Before an incremental extends a chain, every link of that chain must still verify (issue 9 §5):
 * adding hourly incrementals to a chain whose full is corrupt makes nothing of that day restorable.
 *
 * What verified is remembered in a small cache beside the snapshots,
 * <backup_root>/<context>/.verified-chain.json: per snapshot id, the sha256 that verified, the
 * artifact's size and mtime then, and when its bytes were last read. The cache is never trusted
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

async function readCache(fs: FileSystem, path: string): Promise<CacheFile> {
  try {
    const parsed = JSON.parse(Buffer.from(await fs.readFile(path)).toString("utf8")) as CacheFile;
    if (
      parsed?.format === "paas-backup-verified-chain@1" &&
      parsed.entries &&
      typeof parsed.entries === "object"
    )
      return parsed;
  } catch (err) {
    // A missing or unreadable cache only costs a re-hash; an I/O error is real and propagates.
    if (!isNotFound(err) && !(err instanceof SyntaxError)) throw err;
  }
  return { format: "paas-backup-verified-chain@1", entries: {} };
}

/**
 * null when the chain ending at `newest` verifies (each link's checksum, and each incremental
 * built on exactly its parent's bytes); otherwise the problem, in words for the operator.
 */
export async function checkChainToExtend(
  fs: FileSystem,
  backupRoot: string,
  newest: SnapshotRef,
  all: readonly SnapshotRef[],
  nonce: string,
  now: Date,
): Promise<string | null> {
  return verifyChainCached(fs, backupRoot, newest, all, { now, write: { nonce } });
}

/**
 * The chain check over the cache; `write` records what was read (tick and snapshot do, `status`
 * only reads the cache, so the rotation advances with the runs that own the lock).
 */
export async function verifyChainCached(
  fs: FileSystem,
  backupRoot: string,
  newest: SnapshotRef,
  all: readonly SnapshotRef[],
  options: {
    now: Date;
    write?: { nonce: string };
    /** links up to this size are always re-read (CHEAP_REHASH_BYTES unless given) */
    cheapRehashBytes?: number;
  },
): Promise<string | null> {
  const cheap = options.cheapRehashBytes ?? CHEAP_REHASH_BYTES;
  const { chain, missing } = chainOf(newest, all);
  if (missing) return `link ${missing} of the chain of ${newest.id} is missing or damaged`;
  const path = join(contextBackupDir(backupRoot, newest.context), VERIFIED_CACHE_NAME);
  const cache = await readCache(fs, path);
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
    const body = `${JSON.stringify(cache)}
`;
    const nonce = options.write.nonce;
    try {
      await writeFileAtomic(fs, path, body, 0o600, nonce);
    } catch (err) {
      // With a bucket as the repository, <backupRoot>/<context>/ holds only this cache (a host's
      // own, rebuildable) and exists only once it was first written.
      if (!isNotFound(err)) throw err;
      await fs.mkdir(contextBackupDir(backupRoot, newest.context), { recursive: true, mode: 0o700 });
      await writeFileAtomic(fs, path, body, 0o600, nonce);
    }
  }
  return problem;
}
