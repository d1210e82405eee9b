import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError, isNotFound } from "../errors.js";
import { LocalStorage } from "./drivers/local.js";
import { readSmallObject } from "./repository.js";
import type { ObjectStorage } from "./storage.js";

/**
 * The identity of a backup root (restic calls it the repository id): made once, stored in the
 * root, and part of every offsite key, so several hosts can share one bucket without one host's
 * copy replacing another's when their context names and snapshot seconds collide.
 */
export interface RepositoryIdentity {
  schema: "paas-backup/repository@1";
  /** 16 lowercase hex characters */
  id: string;
  createdAt: string;
  /** the host that created it, for people reading `offsite list --all-roots`; not used for identity */
  host: string | null;
}

export const REPOSITORY_FILE = "paas-backup.repository.json";
const ID = /^[0-9a-f]{16}$/;

/**
 * The one reader of an identity's text (issue 19 §2), for the backup root folder, a bucket root
 * and offsite markers alike: null when it is not JSON or has no valid id. Each caller decides what
 * a missing or invalid identity means for it (the s3:// root's connect keeps its
 * PAAS_BACKUP_NOT_A_REPOSITORY; readIdentityIn retries a torn one, then PAAS_BACKUP_REPOSITORY_ID_INVALID).
 */
export function parseRepositoryIdentity(text: string | null): RepositoryIdentity | null {
  if (text === null) return null;
  try {
    const r = JSON.parse(text) as Partial<RepositoryIdentity>;
    return r && typeof r.id === "string" && ID.test(r.id)
      ? {
          schema: "paas-backup/repository@1",
          id: r.id,
          createdAt: String(r.createdAt ?? ""),
          host: r.host ?? null,
        }
      : null;
  } catch {
    return null;
  }
}

/** The backup root's identity; null when it has none yet. */
export async function readRepositoryIdentity(
  fs: FileSystem,
  backupRoot: string,
): Promise<RepositoryIdentity | null> {
  return readIdentityIn(new LocalStorage(fs, backupRoot, { readOnly: false }));
}

/** The repository's identity read through its storage (the backup root folder, or a bucket); null when it has none yet. */
export async function readIdentityIn(storage: ObjectStorage): Promise<RepositoryIdentity | null> {
  // A reader racing a creator that wrote the object in place (older paas-backup made the file with
  // an exclusive create, then wrote it) can see it empty for an instant, so an empty or torn
  // object is read again before it is an error.
  for (let attempt = 0; ; attempt++) {
    let text: string;
    try {
      text = await readSmallObject(storage, REPOSITORY_FILE, 64 * 1024);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const parsed = parseRepositoryIdentity(text);
    if (parsed) return parsed;
    if (attempt >= 20) {
      const path = storage.locate(REPOSITORY_FILE);
      throw new IntegrityError(
        "PAAS_BACKUP_REPOSITORY_ID_INVALID",
        `${path} does not hold a backup root identity`,
        {
          path,
          remediation:
            "Restore the file from a copy of this backup root; if it was never valid, move it aside and a new identity is made (offsite copies pushed under the old one stay listed with offsite list --all-roots).",
          stage: "identity",
        },
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The identity of the backup root folder, created once (see ensureIdentityIn). */
export async function ensureRepositoryIdentity(
  fs: FileSystem,
  backupRoot: string,
  clock: () => Date,
  host: string | null = null,
): Promise<RepositoryIdentity> {
  return ensureIdentityIn(new LocalStorage(fs, backupRoot, { readOnly: false }), clock, host);
}

/**
 * The repository's identity, created once through its storage: a create-only write decides which
 * of two racing processes (or hosts, on a bucket) makes it, and the loser reads the winner's, as
 * the s3:// root does when it first connects.
 */
export async function ensureIdentityIn(
  storage: ObjectStorage,
  clock: () => Date,
  host: string | null = null,
): Promise<RepositoryIdentity> {
  const existing = await readIdentityIn(storage);
  if (existing) return existing;
  const identity: RepositoryIdentity = {
    schema: "paas-backup/repository@1",
    id: randomBytes(8).toString("hex"),
    createdAt: clock().toISOString(),
    host,
  };
  const body = Buffer.from(`${JSON.stringify(identity, null, 2)}\n`, "utf8");
  if (!storage.createOnly) {
    // A driver without create-only writes is one writer's (every driver paas-backup ships has them).
    await storage.put(REPOSITORY_FILE, Readable.from([body]), {
      sha256: createHash("sha256").update(body).digest("hex"),
      size: body.length,
    });
    return identity;
  }
  const made = await storage.createOnly(REPOSITORY_FILE, body);
  if (made.created) return identity;
  // Another process made it first: its identity is the one.
  const theirs = await readIdentityIn(storage);
  if (theirs) return theirs;
  const path = storage.locate(REPOSITORY_FILE);
  throw new IntegrityError(
    "PAAS_BACKUP_REPOSITORY_ID_INVALID",
    `${path} is not a file holding a backup root identity`,
    {
      path,
      remediation:
        "Something else is at that name (a folder or a link): move it aside and a new identity is made.",
      stage: "identity",
    },
  );
}
