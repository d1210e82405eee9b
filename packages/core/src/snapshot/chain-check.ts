import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { chainOf, type SnapshotRef } from "../repository/repository.js";
import { checkSnapshotChecksum, expectedChecksum } from "../repository/checksum.js";
import { contextBackupDir, join } from "../util/paths.js";
import { writeFileAtomic } from "../util/atomic.js";

/**
 * Before an incremental extends a chain, every link of that chain must still verify (issue 9 §5):
 * adding hourly incrementals to a chain whose full is corrupt makes nothing of that day restorable.
 *
 * Hashing the whole chain every hour would re-read the day's full each time, so what verified is
 * remembered in a small cache beside the snapshots, <backup_root>/<context>/.verified-chain.json:
 * per snapshot id, the sha256 that verified and the artifact's size and mtime then. A link is
 * re-hashed when its size, mtime or checksum file changed; a change that keeps size and mtime
 * (silent bit rot) is left to `verify` and the drill, which always hash.
 */
export const VERIFIED_CACHE_NAME = ".verified-chain.json";

interface CacheEntry {
  sha256: string;
  size: number;
  mtimeMs: number;
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
): Promise<string | null> {
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
  let problem: string | null = null;
  for (const [i, link] of chain.entries()) {
    const expected = await expectedChecksum(link);
    if (!expected) {
      problem = `link ${link.id} has no readable checksum file`;
      break;
    }
    const size = link.artifact.size;
    const mtimeMs = link.artifact.lastModified?.getTime() ?? -1;
    const hit = cache.entries[link.id];
    let actual: string;
    if (hit && hit.sha256 === expected && hit.size === size && hit.mtimeMs === mtimeMs) actual = hit.sha256;
    else {
      const c = await checkSnapshotChecksum(link);
      actual = c.actual;
      if (c.state !== "verified") {
        if (hit) {
          delete cache.entries[link.id];
          changed = true;
        }
        problem = `link ${link.id} ${c.state === "mismatch" ? "no longer matches its checksum" : `is ${c.state}`}`;
        break;
      }
      cache.entries[link.id] = { sha256: actual, size, mtimeMs };
      changed = true;
    }
    const child = chain[i + 1];
    if (child?.parent && child.parent.sha256 !== actual) {
      problem = `link ${link.id} is not the artifact ${child.id} was built on`;
      break;
    }
  }
  if (changed) {
    const body = `${JSON.stringify(cache)}\n`;
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
