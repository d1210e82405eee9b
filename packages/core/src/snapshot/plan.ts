import type { FileStat, FileSystem } from "../fs/types.js";
import { lstatOrNull } from "../util/optional-reads.js";
import { UsageError } from "../errors.js";
import type { ManifestEntryNote } from "../manifest/schema.js";
import {
  hardExclusionReason,
  OPTIONAL_FOLDERS,
  PROTECTED_FILES,
  type OptionalFolder,
} from "../policy/selection.js";
import { join } from "../util/paths.js";
import { lstatInside } from "../util/no-follow.js";

export interface PlannedFile {
  path: string;
  stat: FileStat;
}

/** What a snapshot of one context will read, before anything is read: a value `--dry-run` can print. */
export interface SnapshotContents {
  contextDir: string;
  files: PlannedFile[];
  absent: string[];
  excluded: ManifestEntryNote[];
  skipped: ManifestEntryNote[];
}

export async function requireContextDir(fs: FileSystem, dir: string, context: string): Promise<void> {
  const stat = await lstatOrNull(fs, dir);
  if (!stat) {
    throw new UsageError(
      "PAAS_BACKUP_CONTEXT_NOT_FOUND",
      `context ${context} not found: ${dir} does not exist`,
      {
        path: dir,
        remediation:
          "Check --context and --state-root (or SI_PAAS_STATE_ROOT); `si paas context list` shows the contexts.",
        stage: "plan",
      },
    );
  }
  if (stat.kind !== "directory") {
    throw new UsageError(
      "PAAS_BACKUP_CONTEXT_NOT_A_FOLDER",
      `context ${context} at ${dir} is a ${stat.kind}, not a folder`,
      {
        path: dir,
        remediation: "Point --state-root at the real state root; paas-backup never follows symbolic links.",
        stage: "plan",
      },
    );
  }
}

/**
 * Decide what goes in: the ten protected files, the optional folders asked for, nothing else.
 * Everything else found in the context is recorded as excluded with the rule that kept it out,
 * and links or special files as skipped, so the manifest explains every path it does not hold.
 */
export async function planSnapshotContents(
  fs: FileSystem,
  dir: string,
  include: readonly OptionalFolder[],
): Promise<SnapshotContents> {
  const files: PlannedFile[] = [];
  const absent: string[] = [];
  const excluded: ManifestEntryNote[] = [];
  const skipped: ManifestEntryNote[] = [];
  const protectedSet = new Set<string>(PROTECTED_FILES);

  for (const path of PROTECTED_FILES) {
    // every component checked, not only the last: a symlinked events/ is never read through
    const inside = await lstatInside(fs, dir, path);
    if (inside?.link !== undefined) {
      skipped.push({
        path,
        reason:
          inside.kind === "symlink"
            ? `under symbolic link ${inside.link} (never followed)`
            : `under ${inside.link}, which is not a folder (${inside.kind})`,
      });
      continue;
    }
    const stat = inside?.stat ?? null;
    if (!stat) absent.push(path);
    else if (stat.kind === "file") files.push({ path, stat });
    else if (stat.kind === "symlink") skipped.push({ path, reason: "symbolic link (never followed)" });
    else skipped.push({ path, reason: `not a regular file (${stat.kind})` });
  }

  // Iterative: a folder nested thousands of levels deep must not exhaust the stack.
  const walk = async (start: string): Promise<void> => {
    const pending = [start];
    while (pending.length > 0) {
      const rel = pending.shift()!;
      const below: string[] = [];
      for (const entry of (await fs.readdir(join(dir, rel))).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const path = `${rel}/${entry.name}`;
        const why = hardExclusionReason(path);
        if (why) excluded.push({ path: entry.kind === "directory" ? `${path}/` : path, reason: why });
        else if (entry.kind === "directory") below.push(path);
        else if (entry.kind === "file") files.push({ path, stat: await fs.lstat(join(dir, path)) });
        else if (entry.kind === "symlink") skipped.push({ path, reason: "symbolic link (never followed)" });
        else skipped.push({ path, reason: `not a regular file (${entry.kind})` });
      }
      pending.unshift(...below);
    }
  };

  // Top level and the protected folders: explain everything that is not taken.
  const topLevel = (await fs.readdir(dir)).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of topLevel) {
    const name = entry.name;
    if (protectedSet.has(name)) continue;
    const hard = hardExclusionReason(name);
    if (hard) {
      excluded.push({ path: entry.kind === "directory" ? `${name}/` : name, reason: hard });
      continue;
    }
    if ((OPTIONAL_FOLDERS as readonly string[]).includes(name) && entry.kind === "directory") {
      if (include.includes(name as OptionalFolder)) await walk(name);
      else excluded.push({ path: `${name}/`, reason: `optional folder not requested (--include ${name})` });
      continue;
    }
    if (entry.kind === "directory" && ["events", "webhooks", "alerts"].includes(name)) {
      for (const inner of (await fs.readdir(join(dir, name))).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const path = `${name}/${inner.name}`;
        if (protectedSet.has(path)) continue;
        excluded.push({
          path: inner.kind === "directory" ? `${path}/` : path,
          reason: hardExclusionReason(path) ?? "not a protected file (policy §2)",
        });
      }
      continue;
    }
    if (entry.kind === "symlink") skipped.push({ path: name, reason: "symbolic link (never followed)" });
    else
      excluded.push({
        path: entry.kind === "directory" ? `${name}/` : name,
        reason: "not a protected file (policy §2)",
      });
  }

  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { contextDir: dir, files, absent, excluded, skipped };
}
