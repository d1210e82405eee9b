import type { FileStat, FileSystem } from "../fs/types.js";
import { lstatOrNull } from "../util/optional-reads.js";
import { UsageError } from "../errors.js";
import type { ManifestEntryNote } from "../manifest/schema.js";
import {
  hardExclusion,
  OPTIONAL_FOLDERS,
  PROTECTED_FILES,
  type HardExclusionRule,
  type OptionalFolder,
} from "../policy/selection.js";
import { join } from "../util/paths.js";
import { lstatInside } from "../util/no-follow.js";

export interface PlannedFile {
  path: string;
  stat: FileStat;
}

/**
 * The rule that decided a path, as a stable id: a protected file (policy §2), an optional folder
 * asked for, a never-backed-up file (policy §3, by its rule), anything else in the context, an
 * optional folder not asked for, or a link or special file that is never followed.
 */
export type PathRule =
  | "protected"
  | `optional:${OptionalFolder}`
  | `excluded:${HardExclusionRule}`
  | "excluded:not-protected"
  | `excluded:not-requested:${OptionalFolder}`
  | "skipped:symlink"
  | "skipped:under-link"
  | "skipped:not-regular-file";

/** One path of the plan: what the snapshot does with it, the rule that decided, and that rule in words. */
export interface PathDecision {
  path: string;
  action: "include" | "absent" | "exclude" | "skip";
  rule: PathRule;
  reason: string;
  /** bytes, for a file that is included */
  size: number | null;
}

/** What a snapshot of one context will read, before anything is read: a value `--dry-run` can print. */
export interface SnapshotContents {
  contextDir: string;
  files: PlannedFile[];
  absent: string[];
  excluded: ManifestEntryNote[];
  skipped: ManifestEntryNote[];
  /** every path above with its rule: included files, absent protected files, exclusions, skips */
  decisions: PathDecision[];
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
  // the manifest records excluded and skipped paths with their reason only; the rule id rides beside
  const ruleOf = new Map<PlannedFile | ManifestEntryNote, PathRule>();
  const take = (path: string, stat: FileStat, rule: PathRule) => {
    const file = { path, stat };
    files.push(file);
    ruleOf.set(file, rule);
  };
  const exclude = (path: string, rule: PathRule, reason: string) => {
    const note = { path, reason };
    excluded.push(note);
    ruleOf.set(note, rule);
  };
  const excludeHard = (path: string, hard: { rule: HardExclusionRule; reason: string }) =>
    exclude(path, `excluded:${hard.rule}`, hard.reason);
  const skip = (path: string, rule: PathRule, reason: string) => {
    const note = { path, reason };
    skipped.push(note);
    ruleOf.set(note, rule);
  };
  const skipEntry = (path: string, kind: string) =>
    kind === "symlink"
      ? skip(path, "skipped:symlink", "symbolic link (never followed)")
      : skip(path, "skipped:not-regular-file", `not a regular file (${kind})`);

  for (const path of PROTECTED_FILES) {
    // every component checked, not only the last: a symlinked events/ is never read through
    const inside = await lstatInside(fs, dir, path);
    if (inside?.link !== undefined) {
      skip(
        path,
        "skipped:under-link",
        inside.kind === "symlink"
          ? `under symbolic link ${inside.link} (never followed)`
          : `under ${inside.link}, which is not a folder (${inside.kind})`,
      );
      continue;
    }
    const stat = inside?.stat ?? null;
    if (!stat) absent.push(path);
    else if (stat.kind === "file") take(path, stat, "protected");
    else skipEntry(path, stat.kind);
  }

  // Iterative: a folder nested thousands of levels deep must not exhaust the stack.
  const walk = async (folder: OptionalFolder): Promise<void> => {
    const pending: string[] = [folder];
    while (pending.length > 0) {
      const rel = pending.shift()!;
      const below: string[] = [];
      for (const entry of (await fs.readdir(join(dir, rel))).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const path = `${rel}/${entry.name}`;
        const hard = hardExclusion(path);
        if (hard) excludeHard(entry.kind === "directory" ? `${path}/` : path, hard);
        else if (entry.kind === "directory") below.push(path);
        else if (entry.kind === "file") take(path, await fs.lstat(join(dir, path)), `optional:${folder}`);
        else skipEntry(path, entry.kind);
      }
      pending.unshift(...below);
    }
  };

  // Top level and the protected folders: explain everything that is not taken.
  const topLevel = (await fs.readdir(dir)).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of topLevel) {
    const name = entry.name;
    if (protectedSet.has(name)) continue;
    const hard = hardExclusion(name);
    if (hard) {
      excludeHard(entry.kind === "directory" ? `${name}/` : name, hard);
      continue;
    }
    if ((OPTIONAL_FOLDERS as readonly string[]).includes(name) && entry.kind === "directory") {
      const folder = name as OptionalFolder;
      if (include.includes(folder)) await walk(folder);
      else
        exclude(
          `${name}/`,
          `excluded:not-requested:${folder}`,
          `optional folder not requested (--include ${name})`,
        );
      continue;
    }
    if (entry.kind === "directory" && ["events", "webhooks", "alerts"].includes(name)) {
      for (const inner of (await fs.readdir(join(dir, name))).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const path = `${name}/${inner.name}`;
        if (protectedSet.has(path)) continue;
        const innerPath = inner.kind === "directory" ? `${path}/` : path;
        const innerHard = hardExclusion(path);
        if (innerHard) excludeHard(innerPath, innerHard);
        else exclude(innerPath, "excluded:not-protected", "not a protected file (policy §2)");
      }
      continue;
    }
    if (entry.kind === "symlink") skip(name, "skipped:symlink", "symbolic link (never followed)");
    else
      exclude(
        entry.kind === "directory" ? `${name}/` : name,
        "excluded:not-protected",
        "not a protected file (policy §2)",
      );
  }

  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const decisions: PathDecision[] = [
    ...files.map((f): PathDecision => {
      const rule = ruleOf.get(f)!;
      return {
        path: f.path,
        action: "include",
        rule,
        reason:
          rule === "protected"
            ? "protected file (policy §2)"
            : `optional folder asked for (--include ${rule.slice("optional:".length)})`,
        size: f.stat.size,
      };
    }),
    ...absent.map((path): PathDecision => ({
      path,
      action: "absent",
      rule: "protected",
      reason: "protected file not present in the context",
      size: null,
    })),
    ...excluded.map((e): PathDecision => ({
      path: e.path,
      action: "exclude",
      rule: ruleOf.get(e)!,
      reason: e.reason,
      size: null,
    })),
    ...skipped.map((e): PathDecision => ({
      path: e.path,
      action: "skip",
      rule: ruleOf.get(e)!,
      reason: e.reason,
      size: null,
    })),
  ];
  return { contextDir: dir, files, absent, excluded, skipped, decisions };
}
