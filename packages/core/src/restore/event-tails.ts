import { createHash } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { EVENT_LOGS } from "../policy/selection.js";
import { redactText, SecretScanner } from "../policy/secrets.js";
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

/** Bytes per read of a log compared line by line (a rewritten live log against the staged one). */
const LINE_READ_BYTES = 512 * 1024;
/** Redacted output is handed to the scanner in blocks of about this many bytes. */
const SCAN_BLOCK_BYTES = 256 * 1024;

/** A file read at positions: the FileSystem's reader where it has one, else ranges. */
async function openPositional(
  fs: FileSystem,
  path: string,
): Promise<{ read(into: Buffer, position: number): Promise<number>; close(): Promise<void> }> {
  if (fs.openRead) return fs.openRead(path);
  return {
    read: async (into, position) => {
      const got = await fs.readRange(path, position, into.length);
      into.set(got);
      return got.length;
    },
    close: async () => undefined,
  };
}

/**
 * Each line of bytes [start, end) of a file, split at "\n" (the last one may lack it), in order,
 * read `readBytes` at a time: only a line longer than that is ever held whole. `each` gets the
 * line without its "\n" and its offset; it must not keep the buffer.
 */
async function forEachLine(
  fs: FileSystem,
  path: string,
  start: number,
  end: number,
  readBytes: number,
  each: (line: Buffer, offset: number) => void | Promise<void>,
): Promise<void> {
  if (end <= start) return;
  const file = await openPositional(fs, path);
  try {
    const buf = Buffer.allocUnsafeSlow(readBytes);
    let carry: Buffer[] = [];
    let carryBytes = 0;
    let lineStart = start;
    for (let position = start; position < end;) {
      const n = await file.read(buf.subarray(0, Math.min(readBytes, end - position)), position);
      if (n === 0) break;
      let from = 0;
      for (let nl = buf.indexOf(10, 0); nl >= 0 && nl < n; nl = buf.indexOf(10, from)) {
        const piece = buf.subarray(from, nl);
        const line = carryBytes > 0 ? Buffer.concat([...carry, piece]) : piece;
        const pending = each(line, lineStart);
        if (pending) await pending;
        lineStart += line.length + 1;
        carry = [];
        carryBytes = 0;
        from = nl + 1;
      }
      if (from < n) {
        carry.push(Buffer.from(buf.subarray(from, n)));
        carryBytes += n - from;
      }
      position += n;
    }
    if (carryBytes > 0) await each(Buffer.concat(carry), lineStart);
  } finally {
    await file.close();
  }
}

/** FNV-1a over a line's bytes: where a line goes in StagedLines (a match is then read and compared). */
function lineHash(line: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < line.length; i++) h = Math.imul(h ^ line[i]!, 0x01000193);
  return h >>> 0 || 1;
}

/**
 * The lines of the staged log, to tell which live lines it holds, in 12 bytes per line: a hash
 * and the line's offset in the file, never the line. A live line whose hash is there is read back
 * from the staged file and compared byte for byte, so the answer is exact. (The whole staged log
 * and a Set of its lines as strings were held before: a log past about 512 MiB failed the restore
 * on V8's string limit, and smaller ones took several times their size in memory.)
 */
class StagedLines {
  private hashes = new Uint32Array(1024);
  private offsets = new Float64Array(1024);
  private count = 0;
  private readonly buffer: Buffer;
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;

  constructor(
    private readonly file: { read(into: Buffer, position: number): Promise<number> },
    readBytes: number,
  ) {
    this.buffer = Buffer.allocUnsafeSlow(readBytes);
  }

  add(line: Buffer, offset: number): void {
    if ((this.count + 1) * 2 > this.hashes.length) this.grow();
    this.place(lineHash(line), offset);
    this.count++;
  }

  /** Answered at once when no staged line has the hash (most new lines): only a candidate is read. */
  has(line: Buffer): boolean | Promise<boolean> {
    const mask = this.hashes.length - 1;
    const h = lineHash(line);
    let i = h & mask;
    while (this.hashes[i] !== 0 && this.hashes[i] !== h) i = (i + 1) & mask;
    return this.hashes[i] === 0 ? false : this.probe(line, h, i);
  }

  private async probe(line: Buffer, h: number, first: number): Promise<boolean> {
    const mask = this.hashes.length - 1;
    for (let i = first; this.hashes[i] !== 0; i = (i + 1) & mask)
      if (this.hashes[i] === h && (await this.lineAt(this.offsets[i]!, line))) return true;
    return false;
  }

  /**
   * Whether the staged file holds exactly `line` at `offset`, followed by "\n" or its end; read
   * `readBytes` at a time into one buffer. Lines that match mostly come in the staged log's
   * order, so the bytes read for one usually serve the next ones too.
   */
  private async lineAt(offset: number, line: Buffer): Promise<boolean> {
    const need = line.length + 1;
    for (let done = 0; done < need;) {
      const at = offset + done;
      if (at < this.windowStart || at >= this.windowStart + this.window.length) {
        const n = await this.file.read(this.buffer, at);
        this.window = this.buffer.subarray(0, n);
        this.windowStart = at;
        // the file ends here: the line matches if it was whole
        if (n === 0) return done === line.length;
      }
      const from = at - this.windowStart;
      const take = Math.min(need - done, this.window.length - from);
      const got = this.window.subarray(from, from + take);
      const ofLine = Math.max(0, Math.min(take, line.length - done));
      if (ofLine > 0 && !got.subarray(0, ofLine).equals(line.subarray(done, done + ofLine))) return false;
      if (take > ofLine && got[ofLine] !== 10) return false;
      done += take;
    }
    return true;
  }

  private place(h: number, offset: number): void {
    const mask = this.hashes.length - 1;
    let i = h & mask;
    while (this.hashes[i] !== 0) i = (i + 1) & mask;
    this.hashes[i] = h;
    this.offsets[i] = offset;
  }

  private grow(): void {
    const { hashes, offsets } = this;
    this.hashes = new Uint32Array(hashes.length * 2);
    this.offsets = new Float64Array(hashes.length * 2);
    for (let i = 0; i < hashes.length; i++) if (hashes[i] !== 0) this.place(hashes[i]!, offsets[i]!);
  }
}

/**
 * The live lines in bytes [from, to) of `livePath` that the staged log (null: none) does not
 * hold, in order, each ending in "\n", secret values redacted as a snapshot stores them. Both
 * logs are read a bounded chunk at a time; what is held is the staged log's line index and the
 * lines kept.
 */
async function linesNotHeld(
  fs: FileSystem,
  livePath: string,
  from: number,
  to: number,
  stagedPath: string | null,
  readBytes: number,
): Promise<Buffer> {
  const stagedSize = stagedPath ? ((await lstatOrNull(fs, stagedPath))?.size ?? 0) : 0;
  const staged = stagedPath && stagedSize > 0 ? await openPositional(fs, stagedPath) : null;
  try {
    const held = staged ? new StagedLines(staged, readBytes) : null;
    if (held)
      await forEachLine(fs, stagedPath!, 0, stagedSize, readBytes, (line, offset) => {
        if (line.length > 0) held.add(line, offset);
      });
    const scanner = new SecretScanner(livePath, { redact: true });
    const out: Buffer[] = [];
    let block: Buffer[] = [];
    let blockBytes = 0;
    const scan = () => {
      out.push(scanner.push(Buffer.concat(block, blockBytes))!);
      block = [];
      blockBytes = 0;
    };
    const keep = (line: Buffer) => {
      block.push(Buffer.from(line), NEWLINE);
      blockBytes += line.length + 1;
      if (blockBytes >= SCAN_BLOCK_BYTES) scan();
    };
    await forEachLine(fs, livePath, from, to, readBytes, (line) => {
      if (line.length === 0) return;
      const known = held ? held.has(line) : false;
      if (known === false) return keep(line);
      if (known !== true) return known.then((yes) => (yes ? undefined : keep(line)));
    });
    if (blockBytes > 0) scan();
    out.push(scanner.finish()!);
    return Buffer.concat(out);
  } finally {
    await staged?.close();
  }
}

const NEWLINE = Buffer.from("\n");

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
  /** bytes per read of a log compared line by line (a test makes it small to prove the reads bounded) */
  readBytes?: number;
}): Promise<PlannedLines[]> {
  const { fs } = options;
  const out: PlannedLines[] = [];
  for (const path of EVENT_LOGS) {
    if (!options.replaced(path)) continue;
    const livePath = join(options.live, path);
    const st = await lstatOrNull(fs, livePath);
    if (!st || st.kind !== "file" || st.size === 0) continue;
    const snap = options.snapshotLogs.get(path);
    const extends_ =
      snap !== undefined && (await extendsSnapshot(fs, livePath, st, snap, options.compared?.get(path)));
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
    if (extends_) {
      data = Buffer.from(await fs.readRange(livePath, snap.size, st.size - snap.size));
      data = Buffer.from(redactText(data.toString("utf8")));
    } else {
      // Not a continuation: keep every live line the snapshot's log does not hold, in order.
      const restored = options.restoredLogs?.get(path);
      const fromByte =
        restored !== undefined &&
        st.size >= restored.size &&
        (await prefixSha256(fs, livePath, restored.size)) === restored.sha256
          ? restored.size
          : 0;
      data = await linesNotHeld(
        fs,
        livePath,
        fromByte,
        st.size,
        snap ? join(options.stagedContext, path) : null,
        options.readBytes ?? LINE_READ_BYTES,
      );
    }
    if (data.length === 0) continue;
    // The kept file lies in the backup root: secret values are redacted as a snapshot stores them.
    const kept = data;
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
 * Whether the live log begins with the snapshot's bytes: staging's answer when it compared this
 * very file (same inode) over the snapshot's size, otherwise the hash of its first bytes.
 */
async function extendsSnapshot(
  fs: FileSystem,
  livePath: string,
  st: { size: number; ino: number },
  snap: SnapshotLog,
  known: LiveComparison | undefined,
): Promise<boolean> {
  return (
    st.size >= snap.size &&
    (known && known.ino === st.ino && known.size === snap.size
      ? known.agrees
      : (await prefixSha256(fs, livePath, snap.size)) === snap.sha256)
  );
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
