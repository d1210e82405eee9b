import type { FileSystem } from "../fs/types.js";
import { recordChainHead } from "./chain.js";
import { ExitCode, PaasBackupError, isNotFound } from "../errors.js";
import { contextBackupDir, join } from "../util/paths.js";
import { createFileExclusive, writeFileAtomic } from "../util/atomic.js";
import type { SigningKey } from "../signing/sshsig.js";
import { readdirOrEmpty } from "../util/optional-reads.js";

/** One validation check as records keep it (doctor's checks have this shape). */
export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}
import { redactText } from "../policy/secrets.js";

/** Event lines a restore carried over from the live logs (restore/event-tails.ts, issue 20). */
export interface EventLines {
  /** the log, e.g. "events/audit.jsonl" */
  path: string;
  action: "append" | "keep";
  /** why this action */
  reason: string;
  lines: number;
  bytes: number;
  /** of the bytes appended, or of the kept file's content */
  sha256: string;
  /** keep: the file of the incident that holds the lines (set once written) */
  keptIn?: string;
}

/** Policy §7.3: every restore, successful or not, leaves this record in <backup_root>/<context>/incidents/. */
export interface IncidentRecord {
  schema: "paas-backup/incident@1";
  kind: "restore" | "drill" | "rollback" | "unblock" | "recovery";
  ticket: string;
  context: string;
  stateRoot: string;
  snapshot: { id: string; sha256: string | null; kind: string } | null;
  requestedSnapshot: string;
  fallback: { used: boolean; from?: string; reason?: string };
  operator: string;
  startedAt: string;
  endedAt: string;
  dryRun: boolean;
  movedAsideTo: string | null;
  vault: unknown;
  doctor: { ok: boolean; checks: CheckResult[] } | null;
  externalDoctor: { command: string; ok: boolean; exitCode: number | null; detail: string } | null;
  /** unblock --override-doctor: the doctor the block recorded, passed over for externalDoctor's */
  doctorOverride?: { recorded: string; used: string };
  outcome:
    | "restored"
    | "blocked"
    | "refused"
    | "failed"
    | "dry-run"
    | "rolled-back"
    | "unblocked"
    | "drill-passed"
    | "drill-failed"
    | "recovered";
  error: { code: string; message: string } | null;
  /** the record written before this one (incidents and drills of the context), by file and sha256: a hash chain */
  previous?: { file: string; sha256: string } | null;
  /** restore: what the signatures of each link of the chain said (issue 24 §2) */
  signatures?: { id: string; state: string; principal?: string; fingerprint?: string }[];
  /** the operator accepted unsigned snapshots dated after the repository began signing (--allow-unsigned) */
  allowUnsigned?: boolean;
  /** restore: what it replaces and what it leaves as it is (issue 10 §1) */
  scope?: {
    mode: "snapshot" | "exact" | "paths";
    paths: string[];
    changed: string[];
    added: string[];
    movedAside: string[];
    kept: string[];
  };
  /** restore: the live event lines written since the snapshot, appended to the restored logs or kept here (issue 20) */
  eventLines?: EventLines[];
  /** recovery: the interrupted operation and what was done about it */
  recovery?: {
    operation: string;
    action: "completed" | "undone";
    phase: string;
    interruptedAt: string;
    message: string;
  };
}

/** The one way to start an incident record: every field present, the outcome pessimistic until known. */
export function newIncidentRecord(
  fields: Pick<IncidentRecord, "kind" | "ticket" | "context" | "stateRoot" | "operator" | "startedAt"> &
    Partial<IncidentRecord>,
): IncidentRecord {
  return {
    schema: "paas-backup/incident@1",
    snapshot: null,
    requestedSnapshot: "",
    fallback: { used: false },
    endedAt: "",
    dryRun: false,
    movedAsideTo: null,
    vault: null,
    doctor: null,
    externalDoctor: null,
    outcome: "failed",
    error: null,
    ...fields,
  };
}

/** the signature beside a signed record: `<record>.json.sig` */
export const RECORD_SIGNATURE_SUFFIX = ".sig";

function safeName(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 80);
}

export async function writeIncident(
  fs: FileSystem,
  backupRoot: string,
  record: IncidentRecord,
  folder = "incidents",
  signer?: SigningKey,
): Promise<string> {
  const dir = join(contextBackupDir(backupRoot, record.context), folder);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // one hash chain through incidents and drills: this record names the newest one before it
  record = { ...record, previous: await recordChainHead(fs, backupRoot, record.context) };
  const stamp = record.startedAt.replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const base = `${stamp}-${safeName(record.kind)}-${safeName(record.ticket)}`;
  // An error message or a doctor detail can quote state: no secret value reaches the record.
  const content = redactText(`${JSON.stringify(record, null, 2)}\n`);
  // Signed like a manifest (issue 24 §2): `ssh-keygen -Y verify -n paas-backup -s <record>.sig`
  // checks who wrote it. Signed before the record appears, so the signature is ready to land
  // right after it; a kill between the two leaves a record without its .sig, never a wrong one.
  const signature = signer ? signer.sign(content) : null;
  // Two runs with the same ticket in the same second each keep their record: the name is taken
  // exclusively (whole content linked into place, never replacing), the second gets "-2", and so on.
  await sweepRecordTemporaries(fs, dir, Date.parse(record.startedAt));
  for (let n = 1; n < 10_000; n++) {
    const path = join(dir, `${base}${n === 1 ? "" : `-${n}`}.json`);
    if (await createFileExclusive(fs, path, content)) {
      if (signature) await writeFileAtomic(fs, `${path}${RECORD_SIGNATURE_SUFFIX}`, signature);
      return path;
    }
  }
  throw new PaasBackupError(
    "PAAS_BACKUP_RECORD_NAME_TAKEN",
    ExitCode.unexpected,
    `more than 10000 ${folder} records named ${base} in ${dir}`,
    {
      path: dir,
      remediation:
        "Something keeps writing records under this name: look at the folder, move old records aside, and report it.",
      stage: "record",
    },
  );
}

/** temporaries of record writes killed before their link (".<name>.json.<uuid>.tmp"), once an hour old */
async function sweepRecordTemporaries(fs: FileSystem, dir: string, now: number): Promise<void> {
  if (!Number.isFinite(now)) return;
  for (const e of await readdirOrEmpty(fs, dir)) {
    if (e.kind !== "file" || !e.name.startsWith(".") || !e.name.endsWith(".tmp")) continue;
    try {
      if (now - (await fs.lstat(join(dir, e.name))).mtimeMs > 3600_000)
        await fs.rm(join(dir, e.name), { force: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

export async function listRecords(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  folder: string,
): Promise<IncidentRecord[]> {
  return (await listRecordFiles(fs, backupRoot, context, folder)).map((r) => r.record);
}

/** Each readable record of a folder with the file it was read from, oldest name first. */
export async function listRecordFiles(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  folder: string,
): Promise<{ file: string; record: IncidentRecord; signed: boolean }[]> {
  const dir = join(contextBackupDir(backupRoot, context), folder);
  const entries = await readdirOrEmpty(fs, dir);
  const names = new Set(entries.map((e) => e.name));
  const out: { file: string; record: IncidentRecord; signed: boolean }[] = [];
  for (const e of entries
    .filter((e) => e.kind === "file" && e.name.endsWith(".json"))
    .sort((a, b) => (a.name < b.name ? -1 : 1))) {
    try {
      out.push({
        file: join(dir, e.name),
        record: JSON.parse(
          Buffer.from(await fs.readFile(join(dir, e.name))).toString("utf8"),
        ) as IncidentRecord,
        // a signature beside it (whether it still matches is the record chain's check)
        signed: names.has(`${e.name}${RECORD_SIGNATURE_SUFFIX}`),
      });
    } catch {
      // a record we cannot parse is skipped, not fatal: the others still tell the story
    }
  }
  return out;
}
