import { expectedChecksum } from "../repository/checksum.js";
import type { Immutability } from "../repository/storage.js";
import { hashObject } from "./checks.js";
import { listOffsite } from "./list.js";
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
  subset: { cycle: number; readThisRun: string[]; leftInCycle: number } | null;
}> {
  const { entries, immutability } = await listOffsite(options);
  const storage = options.target.storage;
  const results: OffsiteVerification[] = [];
  const records = recordStoreOf(options);
  const record = await readRecordIn(records, options.context, options.target);
  const now = options.clock();
  let recordChanged = false;
  // Which copies this run reads in full.
  const readable = entries.filter((e) => e.snapshot && e.artifact && e.recorded);
  let toRead = new Set<string>();
  let subsetInfo: { cycle: number; readThisRun: string[]; leftInCycle: number } | null = null;
  if (options.readDataSubset && !options.deep) {
    let state = record.dataSubset ?? { cycle: 1, startedAt: now.toISOString(), read: [] };
    let pending = readable.filter((e) => !state.read.includes(e.id));
    if (pending.length === 0 && readable.length > 0) {
      state = { cycle: state.cycle + 1, startedAt: now.toISOString(), read: [] };
      pending = readable;
    }
    const chosen: string[] = [];
    if ("percent" in options.readDataSubset) {
      const n = Math.max(1, Math.ceil((readable.length * options.readDataSubset.percent) / 100));
      chosen.push(...pending.slice(0, n).map((e) => e.id));
    } else {
      let budget = options.readDataSubset.bytes;
      for (const e of pending) {
        if (chosen.length > 0 && e.artifact!.size > budget) break;
        chosen.push(e.id);
        budget -= e.artifact!.size;
      }
    }
    toRead = new Set(chosen);
    state.read = [...state.read, ...chosen];
    record.dataSubset = state;
    recordChanged = true;
    subsetInfo = {
      cycle: state.cycle,
      readThisRun: chosen,
      leftInCycle: readable.filter((e) => !state.read.includes(e.id)).length,
    };
  }
  for (const e of entries) {
    if (!e.own) continue;
    const problems: string[] = [];
    const rec = e.recorded;
    let readData = false;
    if (!e.snapshot || !e.artifact)
      problems.push(
        rec ? `artifact ${rec.artifact} was removed from the target` : "no artifact at the target",
      );
    else {
      if (rec && e.artifact.size !== rec.size)
        problems.push(
          `artifact is ${e.artifact.size} bytes, ${rec.size} were copied (${e.artifact.size < rec.size ? "truncated" : "changed"})`,
        );
      if (!e.checksum) problems.push("checksum file missing at the target");
      else if (rec && (await expectedChecksum(e.snapshot)) !== rec.sha256)
        problems.push("checksum file at the target does not name the copied sha256");
      // A directory target is cheap to read: always check its bytes. Object stores: metadata, or bytes with --deep / the subset.
      if (options.deep || !rec || storage.flags.cheapReads || toRead.has(e.id)) {
        readData = true;
        const actual = await hashObject(e.snapshot.storage, e.snapshot.artifactKey);
        const expected = rec?.sha256 ?? e.artifact.sha256;
        if (actual.sha256 !== expected)
          problems.push(
            `artifact bytes hash to ${actual.sha256}, expected ${expected} (changed behind our back)`,
          );
      } else if (e.artifact.sha256 !== rec.sha256)
        problems.push("artifact's sha256 metadata differs from the copy we made");
    }
    if (!rec) problems.push("not recorded as a confirmed copy (push it again)");
    // Remember what was found (the next push puts it back), and forget it once a full read is clean.
    if (rec && record.copies[e.id]) {
      const copy = record.copies[e.id]!;
      if (problems.length > 0 && copy.problem !== problems.join("; ")) {
        copy.problem = problems.join("; ");
        copy.problemSeenAt = now.toISOString();
        recordChanged = true;
      } else if (problems.length === 0 && copy.problem && readData) {
        copy.problem = null;
        copy.problemSeenAt = null;
        recordChanged = true;
      }
      if (problems.length === 0 && readData) {
        copy.readVerifiedAt = now.toISOString();
        recordChanged = true;
      }
    }
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
