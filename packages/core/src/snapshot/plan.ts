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
import { redactText } from "../policy/secrets.js";
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
  | "excluded:secret-in-name"
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
  /**
   * Paths that hold a credential (a release note named `notes-ghp_….txt`), as recorded: redacted.
   * Such a file is left out, and every list above names it by its redacted path only.
   */
  secretNames: string[];
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
      `context ${context} at ${dir} is a ${stat.kind === "symlink" ? "symbolic link" : stat.kind}, not a folder: it is not backed up`,
      {
        path: dir,
        remediation:
          stat.kind === "symlink"
            ? "paas-backup never reads through symbolic links: move the folder the link points to into its place (or point --state-root at the real state root)."
            : "Point --state-root at the real state root; paas-backup never follows symbolic links.",
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
  const planner = new ContentsPlanner(fs, dir, include);
  await planner.planProtectedFiles();
  await planner.planTopLevel();
  planner.keepNamesClean();
  return planner.result();
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : 1);
const PROTECTED_FOLDERS = ["events", "webhooks", "alerts"];

/** One plan in the making: the lists it fills are fields; each way a path is decided is a method. */
class ContentsPlanner {
  readonly files: PlannedFile[] = [];
  readonly absent: string[] = [];
  readonly excluded: ManifestEntryNote[] = [];
  readonly skipped: ManifestEntryNote[] = [];
  private readonly protectedSet = new Set<string>(PROTECTED_FILES);
  // the manifest records excluded and skipped paths with their reason only; the rule id rides beside
  private readonly ruleOf = new Map<PlannedFile | ManifestEntryNote, PathRule>();

  constructor(
    private readonly fs: FileSystem,
    private readonly dir: string,
    private readonly include: readonly OptionalFolder[],
  ) {}

  private take(path: string, stat: FileStat, rule: PathRule): void {
    const file = { path, stat };
    this.files.push(file);
    this.ruleOf.set(file, rule);
  }

  private exclude(path: string, rule: PathRule, reason: string): void {
    const note = { path, reason };
    this.excluded.push(note);
    this.ruleOf.set(note, rule);
  }

  /** Policy §3 comes first, wherever the path is: true when it kept the path out. */
  private excludedByPolicy(path: string, isFolder: boolean): boolean {
    const hard = hardExclusion(path);
    if (hard) this.exclude(isFolder ? `${path}/` : path, `excluded:${hard.rule}`, hard.reason);
    return hard !== null;
  }

  private skip(path: string, rule: PathRule, reason: string): void {
    const note = { path, reason };
    this.skipped.push(note);
    this.ruleOf.set(note, rule);
  }

  private skipEntry(path: string, kind: string): void {
    if (kind === "symlink") this.skip(path, "skipped:symlink", "symbolic link (never followed)");
    else this.skip(path, "skipped:not-regular-file", `not a regular file (${kind})`);
  }

  private async readdirSorted(rel: string) {
    return (await this.fs.readdir(rel ? join(this.dir, rel) : this.dir)).sort(byName);
  }

  /** The ten files of policy §2: taken, absent, or skipped when a link is on the way. */
  async planProtectedFiles(): Promise<void> {
    for (const path of PROTECTED_FILES) {
      // every component checked, not only the last: a symlinked events/ is never read through
      const inside = await lstatInside(this.fs, this.dir, path);
      if (inside?.link !== undefined) {
        this.skip(
          path,
          "skipped:under-link",
          inside.kind === "symlink"
            ? `under symbolic link ${inside.link} (never followed)`
            : `under ${inside.link}, which is not a folder (${inside.kind})`,
        );
        continue;
      }
      const stat = inside?.stat ?? null;
      if (!stat) this.absent.push(path);
      else if (stat.kind === "file") this.take(path, stat, "protected");
      else this.skipEntry(path, stat.kind);
    }
  }

  /** Top level and the protected folders: explain everything that is not taken. */
  async planTopLevel(): Promise<void> {
    for (const entry of await this.readdirSorted("")) {
      const name = entry.name;
      const isFolder = entry.kind === "directory";
      if (this.protectedSet.has(name) || this.excludedByPolicy(name, isFolder)) continue;
      if (isFolder && (OPTIONAL_FOLDERS as readonly string[]).includes(name))
        await this.planOptionalFolder(name as OptionalFolder);
      else if (isFolder && PROTECTED_FOLDERS.includes(name)) await this.planProtectedFolder(name);
      else if (entry.kind === "symlink") this.skip(name, "skipped:symlink", "symbolic link (never followed)");
      else
        this.exclude(
          isFolder ? `${name}/` : name,
          "excluded:not-protected",
          "not a protected file (policy §2)",
        );
    }
  }

  /** An optional folder: walked when asked for, else left out as a whole. */
  private async planOptionalFolder(folder: OptionalFolder): Promise<void> {
    if (!this.include.includes(folder)) {
      this.exclude(
        `${folder}/`,
        `excluded:not-requested:${folder}`,
        `optional folder not requested (--include ${folder})`,
      );
      return;
    }
    // Iterative: a folder nested thousands of levels deep must not exhaust the stack.
    const pending: string[] = [folder];
    while (pending.length > 0) {
      const rel = pending.shift()!;
      const below: string[] = [];
      for (const entry of await this.readdirSorted(rel)) {
        const path = `${rel}/${entry.name}`;
        if (this.excludedByPolicy(path, entry.kind === "directory")) continue;
        if (entry.kind === "directory") below.push(path);
        else if (entry.kind === "file")
          this.take(path, await this.fs.lstat(join(this.dir, path)), `optional:${folder}`);
        else this.skipEntry(path, entry.kind);
      }
      pending.unshift(...below);
    }
  }

  /** events/, webhooks/, alerts/: only their protected files go in; the rest is named. */
  private async planProtectedFolder(name: string): Promise<void> {
    for (const inner of await this.readdirSorted(name)) {
      const path = `${name}/${inner.name}`;
      const isFolder = inner.kind === "directory";
      if (this.protectedSet.has(path) || this.excludedByPolicy(path, isFolder)) continue;
      this.exclude(
        isFolder ? `${path}/` : path,
        "excluded:not-protected",
        "not a protected file (policy §2)",
      );
    }
  }

  readonly secretNames: string[] = [];

  /**
   * Names are data (issue 21 §3): a path the secret scanner finds a credential in is left out and
   * named by its redacted path, so no manifest (inner or sidecar), output or offsite object
   * carries it. The snapshot reports each one like a redaction (rule secret-in-name, exit 9).
   */
  keepNamesClean(): void {
    const files = this.files.splice(0);
    for (const f of files) {
      const clean = redactText(f.path);
      if (clean === f.path) this.files.push(f);
      else {
        this.secretNames.push(clean);
        this.exclude(clean, "excluded:secret-in-name", "its name holds a credential (secret-in-name)");
      }
    }
    for (const note of [...this.excluded, ...this.skipped]) {
      const clean = redactText(note.path);
      if (clean === note.path) continue;
      note.path = clean;
      this.secretNames.push(clean);
    }
    for (let i = 0; i < this.absent.length; i++) this.absent[i] = redactText(this.absent[i]!);
  }

  /** The lists, files in path order, and one decision per path with its rule. */
  result(): SnapshotContents {
    const { files, absent, excluded, skipped, ruleOf } = this;
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const note =
      (action: "exclude" | "skip") =>
      (e: ManifestEntryNote): PathDecision => ({
        path: e.path,
        action,
        rule: ruleOf.get(e)!,
        reason: e.reason,
        size: null,
      });
    const decisions: PathDecision[] = [
      ...files.map((f): PathDecision => {
        const rule = ruleOf.get(f)!;
        const reason =
          rule === "protected"
            ? "protected file (policy §2)"
            : `optional folder asked for (--include ${rule.slice("optional:".length)})`;
        return { path: f.path, action: "include", rule, reason, size: f.stat.size };
      }),
      ...absent.map((path): PathDecision => ({
        path,
        action: "absent",
        rule: "protected",
        reason: "protected file not present in the context",
        size: null,
      })),
      ...excluded.map(note("exclude")),
      ...skipped.map(note("skip")),
    ];
    return {
      contextDir: this.dir,
      files,
      absent,
      excluded,
      skipped,
      decisions,
      secretNames: this.secretNames,
    };
  }
}
