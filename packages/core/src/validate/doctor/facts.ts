import { isNotFound } from "../../errors.js";
import type { FileSystem } from "../../fs/types.js";
import { hardExclusionReason, isEventLog } from "../../policy/selection.js";
import { SecretScanner, isAcknowledged } from "../../policy/secrets.js";
import { BLOCK_FILE } from "../../records/block.js";
import { lstatInside } from "../../util/no-follow.js";
import { forEachChunk } from "../../util/read-range.js";
import { contextDir, isWithin, join } from "../../util/paths.js";
import { listEvents, type EventRecord } from "../events.js";
import { STATE_FILE_SHAPES } from "../shapes.js";
import type { ContextShow, DoctorOptions } from "./types.js";

/** What the state files said: the problems found, the files present, and config.json once it parses. */
export interface StateFiles {
  problems: string[];
  present: string[];
  config: Record<string, unknown> | null;
}

/** One walk of the context folder: secret findings and mode problems, over what a backup holds. */
export interface TreeSurvey {
  secretFindings: string[];
  modeProblems: string[];
  /** files skipped by the secret scan: restored with the bytes the snapshot's scanner read */
  provenSkipped: number;
  /** findings the operator acknowledged (secretAcknowledged): rotated, so not a failure */
  acknowledged: number;
}

export type EventListing =
  { ok: true; listed: Awaited<ReturnType<typeof listEvents>> } | { ok: false; error: Error };

/**
 * What several checks read, read once per doctor run: each fact is computed the first time a check
 * asks for it, so the checks run in the order listed and touch the filesystem in that order.
 */
export class DoctorRun {
  readonly fs: FileSystem;
  readonly dir: string;
  private rootExistsOnce?: Promise<boolean>;
  private stateFilesOnce?: Promise<StateFiles>;
  private eventsOnce?: Promise<EventListing>;
  private treeOnce?: Promise<TreeSurvey>;

  constructor(readonly options: DoctorOptions) {
    this.fs = options.fs;
    this.dir = contextDir(options.stateRoot, options.context);
  }

  rootExists(): Promise<boolean> {
    return (this.rootExistsOnce ??= (async () => {
      try {
        await this.fs.lstat(this.dir);
        return true;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        return false;
      }
    })());
  }

  stateFiles(): Promise<StateFiles> {
    return (this.stateFilesOnce ??= readStateFiles(this.fs, this.dir));
  }

  /** `context show`: reads config.json only; null when it is missing or not JSON. */
  async contextShow(): Promise<ContextShow | null> {
    const { config } = await this.stateFiles();
    if (!config) return null;
    const s = (k: string) => (typeof config[k] === "string" ? (config[k] as string) : "");
    return {
      name: s("name"),
      type: s("type") || "internal-dogfood",
      state_root: s("state_root") || this.options.stateRoot,
      vault_file: s("vault_file") || join(this.dir, "vault", "secrets.env"),
      created_at: s("created_at"),
      updated_at: s("updated_at"),
    };
  }

  events(): Promise<EventListing> {
    return (this.eventsOnce ??= listEvents(this.fs, this.dir, this.options.eventsLimit ?? 20).then(
      (listed) => ({ ok: true as const, listed }),
      (err: unknown) => ({ ok: false as const, error: err as Error }),
    ));
  }

  async eventRecords(): Promise<EventRecord[]> {
    const e = await this.events();
    return e.ok ? e.listed.records : [];
  }

  tree(): Promise<TreeSurvey> {
    return (this.treeOnce ??= this.rootExists().then((exists) =>
      exists
        ? surveyTree(this.fs, this.dir, this.options)
        : { secretFindings: [], modeProblems: [], provenSkipped: 0, acknowledged: 0 },
    ));
  }
}

/** Each state file si knows, parsed with its shape; never read through a link (issue 9 §6). */
async function readStateFiles(fs: FileSystem, dir: string): Promise<StateFiles> {
  const out: StateFiles = { problems: [], present: [], config: null };
  for (const path of Object.keys(STATE_FILE_SHAPES)) {
    let text: string;
    const inside = await lstatInside(fs, dir, path);
    if (!inside) continue;
    if (inside.link !== undefined || inside.stat.kind !== "file") {
      // say what is there instead
      out.problems.push(
        `${path}: ${inside.link !== undefined ? `under ${inside.link}, a ${inside.kind}` : `a ${inside.stat.kind}`}, not a regular file (not followed)`,
      );
      continue;
    }
    try {
      text = Buffer.from(await fs.readFile(join(dir, path))).toString("utf8");
    } catch (err) {
      if (isNotFound(err)) continue;
      out.problems.push(`${path}: unreadable`);
      continue;
    }
    out.present.push(path);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      out.problems.push(`${path}: not valid JSON`);
      continue;
    }
    const result = STATE_FILE_SHAPES[path]!.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0];
      out.problems.push(
        `${path}: ${issue ? `${issue.path.join(".") || "(root)"} ${issue.message}` : "wrong shape"}`,
      );
      continue;
    }
    if (path === "config.json") out.config = parsed as Record<string, unknown>;
  }
  return out;
}

/** Secrets and permissions over what a backup holds (the vault and excluded files are si's business). */
async function surveyTree(fs: FileSystem, dir: string, options: DoctorOptions): Promise<TreeSurvey> {
  const survey: TreeSurvey = { secretFindings: [], modeProblems: [], provenSkipped: 0, acknowledged: 0 };
  const dirMode = (await fs.lstat(dir)).mode;
  if (dirMode !== 0o700) survey.modeProblems.push(`./ is ${dirMode.toString(8)}`);
  for (const entry of await walkFiles(fs, dir)) {
    if (hardExclusionReason(entry.path) || entry.path === BLOCK_FILE) continue;
    const abs = join(dir, entry.path);
    if (!isWithin(dir, abs)) continue;
    const st = await fs.lstat(abs);
    if (entry.kind === "directory") {
      if (st.mode !== 0o700) survey.modeProblems.push(`${entry.path}/ is ${st.mode.toString(8)}`);
      continue;
    }
    if (entry.kind !== "file") continue;
    if (st.mode !== 0o600) survey.modeProblems.push(`${entry.path} is ${st.mode.toString(8)}`);
    const proven = options.scannedAtSnapshot?.get(entry.path);
    if (proven?.size === st.size) {
      survey.provenSkipped++;
      continue;
    }
    // An event log a restore extended with the lines si wrote since the snapshot (restore/event-tails):
    // its first proven.size bytes are the ones verified against the manifest and scanned at snapshot
    // time, so only the lines past them are scanned (their line numbers counted from the start).
    // Scanning the whole log again was most of a restore into a context that had moved on.
    const tailFrom =
      proven && isEventLog(entry.path) && proven.size > 0 && proven.size < st.size ? proven.size : 0;
    const scanner = new SecretScanner(entry.path, { allow: options.secretAllow ?? [] });
    await forEachChunk(fs, abs, tailFrom, Number.POSITIVE_INFINITY, (chunk) => scanner.push(chunk));
    const findings = scanner.end();
    // The lines before the tail are counted only to number a finding in it: reading the proven
    // bytes of a large log just to count them was most of the doctor's time after a restore.
    let linesBefore = 0;
    if (tailFrom > 0 && findings.length > 0)
      await forEachChunk(fs, abs, 0, tailFrom, (chunk) => {
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) linesBefore++;
      });
    for (const found of findings) {
      const f = { ...found, line: found.line + linesBefore };
      if (isAcknowledged(options.secretAcknowledged ?? [], f.path, f.line, f.rule)) survey.acknowledged++;
      else survey.secretFindings.push(`${f.path}:${f.line} (${f.rule})`);
    }
  }
  return survey;
}

/** Every entry below root, depth first in directory order; iterative so no depth can exhaust the stack. */
async function walkFiles(fs: FileSystem, root: string): Promise<{ path: string; kind: string }[]> {
  const out: { path: string; kind: string }[] = [];
  const stack: { rel: string; at: number; entries: { name: string; kind: string }[] }[] = [
    { rel: "", at: 0, entries: await fs.readdir(root) },
  ];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const e = top.entries[top.at++];
    if (!e) {
      stack.pop();
      continue;
    }
    const path = top.rel ? `${top.rel}/${e.name}` : e.name;
    out.push({ path, kind: e.kind });
    if (e.kind === "directory") stack.push({ rel: path, at: 0, entries: await fs.readdir(join(root, path)) });
  }
  return out;
}
