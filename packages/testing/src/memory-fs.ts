import { Readable, Writable } from "node:stream";
import { posix } from "node:path";
import type { DirEntry, FileReader, FileStat, FileSystem, WriteOptions } from "@paas-backup/core/fs";

interface Node {
  kind: "file" | "directory" | "symlink";
  data: Buffer;
  mode: number;
  mtimeMs: number;
  ino: number;
  target?: string;
}

function fsError(code: string, op: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${op} '${path}'`), { code, path });
}

/**
 * An in-memory FileSystem for core's unit tests: POSIX semantics where core relies on them
 * (ENOENT, EEXIST, ENOTDIR, rename of folders, exclusive create), and a `now` you can set.
 */
export class MemoryFileSystem implements FileSystem {
  private readonly nodes = new Map<string, Node>();
  private nextIno = 1;
  now = Date.UTC(2026, 0, 1);

  constructor() {
    this.nodes.set("/", {
      kind: "directory",
      data: Buffer.alloc(0),
      mode: 0o755,
      mtimeMs: this.now,
      ino: this.nextIno++,
    });
  }

  /**
   * The normalized path with every symbolic link before the last component resolved, as the
   * kernel does for every call: `events/audit.jsonl` under a linked `events` is the file it points to.
   */
  private norm(path: string): string {
    if (!path.startsWith("/")) throw new Error(`MemoryFileSystem needs absolute paths, got ${path}`);
    const parts = posix.normalize(path).split("/").filter(Boolean);
    let resolved = "/";
    for (let hops = 0; parts.length > 0;) {
      const name = parts.shift()!;
      const candidate = name === ".." ? posix.dirname(resolved) : posix.join(resolved, name);
      const node = parts.length > 0 ? this.nodes.get(candidate) : undefined;
      if (node?.kind === "symlink") {
        if (++hops > 40) throw fsError("ELOOP", "resolve", path);
        const target = node.target!;
        parts.unshift(...target.split("/").filter(Boolean));
        if (target.startsWith("/")) resolved = "/";
        continue;
      }
      resolved = candidate;
    }
    return resolved;
  }

  /** as norm, and the last component followed too (open, chmod, readdir follow it; lstat, rename, rm do not) */
  private follow(path: string): string {
    let p = this.norm(path);
    for (let hops = 0; hops < 40; hops++) {
      const node = this.nodes.get(p);
      if (node?.kind !== "symlink") return p;
      const target = node.target!;
      p = this.norm(target.startsWith("/") ? target : posix.join(posix.dirname(p), target));
    }
    throw fsError("ELOOP", "open", path);
  }

  private get(path: string, op: string): Node {
    const p = this.norm(path);
    const node = this.nodes.get(p);
    if (!node) {
      const parent = posix.dirname(p);
      if (parent !== p && this.nodes.get(parent)?.kind === "file") throw fsError("ENOTDIR", op, path);
      throw fsError("ENOENT", op, path);
    }
    return node;
  }

  private parentDir(path: string, op: string): void {
    const parent = posix.dirname(this.norm(path));
    const node = this.nodes.get(parent);
    if (!node) throw fsError("ENOENT", op, path);
    if (node.kind !== "directory") throw fsError("ENOTDIR", op, path);
  }

  /** test helper: plant a symbolic link */
  symlink(target: string, path: string): void {
    this.parentDir(path, "symlink");
    this.nodes.set(this.norm(path), {
      kind: "symlink",
      data: Buffer.from(target),
      mode: 0o777,
      mtimeMs: this.now,
      ino: this.nextIno++,
      target,
    });
  }

  async lstat(path: string): Promise<FileStat> {
    const n = this.get(path, "lstat");
    return {
      kind: n.kind,
      size: n.kind === "directory" ? 4096 : n.data.length,
      mode: n.mode,
      mtimeMs: n.mtimeMs,
      ino: n.ino,
      uid: 0,
    };
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const p = this.follow(path);
    const n = this.get(p, "readdir");
    if (n.kind !== "directory") throw fsError("ENOTDIR", "readdir", path);
    const prefix = p === "/" ? "/" : `${p}/`;
    const out: DirEntry[] = [];
    for (const [key, node] of this.nodes) {
      if (key !== p && key.startsWith(prefix) && !key.slice(prefix.length).includes("/"))
        out.push({ name: key.slice(prefix.length), kind: node.kind });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async readFile(path: string): Promise<Uint8Array> {
    const n = this.get(this.follow(path), "open");
    if (n.kind !== "file") throw fsError("EISDIR", "read", path);
    return Buffer.from(n.data);
  }

  async readRange(path: string, position: number, length: number): Promise<Uint8Array> {
    const n = this.get(this.follow(path), "open");
    return Buffer.from(n.data.subarray(position, position + length));
  }

  async writeFile(path: string, data: Uint8Array | string, options: WriteOptions = {}): Promise<void> {
    // O_EXCL refuses an existing link; otherwise open follows it
    const p = options.exclusive ? this.norm(path) : this.follow(path);
    this.parentDir(p, "open");
    const existing = this.nodes.get(p);
    if (existing && options.exclusive) throw fsError("EEXIST", "open", path);
    if (existing?.kind === "directory") throw fsError("EISDIR", "open", path);
    this.nodes.set(p, {
      kind: "file",
      data: Buffer.from(data),
      mode: options.mode ?? 0o600,
      mtimeMs: this.now,
      ino: existing?.ino ?? this.nextIno++,
    });
  }

  async appendFile(path: string, data: Uint8Array | string, options: { mode?: number } = {}): Promise<void> {
    const p = this.follow(path);
    const existing = this.nodes.get(p);
    if (!existing) return this.writeFile(p, data, { mode: options.mode ?? 0o600 });
    existing.data = Buffer.concat([existing.data, Buffer.from(data)]);
    existing.mtimeMs = this.now;
  }

  async mkdir(path: string, options: { mode?: number; recursive?: boolean } = {}): Promise<void> {
    const p = this.norm(path);
    const existing = this.nodes.get(p);
    if (existing) {
      if (options.recursive && existing.kind === "directory") return;
      throw fsError("EEXIST", "mkdir", path);
    }
    if (options.recursive && !this.nodes.has(posix.dirname(p))) await this.mkdir(posix.dirname(p), options);
    this.parentDir(p, "mkdir");
    this.nodes.set(p, {
      kind: "directory",
      data: Buffer.alloc(0),
      mode: options.mode ?? 0o700,
      mtimeMs: this.now,
      ino: this.nextIno++,
    });
  }

  async rename(from: string, to: string): Promise<void> {
    const f = this.norm(from);
    const t = this.norm(to);
    this.get(f, "rename");
    this.parentDir(t, "rename");
    const target = this.nodes.get(t);
    if (target?.kind === "directory" && (await this.readdir(t)).length > 0)
      throw fsError("ENOTEMPTY", "rename", to);
    const moves: [string, Node][] = [];
    for (const [key, n] of this.nodes) if (key === f || key.startsWith(`${f}/`)) moves.push([key, n]);
    for (const [key] of moves) this.nodes.delete(key);
    if (target) this.nodes.delete(t);
    for (const [key, n] of moves) this.nodes.set(t + key.slice(f.length), n);
  }

  async rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    const p = this.norm(path);
    const node = this.nodes.get(p);
    if (!node) {
      if (options.force) return;
      throw fsError("ENOENT", "rm", path);
    }
    if (node.kind === "directory") {
      const children = [...this.nodes.keys()].filter((k) => k.startsWith(`${p}/`));
      if (children.length && !options.recursive) throw fsError("ENOTEMPTY", "rm", path);
      for (const k of children) this.nodes.delete(k);
    }
    this.nodes.delete(p);
  }

  async link(existing: string, newPath: string): Promise<void> {
    const node = this.get(existing, "link");
    if (node.kind === "directory") throw fsError("EPERM", "link", existing);
    const t = this.norm(newPath);
    this.parentDir(t, "link");
    if (this.nodes.has(t)) throw fsError("EEXIST", "link", newPath);
    // the same Node object under two names: one inode, as link(2)
    this.nodes.set(t, node);
  }

  async realpath(path: string): Promise<string> {
    let resolved = "/";
    const pending = this.norm(path).split("/").filter(Boolean);
    for (let hops = 0; pending.length > 0;) {
      const name = pending.shift()!;
      const candidate = posix.join(resolved, name);
      const node = this.nodes.get(candidate);
      if (!node) throw fsError("ENOENT", "realpath", path);
      if (node.kind === "symlink") {
        if (++hops > 40) throw fsError("ELOOP", "realpath", path);
        const target = node.target!;
        pending.unshift(...target.split("/").filter(Boolean));
        if (target.startsWith("/")) resolved = "/";
        continue;
      }
      if (pending.length > 0 && node.kind !== "directory") throw fsError("ENOTDIR", "realpath", path);
      resolved = candidate;
    }
    return resolved;
  }

  async chmod(path: string, mode: number): Promise<void> {
    this.get(this.follow(path), "chmod").mode = mode & 0o7777;
  }

  /** reads see the file as it is at each read (an append between reads is there), as on a disk */
  async openRead(path: string): Promise<FileReader> {
    const node = this.get(this.follow(path), "open");
    let closed = false;
    return {
      read: async (into, position) => {
        if (closed) throw fsError("EBADF", "read", path);
        const bytes = node.data.subarray(position, position + into.length);
        into.set(bytes);
        return bytes.length;
      },
      close: async () => {
        closed = true;
      },
    };
  }

  createReadStream(path: string, options: { start?: number; end?: number } = {}): Readable {
    let node: Node;
    try {
      node = this.get(this.follow(path), "open");
    } catch (err) {
      return new Readable({
        read() {
          this.destroy(err as Error);
        },
      });
    }
    const start = options.start ?? 0;
    const end = options.end === undefined ? node.data.length : options.end + 1;
    const data = Buffer.from(node.data.subarray(start, end));
    const chunk = 64 * 1024;
    let offset = 0;
    return new Readable({
      read() {
        if (offset >= data.length) {
          this.push(null);
          return;
        }
        this.push(data.subarray(offset, offset + chunk));
        offset += chunk;
      },
    });
  }

  createWriteStream(path: string, options: WriteOptions = {}): Writable {
    const p = options.exclusive ? this.norm(path) : this.follow(path);
    let opened = false;
    const open = () => {
      if (opened) return;
      opened = true;
      this.parentDir(p, "open");
      const existing = this.nodes.get(p);
      if (existing && options.exclusive) throw fsError("EEXIST", "open", path);
      if (!existing || !options.append)
        this.nodes.set(p, {
          kind: "file",
          data: Buffer.alloc(0),
          mode: options.mode ?? 0o600,
          mtimeMs: this.now,
          ino: existing?.ino ?? this.nextIno++,
        });
    };
    return new Writable({
      construct: (cb) => {
        try {
          open();
          cb();
        } catch (err) {
          cb(err as Error);
        }
      },
      write: (chunk: Buffer, _enc, cb) => {
        const n = this.nodes.get(p);
        if (!n) return cb(fsError("ENOENT", "write", path));
        n.data = Buffer.concat([n.data, chunk]);
        n.mtimeMs = this.now;
        cb();
      },
    });
  }

  async sync(): Promise<void> {}

  /** test helper: bit rot. One byte XORed with `mask`, the size, mtime and inode kept, as a disk's silent corruption */
  flipByte(path: string, offset: number, mask = 1): void {
    const n = this.get(this.follow(path), "flip");
    if (n.kind !== "file" || offset < 0 || offset >= n.data.length) throw fsError("EINVAL", "flip", path);
    n.data[offset] = n.data[offset]! ^ (mask & 0xff || 1);
  }

  /** test helper: an independent copy (same paths, bytes, modes, inodes and clock), for sweeps that rerun one fixture many times */
  clone(): MemoryFileSystem {
    const copy = new MemoryFileSystem();
    copy.nodes.clear();
    const copied = new Map<Node, Node>(); // hard links stay one node in the copy
    for (const [key, node] of this.nodes) {
      let c = copied.get(node);
      if (!c) {
        c = { ...node, data: Buffer.from(node.data) };
        copied.set(node, c);
      }
      copy.nodes.set(key, c);
    }
    copy.nextIno = this.nextIno;
    copy.now = this.now;
    return copy;
  }

  /** test helper: every file path under `root`, sorted */
  files(root = "/"): string[] {
    const r = this.norm(root);
    return [...this.nodes.entries()]
      .filter(([k, n]) => n.kind === "file" && (r === "/" || k.startsWith(`${r}/`)))
      .map(([k]) => k)
      .sort();
  }
}
