import { createHash } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { EVENT_LOGS } from "../policy/selection.js";
import { redactText } from "../policy/secrets.js";
import { createFileExclusive } from "../util/atomic.js";
import { lstatOrNull } from "../util/optional-reads.js";
import { forEachChunk } from "../util/read-range.js";
import { basename, contextBackupDir, join } from "../util/paths.js";
import type { EventLines } from "../records/incident.js";
import type { LiveComparison } from "./materialize.js";

export type { EventLines } from "../records/incident.js";

/**
 * The event lines written since the snapshot (issue 20): an audit trail survives a restore.
 *
 * A restore replaces each event log with the snapshot's. Lines si appended to the live log after
 * the snapshot was taken would survive only in moved-aside/, which no backup covers. So, once the
 * staged state has been verified against the manifest and just before the swap:
 *
 * - when the live log extends the snapshot's (its first bytes are the very bytes the snapshot read),
 *   the live lines past them are appended to the restored log ("append");
 * - when it does not (rewritten, rotated, cut), when the snapshot has no such log, or with
 *   `--exact`, the live lines the snapshot's log does not hold are kept in a file of the incident
 *   in the backup root, so backups cover them ("keep"), secret values redacted as in a snapshot.
 *
 * The incident record names each with its sha256. The appends go into the staged context, under
 * the restore's journal: a kill before the pivot leaves the live logs as they were, one after it
 * completes a swap whose staged logs already hold the lines.
 */

/** What the snapshot read of a log: the bytes a live log that extends it starts with. */
export interface SnapshotLog {
  size: number;
  sha256: string;
}

interface PlannedLines {
  record: EventLines;
  /** the bytes to append or to keep */
  data: Buffer;
  /** the live log's size when read (a catch-up after the swap appends what came later) */
  liveSize: number;
}

async function prefixSha256(fs: FileSystem, path: string, length: number): Promise<string> {
  const hash = createHash("sha256");
  await forEachChunk(fs, path, 0, length, (chunk) => hash.update(chunk));
  return hash.digest("hex");
}

function countLines(data: Buffer): number {
  if (data.length === 0) return 0;
  let n = 0;
  for (const b of data) if (b === 0x0a) n++;
  return data[data.length - 1] === 0x0a ? n : n + 1;
}

/**
 * The live lines of each event log the restore replaces that the restored log would lose.
 * `snapshotLogs` has what the snapshot read of each log (absent: the snapshot has none).
 */
export async function planEventLines(options: {
  fs: FileSystem;
  live: string;
  /** the logs the restore writes */
  replaced: (path: string) => boolean;
  snapshotLogs: ReadonlyMap<string, SnapshotLog>;
  /** the staged copies, to tell which live lines the snapshot's log already holds */
  stagedContext: string;
  exact: boolean;
  /**
   * what staging found comparing each live log with the restored one as it extracted it
   * (materializeChain's compareWith): used for a log that is still that file (same inode), instead
   * of hashing its first bytes again
   */
  compared?: ReadonlyMap<string, LiveComparison>;
  /**
   * rollback: what the restore it undoes made live in each log (the restored snapshot's bytes). A
   * live log that still starts with them holds the snapshot's own lines there, which its
   * artifact keeps: only the lines past them are candidates to keep, not the whole restored log.
   */
  restoredLogs?: ReadonlyMap<string, SnapshotLog>;
}): Promise<PlannedLines[]> {
  const { fs } = options;
  const out: PlannedLines[] = [];
  for (const path of EVENT_LOGS) {
    if (!options.replaced(path)) continue;
    const livePath = join(options.live, path);
    const st = await lstatOrNull(fs, livePath);
    if (!st || st.kind !== "file" || st.size === 0) continue;
    const snap = options.snapshotLogs.get(path);
    const known = options.compared?.get(path);
    const extends_ =
      snap !== undefined &&
      st.size >= snap.size &&
      (known && known.ino === st.ino && known.size === snap.size
        ? known.agrees
        : (await prefixSha256(fs, livePath, snap.size)) === snap.sha256);
    if (extends_ && !options.exact) {
      if (st.size === snap.size) continue;
      const data = Buffer.from(await fs.readRange(livePath, snap.size, st.size - snap.size));
      out.push({
        record: {
          path,
          action: "append",
          reason:
            "the live log extends the snapshot's: the lines written since are appended to the restored log",
          lines: countLines(data),
          bytes: data.length,
          sha256: createHash("sha256").update(data).digest("hex"),
        },
        data,
        liveSize: snap.size + data.length,
      });
      continue;
    }
    let data: Buffer;
    if (extends_) data = Buffer.from(await fs.readRange(livePath, snap.size, st.size - snap.size));
    else {
      // Not a continuation: keep every live line the snapshot's log does not hold, in order.
      const restored = options.restoredLogs?.get(path);
      const fromByte =
        restored !== undefined &&
        st.size >= restored.size &&
        (await prefixSha256(fs, livePath, restored.size)) === restored.sha256
          ? restored.size
          : 0;
      const liveText = Buffer.from(await fs.readRange(livePath, fromByte, st.size - fromByte)).toString(
        "utf8",
      );
      const stagedText = snap
        ? Buffer.from(
            await fs.readFile(join(options.stagedContext, path)).catch(() => new Uint8Array()),
          ).toString("utf8")
        : "";
      const held = new Set(stagedText.split("\n"));
      const lines = liveText.split("\n").filter((line) => line !== "" && !held.has(line));
      data = Buffer.from(lines.length ? `${lines.join("\n")}\n` : "");
    }
    if (data.length === 0) continue;
    // The kept file lies in the backup root: secret values are redacted as a snapshot stores them.
    const kept = Buffer.from(redactText(data.toString("utf8")));
    out.push({
      record: {
        path,
        action: "keep",
        reason: options.exact
          ? "--exact: the lines written since the snapshot are kept in the incident, not appended"
          : snap
            ? "the live log does not extend the snapshot's (rewritten, rotated or cut): its lines the snapshot does not hold are kept in the incident"
            : "the snapshot has no such log: the live lines are kept in the incident",
        lines: countLines(kept),
        bytes: kept.length,
        sha256: createHash("sha256").update(kept).digest("hex"),
      },
      data: kept,
      liveSize: st.size,
    });
  }
  return out;
}

/**
 * Apply the plan: append into the staged logs, write the kept files into
 * `<backup_root>/<context>/incidents/<stem>.<log>` (each appears whole, never replacing).
 */
export async function applyEventLines(options: {
  fs: FileSystem;
  planned: readonly PlannedLines[];
  stagedContext: string;
  backupRoot: string;
  context: string;
  /** the incident's name stem, e.g. 20261203T101739Z-restore-INC-1-ab12cd34 */
  stem: string;
}): Promise<EventLines[]> {
  const { fs } = options;
  const records: EventLines[] = [];
  for (const p of options.planned) {
    if (p.record.action === "append") {
      const staged = join(options.stagedContext, p.record.path);
      await fs.appendFile(staged, p.data, { mode: 0o600 });
      await fs.sync(staged);
      records.push({ ...p.record });
    } else {
      const dir = join(contextBackupDir(options.backupRoot, options.context), "incidents");
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      let file = join(dir, `${options.stem}.${basename(p.record.path)}`);
      for (let n = 2; !(await createFileExclusive(fs, file, p.data)); n++)
        file = join(dir, `${options.stem}-${n}.${basename(p.record.path)}`);
      records.push({ ...p.record, keptIn: file });
    }
  }
  return records;
}

/**
 * After the swap: lines si appended to a live log between the read and the rename went aside
 * with it; append them too (at most once: a kill here leaves them in moved-aside/ only).
 */
export async function catchUpEventLines(options: {
  fs: FileSystem;
  planned: readonly PlannedLines[];
  aside: string;
  live: string;
}): Promise<EventLines[]> {
  const { fs } = options;
  const more: EventLines[] = [];
  for (const p of options.planned) {
    if (p.record.action !== "append") continue;
    const old = join(options.aside, p.record.path);
    const st = await lstatOrNull(fs, old);
    if (!st || st.kind !== "file" || st.size <= p.liveSize) continue;
    const data = Buffer.from(await fs.readRange(old, p.liveSize, st.size - p.liveSize));
    await fs.appendFile(join(options.live, p.record.path), data, { mode: 0o600 });
    more.push({
      ...p.record,
      reason: "written while the restore swapped: appended after the swap",
      lines: countLines(data),
      bytes: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
    });
  }
  return more;
}
