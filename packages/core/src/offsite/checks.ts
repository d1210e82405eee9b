import { createHash } from "node:crypto";
import { errorCodeOf, PaasBackupError } from "../errors.js";
import type { ObjectStorage } from "../repository/storage.js";
import type { RetentionPolicy } from "../retention/plan.js";
import { DEFAULT_OFFSITE_RETENTION, type OffsiteCopy, type OffsiteTarget } from "./types.js";

/** How long the offsite retention policy may keep a copy, in days (the monthly rule reaches furthest). */
export function retentionHorizonDays(policy: Partial<RetentionPolicy> | undefined): number {
  const p = { ...DEFAULT_OFFSITE_RETENTION, ...(policy ?? {}) };
  return Math.max(p.daily, p.weekly * 7, p.monthly * 31);
}

/** Warnings about a target's configuration that an operator should act on. */
export function targetWarnings(target: OffsiteTarget): string[] {
  const horizon = retentionHorizonDays(target.retention);
  // Only where a lock can hold at all: a directory target has no retention to extend.
  if (target.objectLock && target.storage.flags.retention && target.objectLock.days < horizon) {
    return [
      `Object Lock at ${target.storage.url} holds copies ${target.objectLock.days} days, but offsite retention keeps them up to ${horizon} days: ` +
        "push extends the lock of every copy retention still keeps (offsite extend-locks); run it at least every " +
        `${Math.max(1, Math.floor(target.objectLock.days / 2))} days, or raise lock days to ${horizon}.`,
    ];
  }
  return [];
}

export async function hashObject(
  storage: ObjectStorage,
  key: string,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const c of await storage.get(key)) {
    hash.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

export function isLockRefusal(err: unknown): boolean {
  const code = errorCodeOf(err) ?? "";
  const cause =
    err instanceof PaasBackupError ? (err.cause as { name?: string; code?: string } | undefined) : undefined;
  return /AccessDenied|locked|ObjectLocked/i.test(
    `${code} ${cause?.name ?? ""} ${cause?.code ?? ""} ${(err as Error)?.message ?? ""}`,
  );
}

/** The cheap check of one copy (HEAD, or stat for a directory): present, size and sha256 as copied, sidecar there, not found damaged. */
export async function cheapCheck(storage: ObjectStorage, copy: OffsiteCopy): Promise<string | null> {
  if (copy.problem) return copy.problem;
  const head = await storage.head(copy.artifact);
  if (!head) return `${copy.artifact} is missing at the target`;
  if (head.size !== copy.size) return `${copy.artifact} is ${head.size} bytes, ${copy.size} were copied`;
  if (head.sha256 !== null && head.sha256 !== copy.sha256)
    return `${copy.artifact} carries sha256 ${head.sha256}, ${copy.sha256} was copied`;
  if (!(await storage.head(`${copy.artifact}.sha256`)))
    return `the checksum file of ${copy.artifact} is missing at the target`;
  return null;
}
