import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
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
 * deflate jobs), so reading was a hop on the archive's critical path. Reads are positional; the
 * stream ends at the first short read, as a file only ends early at its end.
 */
class ReadAheadStream extends Readable {
  private fd = -1;
  private next: number;
  private ended = false;
  private readonly pending: Promise<Buffer>[] = [];
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
      const read = new Promise<Buffer>((resolve, reject) => {
        const buf = Buffer.allocUnsafeSlow(length);
        fs.read(this.fd, buf, 0, length, position, (err, n) =>
          err ? reject(err) : resolve(n === length ? buf : buf.subarray(0, n)),
        );
      });
      read.catch(() => undefined);
      this.pending.push(read);
    }
    const head = this.pending.shift();
    if (!head || this.ended) {
      this.push(null);
      return;
    }
    head.then(
      (buf) => {
        if (this.destroyed) return;
        if (buf.length > 0) this.push(buf);
        // a short read is the file's end: what was asked beyond it is not passed on
        if (buf.length === 0 || (this.pending.length > 0 && buf.length < READ_BYTES)) {
          this.ended = true;
          this.push(null);
        }
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Reads still in flight use the fd: it is closed once they are back, never under them.
    const reads = this.pending.splice(0);
    void Promise.allSettled(reads).then(() => {
      if (this.fd < 0) return callback(err);
      fs.close(this.fd, (closeErr) => callback(err ?? closeErr));
    });
  }
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
