import { createHash } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { contextBackupDir, join } from "../util/paths.js";
import { readdirOrEmpty, readTextOrNull } from "../util/optional-reads.js";
import { verifySignature } from "../signing/sshsig.js";
import { isNotFound } from "../errors.js";
import { readSmallObject } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";

/**
 * Incident and drill records form one hash chain per context (issue 24 §2): each record names the
 * one written before it (`previous`: its file, relative to the context's backup folder, and its
 * sha256), so an edited or deleted record breaks the chain. Its head (the record no other one
 * names) is copied into every tick's status record, so deleting the newest record shows too.
 * Records written before this version carry no `previous` and stay outside the chain.
 */
export const RECORD_FOLDERS = ["incidents", "drills"] as const;

export interface RecordLink {
  file: string;
  sha256: string;
}

interface ChainedRecord extends RecordLink {
  previous: RecordLink | null;
  /** what its `<record>.sig` says: none when it has none (written by a host without a signing key) */
  signature: "valid" | "invalid" | "none";
}

/** Where a context's records are read from: the backup root folder through fs, or a repository's storage. */
interface RecordSource {
  /** the record files of a folder (incidents, drills): names ending in .json, no dot-files */
  names(folder: string): Promise<string[]>;
  read(folder: string, name: string): Promise<Buffer>;
  readText(folder: string, name: string): Promise<string | null>;
}

function folderSource(fs: FileSystem, backupRoot: string, context: string): RecordSource {
  const base = contextBackupDir(backupRoot, context);
  return {
    names: async (folder) =>
      (await readdirOrEmpty(fs, join(base, folder)))
        .filter((e) => e.kind === "file" && e.name.endsWith(".json") && !e.name.startsWith("."))
        .map((e) => e.name),
    read: async (folder, name) => Buffer.from(await fs.readFile(join(base, folder, name))),
    readText: (folder, name) => readTextOrNull(fs, join(base, folder, name)),
  };
}

/** The records as objects of a repository: `<context>/incidents/<name>`, `<context>/drills/<name>`. */
function storageSource(storage: ObjectStorage, context: string): RecordSource {
  const key = (folder: string, name: string) => `${context}/${folder}/${name}`;
  return {
    names: async (folder) => {
      const out: string[] = [];
      for await (const o of storage.list(`${context}/${folder}/`, { shallow: true, keysOnly: true })) {
        const name = o.key.slice(`${context}/${folder}/`.length);
        if (name.endsWith(".json") && !name.startsWith(".")) out.push(name);
      }
      return out;
    },
    read: async (folder, name) => {
      // the bytes as stored: the chain names their sha256
      const chunks: Buffer[] = [];
      for await (const c of await storage.get(key(folder, name))) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    },
    readText: async (folder, name) => {
      try {
        return await readSmallObject(storage, key(folder, name));
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },
  };
}

async function chainedRecords(source: RecordSource): Promise<ChainedRecord[]> {
  const out: ChainedRecord[] = [];
  for (const folder of RECORD_FOLDERS)
    for (const name of await source.names(folder)) {
      const bytes = await source.read(folder, name);
      let previous: RecordLink | null | undefined;
      try {
        previous = (JSON.parse(bytes.toString("utf8")) as { previous?: RecordLink | null }).previous;
      } catch {
        previous = undefined;
      }
      if (previous === undefined) continue; // before the chain (or unreadable: the walk reports it)
      const sig = await source.readText(folder, `${name}.sig`);
      out.push({
        file: `${folder}/${name}`,
        sha256: createHash("sha256").update(bytes).digest("hex"),
        previous,
        signature:
          sig === null ? "none" : verifySignature(sig, bytes).state === "valid" ? "valid" : "invalid",
      });
    }
  return out;
}

/** The newest record of the chain: the one no other names as its previous (null: no chained record yet). */
export async function recordChainHead(
  fs: FileSystem,
  backupRoot: string,
  context: string,
): Promise<RecordLink | null> {
  return headOf(await chainedRecords(folderSource(fs, backupRoot, context)));
}

/** recordChainHead over a repository's storage (the records as `<context>/incidents/…`, `<context>/drills/…`). */
export async function recordChainHeadIn(storage: ObjectStorage, context: string): Promise<RecordLink | null> {
  return headOf(await chainedRecords(storageSource(storage, context)));
}

function headOf(all: ChainedRecord[]): RecordLink | null {
  const named = new Set(all.filter((r) => r.previous).map((r) => r.previous!.file));
  const tips = all.filter((r) => !named.has(r.file)).sort((a, b) => (a.file < b.file ? -1 : 1));
  const tip = tips.at(-1);
  return tip ? { file: tip.file, sha256: tip.sha256 } : null;
}

export interface RecordChainCheck {
  ok: boolean;
  length: number;
  head: RecordLink | null;
  problems: string[];
}

/**
 * Walk the chain from its head: every link present with the sha256 its successor names; one head
 * only; every signed record's signature matching its bytes; and the head the last tick saw (when
 * given) and the heads copied offsite (`offsiteHeads`) still on the chain.
 */
export async function verifyRecordChain(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  lastSeenHead?: RecordLink | null,
  offsiteHeads: readonly { where: string; head: RecordLink | null }[] = [],
): Promise<RecordChainCheck> {
  const all = await chainedRecords(folderSource(fs, backupRoot, context));
  const byFile = new Map(all.map((r) => [r.file, r]));
  const named = new Set(all.filter((r) => r.previous).map((r) => r.previous!.file));
  const tips = all.filter((r) => !named.has(r.file)).sort((a, b) => (a.file < b.file ? -1 : 1));
  const problems: string[] = [];
  if (tips.length > 1)
    problems.push(
      `the chain forks: ${tips.map((t) => t.file).join(", ")} each claim to be the newest record`,
    );
  const head = tips.at(-1) ?? null;
  let length = 0;
  const onChain = new Set<string>();
  for (let r: ChainedRecord | undefined = head ?? undefined; r;) {
    length++;
    onChain.add(r.file);
    if (!r.previous) break;
    const prev = byFile.get(r.previous.file);
    if (!prev) {
      problems.push(`${r.file} follows ${r.previous.file}, which is gone`);
      break;
    }
    if (prev.sha256 !== r.previous.sha256) {
      problems.push(
        `${r.previous.file} changed after ${r.file} was written (sha256 ${prev.sha256}, recorded ${r.previous.sha256})`,
      );
      break;
    }
    r = prev;
  }
  for (const r of all)
    if (r.signature === "invalid")
      problems.push(`${r.file} does not match its signature (${r.file}.sig): it changed after it was signed`);
  const seenHeads = [
    ...(lastSeenHead
      ? [{ head: lastSeenHead, newest: "when the last tick ran", since: "the last tick saw it" }]
      : []),
    ...offsiteHeads.flatMap((o) =>
      o.head
        ? [{ head: o.head, newest: `as copied to ${o.where}`, since: `it was copied to ${o.where}` }]
        : [],
    ),
  ];
  for (const { head: seenHead, newest, since } of seenHeads) {
    const seen = byFile.get(seenHead.file);
    if (!seen) problems.push(`${seenHead.file}, the newest record ${newest}, is gone`);
    else if (seen.sha256 !== seenHead.sha256) problems.push(`${seenHead.file} changed since ${since}`);
    else if (!onChain.has(seen.file)) problems.push(`${seenHead.file} is no longer on the chain`);
  }
  return {
    ok: problems.length === 0,
    length,
    head: head ? { file: head.file, sha256: head.sha256 } : null,
    problems,
  };
}
