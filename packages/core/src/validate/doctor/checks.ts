import { workTreeOf } from "../../policy/work-tree.js";
import { readBlock } from "../../records/block.js";
import { join } from "../../util/paths.js";
import { CONTEXT_TYPES } from "../shapes.js";
import type { DoctorRun } from "./facts.js";
import type { DoctorCheck } from "./types.js";

/** One doctor check: its result, or null when it does not apply to this run. */
export type DoctorCheckFn = (run: DoctorRun) => Promise<DoctorCheck | null>;

const check = (name: string, ok: boolean, detail: string): DoctorCheck => ({ name, ok, detail });

export async function stateRootResolved(run: DoctorRun): Promise<DoctorCheck> {
  const exists = await run.rootExists();
  return check(
    "state_root_resolved",
    run.options.stateRoot.startsWith("/") && exists,
    exists ? `context folder ${run.dir}` : `context folder ${run.dir} does not exist`,
  );
}

/** si's own doctor check: the state root is not inside a git work tree (unless si is told to allow it). */
export async function stateRootOutsideRepo(run: DoctorRun): Promise<DoctorCheck> {
  const { stateRoot, allowRepoState } = run.options;
  const repo = await workTreeOf(run.fs, stateRoot);
  return check(
    "state_root_outside_repo",
    !repo || allowRepoState === true,
    repo
      ? `state root ${stateRoot} is inside git repository ${repo}${allowRepoState ? " (allowed by SI_PAAS_ALLOW_REPO_STATE)" : ""}`
      : "state root is outside any git repository",
  );
}

export async function stateFilesParse(run: DoctorRun): Promise<DoctorCheck> {
  const { problems, present } = await run.stateFiles();
  return check(
    "state_files_parse",
    problems.length === 0,
    problems.length ? problems.join("; ") : `${present.length} state files parse with the si paas shapes`,
  );
}

/** `context show`: fails when config.json is missing or not JSON, or names another context or an unknown type. */
export async function contextShow(run: DoctorRun): Promise<DoctorCheck> {
  const { context } = run.options;
  const show = await run.contextShow();
  if (!show) return check("context_show", false, `config.json in ${run.dir} is missing or not valid JSON`);
  const typeKnown = (CONTEXT_TYPES as readonly string[]).includes(show.type);
  return check(
    "context_show",
    show.name === context && typeKnown,
    show.name !== context
      ? `config.json names context ${JSON.stringify(show.name)}, expected ${JSON.stringify(context)}`
      : typeKnown
        ? `context ${context} of type ${show.type}`
        : `unknown context type ${JSON.stringify(show.type)}`,
  );
}

/** The vault file config.json names is outside any git work tree; only when config.json resolves. */
export async function contextVaultOutsideRepo(run: DoctorRun): Promise<DoctorCheck | null> {
  const show = await run.contextShow();
  if (!show) return null;
  const vaultFile = show.vault_file.startsWith("/") ? show.vault_file : join(run.dir, show.vault_file);
  const vaultRepo = await workTreeOf(run.fs, vaultFile);
  return check(
    "context_vault_outside_repo",
    !vaultRepo,
    vaultRepo
      ? `vault file ${vaultFile} is inside git repository ${vaultRepo}`
      : `vault file ${vaultFile} is outside any git repository`,
  );
}

/** `events list`: every log readable line by line; the newest records resolve. */
export async function eventsReadable(run: DoctorRun): Promise<DoctorCheck> {
  const events = await run.events();
  if (!events.ok) return check("events_readable", false, `event logs unreadable: ${events.error.message}`);
  const { listed } = events;
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
  return check(
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
      : `${listed.logs.filter((l) => l.present).length} logs read from their end; newest ${listed.records.length} listed`,
  );
}

export async function plaintextSecrets(run: DoctorRun): Promise<DoctorCheck> {
  const { secretFindings, provenSkipped, acknowledged } = await run.tree();
  const acked = acknowledged
    ? ` (${acknowledged} acknowledged finding${acknowledged === 1 ? "" : "s"}: rotated, per secretAcknowledged)`
    : "";
  return check(
    "repo_plaintext_secret_exposure",
    secretFindings.length === 0,
    secretFindings.length
      ? `plaintext secret material: ${secretFindings.slice(0, 10).join(", ")}${acked}`
      : `no plaintext secret in state files${provenSkipped ? ` (${provenSkipped} restored files matched their manifest sha256 and were scanned at snapshot time by the same rules)` : ""}${acked}`,
  );
}

export async function permissions(run: DoctorRun): Promise<DoctorCheck> {
  const { modeProblems } = await run.tree();
  return check(
    "permissions",
    modeProblems.length === 0,
    modeProblems.length
      ? `expected 0700 folders and 0600 files: ${modeProblems.slice(0, 10).join(", ")}`
      : "folders 0700, files 0600",
  );
}

/** No block marker; skipped for the restore that is about to write one. */
export async function notBlocked(run: DoctorRun): Promise<DoctorCheck | null> {
  if (run.options.ignoreBlock) return null;
  const block = await readBlock(run.fs, run.options.stateRoot, run.options.context);
  return check(
    "not_blocked",
    block === null,
    block ? `blocked since ${block.blockedAt} (ticket ${block.ticket}): ${block.reason}` : "no block marker",
  );
}
