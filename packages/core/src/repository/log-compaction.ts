import {
  checkpointKey,
  listLog,
  readCheckpoint,
  readEntry,
  type Lease,
  type LogCheckpoint,
  type LogEntry,
} from "./lease.js";

/**
 * Compaction of a fenced commit log (lease.ts) on an object store without compare-and-swap (Ceph
 * RGW 16 has create-only PUT and nothing else): every commit adds an object, and without this
 * every reader lists and (cold) fetches them all, forever.
 *
 * A checkpoint `log/<name>/<upTo>.checkpoint` is written create-only; it summarises the log up to
 * entry `upTo`: the highest epoch begun so far (so later commits are still fenced) and every entry
 * still in effect, verbatim. Readers start from the newest valid checkpoint and read only the
 * entries after it. A checkpoint is a pure function of an immutable prefix of the log, so a killed
 * compaction leaves either no checkpoint (the log reads as before) or a whole one, and a second
 * run that finds it made goes on from it.
 *
 * Dropped from a checkpoint: begin entries (their epoch is `begun`), commits a begin of a later
 * epoch fenced out (no reader counts them), and commits the caller says are no longer in effect
 * (`obsolete`: for a context, a snapshot whose objects are all gone). Every other entry, of any
 * kind this code does not interpret (a key rotation's "the artifact of X now lives at K"), is
 * carried forward as it was.
 *
 * Removal is the repository's two-phase delete: the checkpoint is the mark. Only once the newest
 * checkpoint is older than the delete delay on the server's clock are the entries it covers and the
 * older checkpoints removed, so a reader that listed the log before the checkpoint existed and is
 * still fetching entries never finds one gone, and a host on an older version (which reads entries
 * only) sees a whole log until then.
 */
export interface CompactLogOptions {
  /** the log's lease, held: one compaction of a log at a time (a second would only repeat it) */
  lease: Lease;
  /** write a checkpoint only when at least this many entries follow the newest one */
  minEntries: number;
  /** entries and older checkpoints are removed once a checkpoint covering them is this old */
  deleteAfterMs: number;
  /** a commit entry that no longer counts for any reader (asked for commits only) */
  obsolete?: (entry: LogEntry) => boolean | Promise<boolean>;
}

export interface CompactLogResult {
  /** the entry number the checkpoint this run wrote (or found made) covers up to; null: none was due */
  checkpoint: number | null;
  /** entries the checkpoint carries, and those it left out (begins, fenced and obsolete commits) */
  carried: number;
  dropped: number;
  /** keys removed: entries and checkpoints a checkpoint older than the delete delay covers */
  removed: string[];
}

export async function compactLog(options: CompactLogOptions): Promise<CompactLogResult> {
  const { lease } = options;
  const { storage, name } = lease;
  const listing = await listLog(storage, name);
  let base: LogCheckpoint | null = null;
  for (const [upTo] of [...listing.checkpoints].reverse()) {
    base = await readCheckpoint(storage, name, upTo);
    if (base) break;
  }
  const from = base?.upTo ?? 0;
  const after = listing.entries.filter(([seq]) => seq > from);
  const result: CompactLogResult = { checkpoint: null, carried: 0, dropped: 0, removed: [] };

  if (after.length >= Math.max(1, options.minEntries)) {
    let begun = base?.begun ?? 0;
    const behind = new Set(base?.behindBegin ?? []);
    const candidates: LogEntry[] = [...(base?.entries ?? [])];
    for (const [, key] of after) {
      const entry = await readEntry(storage, key);
      if (!entry) continue; // not an entry (garbage at a log key): no reader counts it either
      if (entry.kind === "begin") {
        begun = Math.max(begun, entry.epoch);
        result.dropped++;
        continue;
      }
      const isBehind = entry.epoch < begun;
      if (entry.kind === "commit" && isBehind) {
        result.dropped++;
        continue;
      }
      if (isBehind) behind.add(entry.seq);
      candidates.push(entry);
    }
    const entries: LogEntry[] = [];
    for (const entry of candidates)
      if (entry.kind === "commit" && options.obsolete && (await options.obsolete(entry))) result.dropped++;
      else entries.push(entry);
    const upTo = after[after.length - 1]![0];
    const checkpoint: LogCheckpoint = {
      schema: "paas-backup/log-checkpoint@1",
      lease: name,
      upTo,
      begun,
      entries,
      behindBegin: [...behind].filter((seq) => entries.some((e) => e.seq === seq)).sort((a, b) => a - b),
      previous: from,
    };
    // create-only: a run killed after this PUT left the same checkpoint (it is a function of the
    // entries up to upTo, which never change), and the next run goes on from it
    await lease.storage.createOnly(checkpointKey(name, upTo), Buffer.from(`${JSON.stringify(checkpoint)}\n`));
    result.checkpoint = upTo;
    result.carried = entries.length;
  }

  // The second phase: what a checkpoint older than the delete delay covers goes (a log without
  // one has nothing to remove, and costs no request for the server's time).
  if (listing.checkpoints.length === 0) return result;
  const cutoff = (await storage.serverTime()).getTime() - options.deleteAfterMs;
  for (const [upTo, , lastModified] of [...listing.checkpoints].reverse()) {
    if (!lastModified || lastModified.getTime() > cutoff) continue;
    if (!(await readCheckpoint(storage, name, upTo))) continue;
    for (const [seq, key] of listing.entries)
      if (seq <= upTo) {
        await storage.delete(key);
        result.removed.push(key);
      }
    for (const [older, key] of listing.checkpoints)
      if (older < upTo) {
        await storage.delete(key);
        result.removed.push(key);
      }
    break;
  }
  return result;
}
