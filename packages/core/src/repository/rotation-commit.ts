import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError } from "../errors.js";
import { writeFileAtomic } from "../util/atomic.js";
import { sha256Hex } from "../util/hash.js";
import { readdirOrEmpty, readTextOrNull } from "../util/optional-reads.js";
import { contextBackupDir, join } from "../util/paths.js";
import { backupRootStorage } from "./repository.js";
import type { ObjectStorage } from "./storage.js";

/**
 * The rotation record of `keys rotate` (issue 24 §3; the job is keys/rotate.ts) and the one step of
 * it that needs no key: the commit of a re-encrypted artifact already staged, written from the
 * record. It sits with the repository so every context session can finish a commit a kill cut
 * short (withContext calls finishRotationCommits), and a snapshot is never left with its new
 * artifact beside its old checksum longer than until the next command.
 */
export const ROTATIONS_DIR = "rotations";

export type RotationPhase = "pending" | "staged" | "committing" | "done" | "skipped";

export interface RotationStep {
  id: string;
  artifact: string;
  phase: RotationPhase;
  /** why it was left as it was (skipped) */
  reason?: string;
  oldSha256: string;
  newSha256?: string;
  payloadSha256?: string;
  bytes?: number;
  recipients?: string[];
  /** committing: the small objects the commit writes, in order */
  writes?: { key: string; text: string }[];
}

export interface RotationOffsiteCopy {
  target: string;
  id: string;
  /**
   * replaced: the copy now holds the re-encrypted artifact; locked: Object Lock forbids rewriting
   * it; failed: it could not be re-encrypted (`problem` says why), and stays as it was
   */
  action: "replaced" | "locked" | "failed";
  /** locked: until when the old copy (readable by the removed recipients) stays */
  lockedUntil?: string;
  /** a copy encrypted on push (plaintext at home): encrypted again from the home artifact */
  encryptedOnPush?: true;
  /** encryptedOnPush and replaced: the recipients it is encrypted to now */
  recipients?: string[];
  /** failed: why */
  problem?: string;
}

export interface RotationRecord {
  schema: "paas-backup/rotation@1";
  id: string;
  context: string;
  startedAt: string;
  finishedAt: string | null;
  operator: string;
  add: string[];
  remove: string[];
  signer: string | null;
  /**
   * an s3:// root's rotation: each step is committed by a relocation entry in the context's log
   * (nothing in the bucket is overwritten); only keys rotate, with the bucket's lease, finishes it
   */
  relocated?: true;
  snapshots: RotationStep[];
  offsite: RotationOffsiteCopy[];
}

export function rotationsDir(backupRoot: string, context: string): string {
  return join(contextBackupDir(backupRoot, context), ROTATIONS_DIR);
}

export function rotationRecordPath(backupRoot: string, context: string, id: string): string {
  return join(rotationsDir(backupRoot, context), `${id}.json`);
}

export async function saveRotationRecord(
  fs: FileSystem,
  backupRoot: string,
  record: RotationRecord,
): Promise<void> {
  await fs.mkdir(rotationsDir(backupRoot, record.context), { recursive: true, mode: 0o700 });
  await writeFileAtomic(
    fs,
    rotationRecordPath(backupRoot, record.context, record.id),
    `${JSON.stringify(record, null, 2)}\n`,
    0o600,
    randomUUID().slice(0, 8),
  );
}

/** Every rotation record of a context, oldest first. */
export async function listRotations(
  fs: FileSystem,
  backupRoot: string,
  context: string,
): Promise<RotationRecord[]> {
  const dir = rotationsDir(backupRoot, context);
  const out: RotationRecord[] = [];
  for (const e of (await readdirOrEmpty(fs, dir)).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (e.kind !== "file" || !e.name.endsWith(".json") || e.name.startsWith(".")) continue;
    const text = await readTextOrNull(fs, join(dir, e.name));
    if (text === null) continue;
    try {
      const r = JSON.parse(text) as RotationRecord;
      if (r.schema === "paas-backup/rotation@1") out.push(r);
    } catch {
      throw new IntegrityError(
        "PAAS_BACKUP_MANIFEST_INVALID",
        `the rotation record ${join(dir, e.name)} does not parse`,
        {
          path: join(dir, e.name),
          remediation:
            "It was damaged after it was written: look at it, and move it aside once the snapshots it names verify (paas-backup verify --all).",
          stage: "rotate",
        },
      );
    }
  }
  return out;
}

export function stagingKey(context: string, rotation: string, artifactName: string): string {
  return `${context}/${ROTATIONS_DIR}/${rotation}/${artifactName}`;
}

async function putText(storage: ObjectStorage, key: string, text: string): Promise<void> {
  const data = Buffer.from(text, "utf8");
  await storage.put(key, Readable.from([data]), { sha256: sha256Hex(data), size: data.length });
}

/**
 * Write what the record says the commit of this step writes: the artifact from its staged copy,
 * then the .sha256, the manifests and the signatures, then drop the staged copy. A staged copy
 * that is gone means the commit already finished (it is removed last). Idempotent.
 */
export async function commitRotationStep(
  home: ObjectStorage,
  record: RotationRecord,
  step: RotationStep,
): Promise<void> {
  const staged = stagingKey(record.context, record.id, step.artifact);
  if (await home.head(staged)) {
    await home.put(`${record.context}/${step.artifact}`, await home.get(staged), {
      sha256: step.newSha256!,
      size: step.bytes!,
    });
    for (const w of step.writes ?? []) await putText(home, w.key, w.text);
    await home.delete(staged);
  }
  step.phase = "done";
  delete step.writes;
}

/**
 * Finish the commits a kill interrupted, for every unfinished rotation of the context. The rest of
 * the rotation (staging the others, offsite) waits for the next `keys rotate`, which has the key.
 * Returns the snapshots whose commit it finished.
 */
export async function finishRotationCommits(
  fs: FileSystem,
  backupRoot: string,
  context: string,
): Promise<string[]> {
  const finished: string[] = [];
  if ((await readdirOrEmpty(fs, rotationsDir(backupRoot, context))).length === 0) return finished;
  const home = backupRootStorage(fs, backupRoot);
  for (const record of await listRotations(fs, backupRoot, context)) {
    if (record.finishedAt !== null || record.relocated) continue;
    for (const step of record.snapshots) {
      if (step.phase !== "committing") continue;
      await commitRotationStep(home, record, step);
      await saveRotationRecord(fs, backupRoot, record);
      finished.push(step.id);
    }
  }
  return finished;
}
