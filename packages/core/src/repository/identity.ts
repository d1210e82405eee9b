import { randomBytes } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { errorCodeOf, IntegrityError } from "../errors.js";
import { join } from "../util/paths.js";
import { readTextOrNull } from "../util/optional-reads.js";

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

function parseIdentity(text: string): RepositoryIdentity | null {
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
  const path = join(backupRoot, REPOSITORY_FILE);
  // The creator writes the file in one small write after an exclusive create: a reader racing it
  // can see it empty for an instant, so an empty or torn file is read again before it is an error.
  for (let attempt = 0; ; attempt++) {
    const text = await readTextOrNull(fs, path);
    if (text === null) return null;
    const parsed = parseIdentity(text);
    if (parsed) return parsed;
    if (attempt >= 20) {
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

/** The identity, created once: an exclusive create decides which of two racing processes makes it. */
export async function ensureRepositoryIdentity(
  fs: FileSystem,
  backupRoot: string,
  clock: () => Date,
  host: string | null = null,
): Promise<RepositoryIdentity> {
  const existing = await readRepositoryIdentity(fs, backupRoot);
  if (existing) return existing;
  const identity: RepositoryIdentity = {
    schema: "paas-backup/repository@1",
    id: randomBytes(8).toString("hex"),
    createdAt: clock().toISOString(),
    host,
  };
  await fs.mkdir(backupRoot, { recursive: true, mode: 0o700 });
  try {
    await fs.writeFile(join(backupRoot, REPOSITORY_FILE), `${JSON.stringify(identity, null, 2)}\n`, {
      mode: 0o600,
      exclusive: true,
    });
    await fs.sync(join(backupRoot, REPOSITORY_FILE));
    return identity;
  } catch (err) {
    if (errorCodeOf(err) !== "EEXIST") throw err;
    // Another process made it first: its identity is the one.
    return (await readRepositoryIdentity(fs, backupRoot))!;
  }
}
