import type { Readable, Writable } from "node:stream";

/**
 * The one filesystem interface of core: what it needs of fs/promises and streams, nothing more.
 * Every core function that touches files takes one of these (as isomorphic-git does), so the
 * same code runs on the real disk (node-fs.ts) and in memory (@paas-backup/testing).
 * Paths are absolute POSIX paths. Missing paths reject with an error whose `code` is "ENOENT".
 */
export type FileKind = "file" | "directory" | "symlink" | "other";

export interface FileStat {
  kind: FileKind;
  size: number;
  /** permission bits only (0o777 mask) */
  mode: number;
  mtimeMs: number;
  ino: number;
  uid: number;
}

export interface DirEntry {
  name: string;
  kind: FileKind;
}

export interface WriteOptions {
  mode?: number;
  /** fail with EEXIST when the path exists (O_EXCL) */
  exclusive?: boolean;
  /** open for appending (createWriteStream only) */
  append?: boolean;
}

/** A file open for reading at positions, into buffers the caller owns. */
export interface FileReader {
  /** up to `into.length` bytes from `position` into `into`; the count read (fewer only at the end) */
  read(into: Uint8Array, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface FileSystem {
  /** never follows a symbolic link */
  lstat(path: string): Promise<FileStat>;
  readdir(path: string): Promise<DirEntry[]>;
  readFile(path: string): Promise<Uint8Array>;
  /** up to `length` bytes from `position` */
  readRange(path: string, position: number, length: number): Promise<Uint8Array>;
  writeFile(path: string, data: Uint8Array | string, options?: WriteOptions): Promise<void>;
  appendFile(path: string, data: Uint8Array | string, options?: { mode?: number }): Promise<void>;
  mkdir(path: string, options?: { mode?: number; recursive?: boolean }): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string, options?: { recursive?: boolean; force?: boolean }): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** bytes [start, end] inclusive, as fs.createReadStream */
  createReadStream(path: string, options?: { start?: number; end?: number }): Readable;
  /**
   * Open a file to read into the caller's buffers: a snapshot reads its large files this way and
   * reuses a few buffers, rather than a fresh one per chunk (garbage that cost a collection every
   * 64 MiB read). Optional: without it, callers read through createReadStream.
   */
  openRead?(path: string): Promise<FileReader>;
  createWriteStream(path: string, options?: WriteOptions): Writable;
  /** flush a file or a directory to stable storage (no-op where there is none) */
  sync(path: string): Promise<void>;
  /**
   * a hard link: `newPath` names the same file as `existing`; rejects with EEXIST when `newPath`
   * exists (link(2) never replaces), which makes "appear with its content in one step" possible
   */
  link(existing: string, newPath: string): Promise<void>;
  /** the absolute path with every symbolic link resolved (realpath(3)); ENOENT when missing */
  realpath(path: string): Promise<string>;
}
