import { statSync, statfsSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { EnvironmentError, environmentErrorOf, type PaasBackupError } from "@paas-backup/core/errors";
import { humanBytes } from "../render/text.js";

function ownerName(uid: number): string {
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.split(":")[2] === String(uid));
    return line ? `${line.split(":")[0]} (uid ${uid})` : `uid ${uid}`;
  } catch {
    return `uid ${uid}`;
  }
}

function nearestExisting(path: string): string {
  let p = path;
  for (;;) {
    try {
      statSync(p);
      return p;
    } catch {
      if (dirname(p) === p) return p;
      p = dirname(p);
    }
  }
}

/**
 * An error the machine raised (no permission, no space, read-only filesystem) named as such,
 * with the file, its owner or the filesystem's free space; anything else is left as it is.
 */
export function environmentError(
  err: unknown,
  where: { path?: string; needed?: number } = {},
): PaasBackupError | null {
  const seen = new Set<unknown>();
  for (
    let e = err as
      (NodeJS.ErrnoException & { cause?: unknown; dest?: unknown; needed?: unknown }) | undefined;
    e && typeof e === "object" && !seen.has(e);
    e = e.cause as typeof e
  ) {
    seen.add(e);
    // A write stream's ENOSPC often names no file: the caller knows which filesystem it wrote to.
    const path = typeof e.path === "string" ? e.path : typeof e.dest === "string" ? e.dest : where.path;
    if (e.code === "EACCES" || e.code === "EPERM") {
      const at = path ? nearestExisting(path) : undefined;
      let owner = "";
      try {
        if (at) {
          const st = statSync(at);
          owner = `; ${at} is owned by ${ownerName(st.uid)}, mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}`;
        }
      } catch {
        owner = "";
      }
      const me = typeof process.getuid === "function" ? ownerName(process.getuid()) : "this user";
      return new EnvironmentError(
        "PAAS_BACKUP_PERMISSION_DENIED",
        `permission denied: ${e.syscall ?? "access"} ${path ?? "(unknown path)"} as ${me}${owner}`,
        {
          ...(path ? { path } : {}),
          remediation:
            "Run paas-backup as the user that owns the si paas state (the one si runs as), or fix the file's owner or mode; nothing was changed.",
          stage: "filesystem",
          data: { errno: e.code },
        },
      );
    }
    if (e.code === "ENOSPC" || e.code === "EDQUOT") {
      let free = "";
      try {
        if (path) {
          const fsInfo = statfsSync(nearestExisting(path));
          free = ` (${humanBytes(fsInfo.bavail * fsInfo.bsize)} free of ${humanBytes(fsInfo.blocks * fsInfo.bsize)})`;
        }
      } catch {
        free = "";
      }
      const needed =
        where.needed !== undefined
          ? `; this run needs up to ${humanBytes(where.needed)} there (the uncompressed size of what it writes)`
          : "";
      return new EnvironmentError(
        "PAAS_BACKUP_NO_SPACE",
        `no space left on the filesystem holding ${path ?? "the file being written"}${free}${needed}`,
        {
          ...(path ? { path } : {}),
          remediation:
            "Free space on that filesystem (old snapshots: `paas-backup prune`) or point --backup-root / --state-root at a larger one, then run again; what this run had written there was removed.",
          stage: "filesystem",
          data: { errno: e.code },
        },
      );
    }
    if (e.code === "EROFS") {
      return new EnvironmentError(
        "PAAS_BACKUP_READ_ONLY",
        `the filesystem holding ${path ?? "the target"} is read-only`,
        {
          ...(path ? { path } : {}),
          remediation: "Remount it read-write or point --backup-root elsewhere.",
          stage: "filesystem",
        },
      );
    }
  }
  // the other errno errors the machine raises (a file where a folder belongs, EXDEV, EBUSY, EIO…)
  return environmentErrorOf(err, where.path);
}
