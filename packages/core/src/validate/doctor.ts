import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { hardExclusionReason } from "../policy/selection.js";
import { SecretScanner, type SecretAllowance } from "../policy/secrets.js";
import { contextDir, isWithin, join } from "../util/paths.js";
import { STATE_FILE_SHAPES, CONTEXT_TYPES } from "./shapes.js";
import { workTreeOf } from "../policy/work-tree.js";
import { listEvents, type EventRecord } from "./events.js";
import { BLOCK_FILE, readBlock } from "../records/block.js";
import type { CheckResult } from "../records/incident.js";
import { lstatInside } from "../util/no-follow.js";
import type { ScannedFiles } from "./proven.js";

export type DoctorCheck = CheckResult;

/** si's doctor envelope (reference §7), with paas-backup's own checks added. */
export interface DoctorReport {
  ok: boolean;
  command: "doctor";
  context: string;
  mode: "live";
  count: number;
  checks: DoctorCheck[];
  /** `si paas context show` as resolved from the restored config.json */
  contextShow: {
    name: string;
    type: string;
    state_root: string;
    vault_file: string;
    created_at: string;
    updated_at: string;
  } | null;
  /** `si paas events list --limit 20` over the restored logs */
  events: EventRecord[];
}

export interface DoctorOptions {
  fs: FileSystem;
  stateRoot: string;
  context: string;
  secretAllow?: readonly SecretAllowance[];
  /** si's SI_PAAS_ALLOW_REPO_STATE, passed in by the caller */
  allowRepoState?: boolean;
  /** ignore the block marker (the restore that is about to write it asks this) */
  ignoreBlock?: boolean;
  eventsLimit?: number;
  /**
   * Files just restored whose bytes the snapshot's scanner (same rules) already read: skipped by
   * the secret scan while their size is still the one restored. See filesScannedAtSnapshot.
   */
  scannedAtSnapshot?: ScannedFiles;
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

/**
 * The post-restore validation of policy §6, as pure checks over the injected filesystem:
 * si's doctor checks (isolation from git), each state file's shape, the event logs, secrets,
 * permissions, `context show` and `events list`.
 */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const { fs, stateRoot, context } = options;
  const dir = contextDir(stateRoot, context);
  const checks: DoctorCheck[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  let rootExists = true;
  try {
    await fs.lstat(dir);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    rootExists = false;
  }
  add(
    "state_root_resolved",
    stateRoot.startsWith("/") && rootExists,
    rootExists ? `context folder ${dir}` : `context folder ${dir} does not exist`,
  );

  const repo = await workTreeOf(fs, stateRoot);
  add(
    "state_root_outside_repo",
    !repo || options.allowRepoState === true,
    repo
      ? `state root ${stateRoot} is inside git repository ${repo}${options.allowRepoState ? " (allowed by SI_PAAS_ALLOW_REPO_STATE)" : ""}`
      : "state root is outside any git repository",
  );

  let config: Record<string, unknown> | null = null;
  let contextShow: DoctorReport["contextShow"] = null;
  const shapeProblems: string[] = [];
  const present: string[] = [];
  for (const path of Object.keys(STATE_FILE_SHAPES)) {
    let text: string;
    const inside = await lstatInside(fs, dir, path);
    if (!inside) continue;
    if (inside.link !== undefined || inside.stat.kind !== "file") {
      // never read through a link (issue 9 §6): say what is there instead
      shapeProblems.push(
        `${path}: ${inside.link !== undefined ? `under ${inside.link}, a ${inside.kind}` : `a ${inside.stat.kind}`}, not a regular file (not followed)`,
      );
      continue;
    }
    try {
      text = Buffer.from(await fs.readFile(join(dir, path))).toString("utf8");
    } catch (err) {
      if (isNotFound(err)) continue;
      shapeProblems.push(`${path}: unreadable`);
      continue;
    }
    present.push(path);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      shapeProblems.push(`${path}: not valid JSON`);
      continue;
    }
    const result = STATE_FILE_SHAPES[path]!.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0];
      shapeProblems.push(
        `${path}: ${issue ? `${issue.path.join(".") || "(root)"} ${issue.message}` : "wrong shape"}`,
      );
      continue;
    }
    if (path === "config.json") config = parsed as Record<string, unknown>;
  }
  add(
    "state_files_parse",
    shapeProblems.length === 0,
    shapeProblems.length
      ? shapeProblems.join("; ")
      : `${present.length} state files parse with the si paas shapes`,
  );

  // context show: reads config.json only, fails when it is missing or not JSON.
  if (config) {
    const s = (k: string) => (typeof config![k] === "string" ? (config![k] as string) : "");
    contextShow = {
      name: s("name"),
      type: s("type") || "internal-dogfood",
      state_root: s("state_root") || stateRoot,
      vault_file: s("vault_file") || join(dir, "vault", "secrets.env"),
      created_at: s("created_at"),
      updated_at: s("updated_at"),
    };
    const typeKnown = (CONTEXT_TYPES as readonly string[]).includes(contextShow.type);
    add(
      "context_show",
      contextShow.name === context && typeKnown,
      contextShow.name !== context
        ? `config.json names context ${JSON.stringify(contextShow.name)}, expected ${JSON.stringify(context)}`
        : typeKnown
          ? `context ${context} of type ${contextShow.type}`
          : `unknown context type ${JSON.stringify(contextShow.type)}`,
    );
    const vaultFile = contextShow.vault_file.startsWith("/")
      ? contextShow.vault_file
      : join(dir, contextShow.vault_file);
    const vaultRepo = await workTreeOf(fs, vaultFile);
    add(
      "context_vault_outside_repo",
      !vaultRepo,
      vaultRepo
        ? `vault file ${vaultFile} is inside git repository ${vaultRepo}`
        : `vault file ${vaultFile} is outside any git repository`,
    );
  } else {
    add("context_show", false, `config.json in ${dir} is missing or not valid JSON`);
  }

  // events list: every log readable line by line; the newest records resolve.
  let events: EventRecord[] = [];
  try {
    const listed = await listEvents(fs, dir, options.eventsLimit ?? 20);
    events = listed.records;
    const bad = listed.logs.filter(
      (l) => l.invalidLines.length > 0 || l.invalidLinesFromEnd.length > 0 || l.notPlainFile,
    );
    const where = (l: (typeof listed.logs)[number]) =>
      [
        l.invalidLines.length ? `lines ${l.invalidLines.join(",")}` : "",
        l.invalidLinesFromEnd.length ? `lines ${l.invalidLinesFromEnd.join(",")} from the end` : "",
      ]
        .filter(Boolean)
        .join(" and ");
    add(
      "events_readable",
      bad.length === 0,
      bad.length
        ? bad
            .map((l) =>
              l.notPlainFile
                ? `${l.path}: ${l.notPlainFile}, not a regular file (not followed)`
                : `${l.path}: ${where(l)} are not JSON objects`,
            )
            .join("; ")
        : `${listed.logs.filter((l) => l.present).length} logs read from their end; newest ${events.length} listed`,
    );
  } catch (err) {
    add("events_readable", false, `event logs unreadable: ${(err as Error).message}`);
  }

  // Secrets and permissions over what a backup holds (the vault and excluded files are si's business).
  const secretFindings: string[] = [];
  const modeProblems: string[] = [];
  let provenSkipped = 0;
  if (rootExists) {
    const dirMode = (await fs.lstat(dir)).mode;
    if (dirMode !== 0o700) modeProblems.push(`./ is ${dirMode.toString(8)}`);
    for (const entry of await walkFiles(fs, dir)) {
      if (hardExclusionReason(entry.path) || entry.path === BLOCK_FILE) continue;
      const abs = join(dir, entry.path);
      if (!isWithin(dir, abs)) continue;
      const st = await fs.lstat(abs);
      if (entry.kind === "directory") {
        if (st.mode !== 0o700) modeProblems.push(`${entry.path}/ is ${st.mode.toString(8)}`);
        continue;
      }
      if (entry.kind !== "file") continue;
      if (st.mode !== 0o600) modeProblems.push(`${entry.path} is ${st.mode.toString(8)}`);
      if (options.scannedAtSnapshot?.get(entry.path)?.size === st.size) {
        provenSkipped++;
        continue;
      }
      const scanner = new SecretScanner(entry.path, options.secretAllow ?? []);
      for await (const chunk of fs.createReadStream(abs)) scanner.push(chunk as Buffer);
      for (const f of scanner.end()) secretFindings.push(`${f.path}:${f.line} (${f.rule})`);
    }
  }
  add(
    "repo_plaintext_secret_exposure",
    secretFindings.length === 0,
    secretFindings.length
      ? `plaintext secret material: ${secretFindings.slice(0, 10).join(", ")}`
      : `no plaintext secret in state files${provenSkipped ? ` (${provenSkipped} restored files matched their manifest sha256 and were scanned at snapshot time by the same rules)` : ""}`,
  );
  add(
    "permissions",
    modeProblems.length === 0,
    modeProblems.length
      ? `expected 0700 folders and 0600 files: ${modeProblems.slice(0, 10).join(", ")}`
      : "folders 0700, files 0600",
  );

  if (!options.ignoreBlock) {
    const block = await readBlock(fs, stateRoot, context);
    add(
      "not_blocked",
      block === null,
      block
        ? `blocked since ${block.blockedAt} (ticket ${block.ticket}): ${block.reason}`
        : "no block marker",
    );
  }

  const ok = checks.every((c) => c.ok);
  return { ok, command: "doctor", context, mode: "live", count: checks.length, checks, contextShow, events };
}
