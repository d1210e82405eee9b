import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import type { DirEntry, FileKind, FileReader, FileStat, FileSystem, WriteOptions } from "./types.js";

function kindOf(s: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): FileKind {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "directory";
  if (s.isSymbolicLink()) return "symlink";
  return "other";
}

/** Bytes per read of a file stream, and reads in flight at once. */
const READ_BYTES = 256 * 1024;
const READS_AHEAD = 4;

/**
 * fs.createReadStream's contract (bytes [start, end] inclusive, errors as 'error', the fd closed
 * at the end) with several reads in flight. fs.createReadStream has one: each chunk waits for its
 * read to come back from libuv's threadpool, behind whatever else is queued there (a snapshot's
 * deflate jobs), so reading was a hop on the archive's critical path. Reads are positional. As
 * with fs.createReadStream, only a read of 0 bytes is the end: a short read (a network or FUSE
 * filesystem may give one mid-file) is passed on, the reads queued after it are dropped and
 * reading goes on from where it stopped.
 */
class ReadAheadStream extends Readable {
  private fd = -1;
  private next: number;
  private readonly pending: { position: number; length: number; done: Promise<Buffer> }[] = [];
  /** every read not yet back, also dropped ones and the one being delivered: the fd outlives them all */
  private readonly inFlight = new Set<Promise<Buffer>>();
  constructor(
    private readonly path: string,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_BYTES });
    this.next = start;
  }

  override _construct(callback: (err?: Error | null) => void): void {
    fs.open(this.path, "r", (err, fd) => {
      if (err) return callback(err);
      this.fd = fd;
      callback();
    });
  }

  override _read(): void {
    while (this.pending.length < READS_AHEAD && this.next < this.end) {
      const length = Math.min(READ_BYTES, this.end - this.next);
      const position = this.next;
      this.next += length;
      const done = new Promise<Buffer>((resolve, reject) => {
        const buf = Buffer.allocUnsafeSlow(length);
        fs.read(this.fd, buf, 0, length, position, (err, n) =>
          err ? reject(err) : resolve(n === length ? buf : buf.subarray(0, n)),
        );
      });
      this.inFlight.add(done);
      const settled = () => this.inFlight.delete(done);
      done.then(settled, settled);
      this.pending.push({ position, length, done });
    }
    const head = this.pending.shift();
    if (!head) {
      this.push(null);
      return;
    }
    head.done.then(
      (buf) => {
        if (this.destroyed) return;
        if (buf.length === 0) {
          this.push(null);
          return;
        }
        if (buf.length < head.length) {
          // Short of what was asked: go on from where it stopped; what was queued beyond is dropped.
          this.pending.length = 0;
          this.next = head.position + buf.length;
        }
        this.push(buf);
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Reads still in flight use the fd: it is closed once they are back, never under them.
    this.pending.length = 0;
    void Promise.allSettled([...this.inFlight]).then(() => {
      if (this.fd < 0) return callback(err);
      fs.close(this.fd, (closeErr) => callback(err ?? closeErr));
    });
  }
}

/**
 * Bytes per write(2) of a write stream. A restore hands its file streams whole gzip members (1
 * MiB); Linux (6.x, ext4 with large folios) then fills the page cache with large folios, and on a
 * host whose memory other processes churn, finding those cost more system time than the copy
 * itself: a 256 MiB restore spent 1.0-1.6 s in the kernel, 37 % of its samples in
 * copy_folio_from_iter_atomic, where GNU tar (10 KiB writes) spent 0.2 s. In 64 KiB writes the
 * same restore spent 0.35-0.6 s (bench/restore.mjs; dd showed the same for 1 MiB against 64 KiB).
 */
const WRITE_BYTES = 64 * 1024;

/**
 * fs.write's contract for fs.createWriteStream's `fs` option: one chunk as writes of at most
 * WRITE_BYTES, in order; the callback gets (err, bytes written, buffer) as from fs.write. When a
 * piece fails after others were written, their count is reported first: the stream writes the
 * rest again and that write reports the error (an EAGAIN is retried there, never a byte twice).
 */
function writeInPieces(
  fd: number,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number | null | undefined,
  callback: (err: NodeJS.ErrnoException | null, written: number, buffer: Buffer) => void,
): void {
  let done = 0;
  const next = (): void => {
    if (done >= length) return callback(null, done, buffer);
    const n = Math.min(WRITE_BYTES, length - done);
    const at = typeof position === "number" ? position + done : null;
    fs.write(fd, buffer, offset + done, n, at, (err, written) => {
      if (err) return done > 0 ? callback(null, done, buffer) : callback(err, 0, buffer);
      done += written;
      // a short write is the stream's to finish: it writes the rest
      if (written < n) return callback(null, done, buffer);
      next();
    });
  };
  next();
}

/** The Node adapter: the only place in core that touches the real disk. */
export const nodeFs: FileSystem = {
  async lstat(path): Promise<FileStat> {
    const s = await fsp.lstat(path);
    return {
      kind: kindOf(s),
      size: s.size,
      mode: s.mode & 0o777,
      mtimeMs: s.mtimeMs,
      ino: s.ino,
      uid: s.uid,
    };
  },
  async readdir(path): Promise<DirEntry[]> {
    const entries = await fsp.readdir(path, { withFileTypes: true });
    return entries.map((e) => ({ name: e.name, kind: kindOf(e) }));
  },
  async readFile(path) {
    return fsp.readFile(path);
  },
  async readRange(path, position, length) {
    const handle = await fsp.open(path, "r");
    try {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buf, 0, length, position);
      return buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  },
  async writeFile(path, data, options: WriteOptions = {}) {
    const mode = options.mode ?? 0o600;
    await fsp.writeFile(path, data, { mode, flag: options.exclusive ? "wx" : "w" });
    // writeFile's mode only applies on creation and is masked by the umask: set it explicitly.
    await fsp.chmod(path, mode);
  },
  async appendFile(path, data, options = {}) {
    await fsp.appendFile(path, data, { mode: options.mode ?? 0o600 });
  },
  async mkdir(path, options = {}) {
    const mode = options.mode ?? 0o700;
    if (!options.recursive) {
      await fsp.mkdir(path, { mode });
      await fsp.chmod(path, mode);
      return;
    }
    // Create each missing component ourselves so that every folder we make gets `mode`
    // whatever the umask, and folders that already existed are left alone.
    const missing: string[] = [];
    for (let p = path; ; p = dirname(p)) {
      try {
        if ((await fsp.lstat(p)).isDirectory()) break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
      missing.unshift(p);
      if (dirname(p) === p) break;
    }
    for (const p of missing) {
      try {
        await fsp.mkdir(p, { mode });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        continue;
      }
      await fsp.chmod(p, mode);
    }
  },
  rename: (from, to) => fsp.rename(from, to),
  rm: (path, options = {}) =>
    fsp.rm(path, { recursive: options.recursive ?? false, force: options.force ?? false }),
  chmod: (path, mode) => fsp.chmod(path, mode),
  link: (existing, newPath) => fsp.link(existing, newPath),
  realpath: (path) => fsp.realpath(path),
  createReadStream(path, options = {}) {
    // fs.createReadStream refuses an end before the start; so does this one.
    if (options.start !== undefined && options.end !== undefined && options.end < options.start)
      throw Object.assign(
        new RangeError(`createReadStream(${path}): end ${options.end} is before start ${options.start}`),
        { code: "ERR_OUT_OF_RANGE" },
      );
    return new ReadAheadStream(
      path,
      options.start ?? 0,
      options.end === undefined ? Number.POSITIVE_INFINITY : options.end + 1,
    );
  },
  async openRead(path): Promise<FileReader> {
    const handle = await fsp.open(path, "r");
    return {
      read: async (into, position) => (await handle.read(into, 0, into.length, position)).bytesRead,
      close: () => handle.close(),
    };
  },
  createWriteStream(path, options: WriteOptions = {}) {
    const mode = options.mode ?? 0o600;
    const stream = fs.createWriteStream(path, {
      mode,
      flags: options.append ? "a" : options.exclusive ? "wx" : "w",
      fs: { open: fs.open, close: fs.close, write: writeInPieces },
    });
    // The umask can strip bits from `mode`; fix them as soon as the file exists.
    stream.once("open", (fd: number) => fs.fchmod(fd, mode, () => undefined));
    return stream;
  },
  async sync(path) {
    const handle = await fsp.open(path, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

/**
 * This process as the holder of a context lock (the `LockOwner` every core entry point uses when
 * its caller names none): pid, host, whether a pid is alive, and when a pid's process started.
 * It lives here, beside nodeFs, because it is the other thing core asks of the machine.
 */
export function nodeLockOwner(command: string): {
  pid: number;
  host: string;
  command: string;
  isAlive(pid: number): boolean;
  startTimeOf(pid: number): string | null;
} {
  return {
    pid: process.pid,
    host: hostname(),
    command,
    isAlive(pid) {
      try {
        process.kill(pid, 0);
        return true;
      } catch (err) {
        // EPERM: alive, just not ours to signal
        return (err as NodeJS.ErrnoException).code === "EPERM";
      }
    },
    startTimeOf: processStartTime,
  };
}

/**
 * When the process with this pid started, in clock ticks after boot: field 22 of
 * /proc/<pid>/stat (proc(5)). The second field, the command name, is in parentheses and may hold
 * spaces or ")", so fields are counted after its last ")". null where there is no /proc (macOS)
 * or the pid is gone: callers then judge by the pid alone.
 */
export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const afterName = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // afterName[0] is field 3 (state), so field 22 is afterName[19]
    const start = afterName[19];
    return start && /^\d+$/.test(start) ? start : null;
  } catch {
    return null;
  }
}
