import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { dirname } from "node:path";
import type { DirEntry, FileKind, FileStat, FileSystem, WriteOptions } from "./types.js";

function kindOf(s: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): FileKind {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "directory";
  if (s.isSymbolicLink()) return "symlink";
  return "other";
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
    return fs.createReadStream(path, { start: options.start, end: options.end, highWaterMark: 256 * 1024 });
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
