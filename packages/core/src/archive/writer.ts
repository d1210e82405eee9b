import type archiver from "archiver";
import type { Readable, Writable } from "node:stream";

/**
 * A tar.gz writer that takes one entry at a time and resolves when the entry has been consumed,
 * so at most one source file is open and memory stays flat. Entry modes are fixed at 0700/0600
 * because the archive is private state whatever the source's modes were.
 */
/** archiver is imported when a snapshot is written, not when any command starts (issue 14: CLI start). */
let archiverLoad: Promise<typeof archiver> | null = null;
let loadedArchiver: typeof archiver | null = null;

/** An ArchiveWriter once archiver is loaded; snapshot creation uses this. */
export async function openArchiveWriter(sink: Writable, gzipLevel = 6): Promise<ArchiveWriter> {
  loadedArchiver ??= await (archiverLoad ??= import("archiver").then((m) => m.default));
  return new ArchiveWriter(sink, gzipLevel);
}

export class ArchiveWriter {
  private readonly archive: archiver.Archiver;
  private failure: Error | null = null;
  private readonly done: Promise<void>;

  constructor(sink: Writable, gzipLevel = 6) {
    if (!loadedArchiver) throw new Error("ArchiveWriter: construct it with openArchiveWriter(), which loads archiver");
    this.archive = loadedArchiver("tar", { gzip: true, gzipOptions: { level: gzipLevel } });
    this.archive.on("warning", (err: Error) => {
      this.failure ??= err;
    });
    this.done = new Promise<void>((resolve, reject) => {
      this.archive.on("error", (err: Error) => {
        this.failure ??= err;
        reject(err);
      });
      sink.on("error", (err: Error) => {
        this.failure ??= err;
        reject(err);
      });
      sink.on("close", () => resolve());
      sink.on("finish", () => resolve());
    });
    this.done.catch(() => undefined);
    this.archive.pipe(sink);
  }

  private appendAndWait(source: Readable | Buffer | null, data: archiver.EntryData & Record<string, unknown>): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      const onEntry = () => {
        this.archive.off("error", onError);
        resolve();
      };
      const onError = (err: Error) => {
        this.archive.off("entry", onEntry);
        reject(err);
      };
      this.archive.once("entry", onEntry);
      this.archive.once("error", onError);
      if (source && typeof (source as Readable).on === "function") {
        (source as Readable).once("error", (err) => {
          this.failure ??= err;
          onError(err);
          this.archive.abort();
        });
      }
      this.archive.append(source as never, data);
    });
  }

  addDirectory(path: string, mtime: Date): Promise<void> {
    return this.appendAndWait(null, { name: `${path}/`, type: "directory", mode: 0o700, date: mtime });
  }

  addBuffer(path: string, content: Buffer, mtime: Date): Promise<void> {
    return this.appendAndWait(content, { name: path, mode: 0o600, date: mtime });
  }

  /** `source` must yield exactly `size` bytes, else the archive fails (no torn entry survives). */
  addStream(path: string, source: Readable, size: number, mtime: Date): Promise<void> {
    return this.appendAndWait(source, { name: path, mode: 0o600, date: mtime, stats: { size } as never });
  }

  /** Close the archive with the trailing "./" entry that carries the manifest as a pax comment. */
  async finish(manifestJson: string, mtime: Date): Promise<void> {
    await this.appendAndWait(null, { name: "./", type: "directory", mode: 0o700, date: mtime, pax: { comment: manifestJson } });
    await this.archive.finalize();
    await this.done;
    if (this.failure) throw this.failure;
  }

  abort(): void {
    this.archive.abort();
  }
}
