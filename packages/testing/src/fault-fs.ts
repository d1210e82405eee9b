import { Readable, Writable } from "node:stream";
import type { DirEntry, FileReader, FileStat, FileSystem, WriteOptions } from "@paas-backup/core/fs";

/**
 * A FileSystem that wraps another and injects one fault, for SQLite-style "fail at every call"
 * sweeps (issue 9 §7). Every call counts, in the order the code under test makes them:
 * each method call, opening a read or write stream, and each chunk written to a write stream.
 *
 * - mode "throw": call number `at` rejects with a Node-style error (`code` EIO, ENOSPC or EACCES)
 *   and does nothing; later calls go through, so the code's own cleanup runs.
 * - mode "crash": call number `at` and every call after it never reach the wrapped filesystem;
 *   they reject with a FaultCrashError (code "EFAULTCRASH"). The test then "reboots" by using the
 *   wrapped filesystem directly, which holds exactly what the process had done before dying.
 *
 * Without a fault it only counts (see `countFileSystemCalls`).
 */
export type FaultMode = "throw" | "crash";
export type FaultErrorCode = "EIO" | "ENOSPC" | "EACCES";

export interface FaultPlan {
  /** 1-based number of the call that fails */
  at: number;
  mode: FaultMode;
  /** error code of the thrown error in "throw" mode (default EIO) */
  code?: FaultErrorCode;
}

export interface FaultCall {
  n: number;
  op: string;
  path: string;
}

const MESSAGES: Record<FaultErrorCode, string> = {
  EIO: "i/o error",
  ENOSPC: "no space left on device",
  EACCES: "permission denied",
};

/** the error every call rejects with once a simulated crash happened */
export class FaultCrashError extends Error {
  readonly code = "EFAULTCRASH";
  constructor(readonly call: FaultCall) {
    super(`simulated crash at call ${call.n} (${call.op} ${call.path})`);
  }
}

function injectedError(code: FaultErrorCode, call: FaultCall): Error {
  return Object.assign(
    new Error(`${code}: ${MESSAGES[code]}, ${call.op} '${call.path}' (injected at call ${call.n})`),
    {
      code,
      errno: code === "EIO" ? -5 : code === "ENOSPC" ? -28 : -13,
      syscall: call.op,
      path: call.path,
    },
  );
}

export class FaultInjectingFileSystem implements FileSystem {
  /** number of calls made so far (including the faulted one and any after a crash) */
  calls = 0;
  /** every call, in order; handy to say which call a failing sweep step hit */
  readonly log: FaultCall[] = [];
  /** the call the fault was injected at, once it happened */
  injected: FaultCall | null = null;
  crashed = false;
  /** files opened with openRead and not closed yet: a sweep checks every run leaves none open */
  openReaders = 0;

  constructor(
    readonly inner: FileSystem,
    readonly plan: FaultPlan | null = null,
  ) {}

  /** count one call; throws when this call is the faulted one or comes after a crash */
  private enter(op: string, path: string): void {
    const call: FaultCall = { n: ++this.calls, op, path };
    this.log.push(call);
    if (this.crashed) throw new FaultCrashError(call);
    if (!this.plan || call.n !== this.plan.at) return;
    this.injected = call;
    if (this.plan.mode === "crash") {
      this.crashed = true;
      throw new FaultCrashError(call);
    }
    throw injectedError(this.plan.code ?? "EIO", call);
  }

  private async run<T>(op: string, path: string, work: () => Promise<T>): Promise<T> {
    this.enter(op, path);
    return work();
  }

  lstat(path: string): Promise<FileStat> {
    return this.run("lstat", path, () => this.inner.lstat(path));
  }
  readdir(path: string): Promise<DirEntry[]> {
    return this.run("readdir", path, () => this.inner.readdir(path));
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.run("readFile", path, () => this.inner.readFile(path));
  }
  readRange(path: string, position: number, length: number): Promise<Uint8Array> {
    return this.run("readRange", path, () => this.inner.readRange(path, position, length));
  }
  writeFile(path: string, data: Uint8Array | string, options?: WriteOptions): Promise<void> {
    return this.run("writeFile", path, () => this.inner.writeFile(path, data, options));
  }
  appendFile(path: string, data: Uint8Array | string, options?: { mode?: number }): Promise<void> {
    return this.run("appendFile", path, () => this.inner.appendFile(path, data, options));
  }
  mkdir(path: string, options?: { mode?: number; recursive?: boolean }): Promise<void> {
    return this.run("mkdir", path, () => this.inner.mkdir(path, options));
  }
  rename(from: string, to: string): Promise<void> {
    return this.run("rename", `${from} -> ${to}`, () => this.inner.rename(from, to));
  }
  rm(path: string, options?: { recursive?: boolean; force?: boolean }): Promise<void> {
    return this.run("rm", path, () => this.inner.rm(path, options));
  }
  chmod(path: string, mode: number): Promise<void> {
    return this.run("chmod", path, () => this.inner.chmod(path, mode));
  }
  sync(path: string): Promise<void> {
    return this.run("sync", path, () => this.inner.sync(path));
  }
  link(existing: string, newPath: string): Promise<void> {
    return this.run("link", `${existing} -> ${newPath}`, () => this.inner.link(existing, newPath));
  }
  realpath(path: string): Promise<string> {
    return this.run("realpath", path, () => this.inner.realpath(path));
  }

  /** opening is one call and each read one more (a fault mid-file); closing is not counted */
  async openRead(path: string): Promise<FileReader> {
    this.enter("openRead", path);
    const inner = this.inner.openRead
      ? await this.inner.openRead(path)
      : await (async (): Promise<FileReader> => {
          const data = await this.inner.readFile(path);
          return {
            read: async (into, position) => {
              const bytes = data.subarray(position, position + into.length);
              into.set(bytes);
              return bytes.length;
            },
            close: async () => undefined,
          };
        })();
    this.openReaders++;
    let closed = false;
    return {
      read: async (into, position) => {
        this.enter("read", path);
        return inner.read(into, position);
      },
      close: async () => {
        if (!closed) this.openReaders--;
        closed = true;
        await inner.close();
      },
    };
  }

  /** opening the stream is one call (counted when the stream is created); reads are not counted */
  createReadStream(path: string, options?: { start?: number; end?: number }): Readable {
    try {
      this.enter("createReadStream", path);
    } catch (err) {
      return new Readable({
        read() {
          this.destroy(err as Error);
        },
      });
    }
    return this.inner.createReadStream(path, options);
  }

  /** opening is one call (counted when created), and each chunk written is one more */
  createWriteStream(path: string, options?: WriteOptions): Writable {
    let openError: Error | null = null;
    let inner: Writable | null = null;
    try {
      this.enter("createWriteStream", path);
      inner = this.inner.createWriteStream(path, options);
    } catch (err) {
      openError = err as Error;
    }
    let innerError: Error | null = null;
    inner?.on("error", (err) => {
      innerError = err;
    });
    const self = this;
    return new Writable({
      construct(cb) {
        cb(openError ?? undefined);
      },
      write(chunk: Buffer, encoding, cb) {
        if (innerError) return cb(innerError);
        try {
          self.enter("write", path);
        } catch (err) {
          // The bytes never reach the file; stop the wrapped stream without flushing more.
          inner!.destroy();
          return cb(err as Error);
        }
        inner!.write(chunk, encoding, (err) => cb(err ?? innerError ?? undefined));
      },
      final(cb) {
        if (innerError) return cb(innerError);
        if (self.crashed) {
          inner!.destroy();
          return cb(new FaultCrashError({ n: self.calls, op: "close", path }));
        }
        const done = (err?: Error | null) => {
          inner!.off("finish", onFinish);
          inner!.off("error", done);
          cb(err ?? undefined);
        };
        const onFinish = () => done();
        inner!.once("finish", onFinish);
        inner!.once("error", done);
        inner!.end();
      },
      destroy(err, cb) {
        if (inner && !inner.writableFinished) inner.destroy();
        cb(err);
      },
    });
  }
}

/**
 * How many filesystem calls `operation` makes on a fresh fixture, so that a sweep can fault
 * every one of them. `setup` builds the fixture and returns the filesystem to wrap.
 */
export async function countFileSystemCalls(
  setup: () => Promise<FileSystem>,
  operation: (fs: FileSystem) => Promise<unknown>,
): Promise<{ calls: number; log: FaultCall[] }> {
  const fs = new FaultInjectingFileSystem(await setup());
  await operation(fs);
  return { calls: fs.calls, log: fs.log };
}
