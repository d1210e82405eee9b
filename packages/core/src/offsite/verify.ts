import { expectedChecksum } from "../repository/checksum.js";
import type { Immutability } from "../repository/storage.js";
import { hashObject } from "./checks.js";
import { listOffsite, type OffsiteEntry } from "./list.js";
import { readRecordIn, recordStoreOf, writeRecordIn, type OffsiteRecordsOptions } from "./record.js";
import type { OffsiteTarget } from "./types.js";

export interface OffsiteVerification {
  id: string;
  ok: boolean;
  problems: string[];
  immutable: boolean;
  immutableUntil: string | null;
  /** whether this run read and hashed the copy's bytes */
  readData: boolean;
}

/** `--read-data-subset`: a share of the copies (percent) or of their bytes (a size) per run. */
export type DataSubset = { percent: number } | { bytes: number };

/**
 * What is at the target, checked against what we recorded: removed, truncated or changed copies.
 * `deep` reads every copy's bytes; `readDataSubset` reads a rotating share per run, as restic's
 * check --read-data-subset does, so that successive runs cover every copy once per cycle; the
 * rotation lives in the offsite record in the backup root. A copy whose bytes are found wrong is
 * marked in the record, and the next push replaces it.
 */
export async function verifyOffsite(
  options: OffsiteRecordsOptions & {
    context: string;
    target: OffsiteTarget;
    clock: () => Date;
    deep?: boolean;
    readDataSubset?: DataSubset;
  },
): Promise<{
  results: OffsiteVerification[];
  immutability: Immutability;
  subset: SubsetRun | null;
}> {
  const { entries, immutability } = await listOffsite(options);
  const storage = options.target.storage;
  const results: OffsiteVerification[] = [];
  const records = recordStoreOf(options);
  const record = await readRecordIn(records, options.context, options.target);
  const now = options.clock();
  let recordChanged = false;
  // Which copies this run reads in full.
  let toRead = new Set<string>();
  let subsetInfo: SubsetRun | null = null;
  if (options.readDataSubset && !options.deep) {
    subsetInfo = chooseSubset(record, entries, options.readDataSubset, now);
    toRead = new Set(subsetInfo.readThisRun);
    recordChanged = true;
  }
  for (const e of entries) {
    if (!e.own) continue;
    // A directory target is cheap to read: always check its bytes. Object stores: metadata, or bytes with --deep / the subset.
    const readData =
      !!e.snapshot &&
      !!e.artifact &&
      (!!options.deep || !e.recorded || storage.flags.cheapReads || toRead.has(e.id));
    const problems = await problemsOf(e, readData);
    if (noteProblems(record, e, problems, readData, now)) recordChanged = true;
    results.push({
      id: e.id,
      ok: problems.length === 0,
      problems,
      immutable: e.immutable,
      immutableUntil: e.immutableUntil,
      readData,
    });
  }
  if (recordChanged) await writeRecordIn(records, options.context, options.target, record);
  return { results, immutability, subset: subsetInfo };
}

/** This run's share of a --read-data-subset cycle. */
interface SubsetRun {
  cycle: number;
  readThisRun: string[];
  leftInCycle: number;
}

type OffsiteRecord = Awaited<ReturnType<typeof readRecordIn>>;

/**
 * The copies this run reads in full: the next ones of the cycle not yet read (a new cycle once
 * every copy was), a percent of the copies or as many as fit in the byte budget (at least one).
 * The rotation is written into the record.
 */
function chooseSubset(
  record: OffsiteRecord,
  entries: OffsiteEntry[],
  subset: DataSubset,
  now: Date,
): SubsetRun {
  const readable = entries.filter((e) => e.snapshot && e.artifact && e.recorded);
  let state = record.dataSubset ?? { cycle: 1, startedAt: now.toISOString(), read: [] };
  let pending = readable.filter((e) => !state.read.includes(e.id));
  if (pending.length === 0 && readable.length > 0) {
    state = { cycle: state.cycle + 1, startedAt: now.toISOString(), read: [] };
    pending = readable;
  }
  const chosen: string[] = [];
  if ("percent" in subset) {
    const n = Math.max(1, Math.ceil((readable.length * subset.percent) / 100));
    chosen.push(...pending.slice(0, n).map((e) => e.id));
  } else {
    let budget = subset.bytes;
    for (const e of pending) {
      if (chosen.length > 0 && e.artifact!.size > budget) break;
      chosen.push(e.id);
      budget -= e.artifact!.size;
    }
  }
  state.read = [...state.read, ...chosen];
  record.dataSubset = state;
  return {
    cycle: state.cycle,
    readThisRun: chosen,
    leftInCycle: readable.filter((e) => !state.read.includes(e.id)).length,
  };
}

/** What is wrong with one of our copies at the target: gone, resized, its checksum file, its bytes (when read) or its metadata. */
async function problemsOf(e: OffsiteEntry, readData: boolean): Promise<string[]> {
  const problems: string[] = [];
  const rec = e.recorded;
  if (!e.snapshot || !e.artifact)
    problems.push(rec ? `artifact ${rec.artifact} was removed from the target` : "no artifact at the target");
  else {
    if (rec && e.artifact.size !== rec.size)
      problems.push(
        `artifact is ${e.artifact.size} bytes, ${rec.size} were copied (${e.artifact.size < rec.size ? "truncated" : "changed"})`,
      );
    if (!e.checksum) problems.push("checksum file missing at the target");
    else if (rec && (await expectedChecksum(e.snapshot)) !== rec.sha256)
      problems.push("checksum file at the target does not name the copied sha256");
    if (readData) {
      const actual = await hashObject(e.snapshot.storage, e.snapshot.artifactKey);
      const expected = rec?.sha256 ?? e.artifact.sha256;
      if (actual.sha256 !== expected)
        problems.push(
          `artifact bytes hash to ${actual.sha256}, expected ${expected} (changed behind our back)`,
        );
    } else if (e.artifact.sha256 !== rec!.sha256)
      problems.push("artifact's sha256 metadata differs from the copy we made");
  }
  if (!rec) problems.push("not recorded as a confirmed copy (push it again)");
  return problems;
}

/**
 * Remember what was found (the next push puts it back), and forget it once a full read is clean.
 * Returns whether the record changed.
 */
function noteProblems(
  record: OffsiteRecord,
  e: OffsiteEntry,
  problems: string[],
  readData: boolean,
  now: Date,
): boolean {
  const copy = e.recorded ? record.copies[e.id] : undefined;
  if (!copy) return false;
  let changed = false;
  if (problems.length > 0 && copy.problem !== problems.join("; ")) {
    copy.problem = problems.join("; ");
    copy.problemSeenAt = now.toISOString();
    changed = true;
  } else if (problems.length === 0 && copy.problem && readData) {
    copy.problem = null;
    copy.problemSeenAt = null;
    changed = true;
  }
  if (problems.length === 0 && readData) {
    copy.readVerifiedAt = now.toISOString();
    changed = true;
  }
  return changed;
}
