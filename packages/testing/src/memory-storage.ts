import { Readable, Writable } from "node:stream";
import { createHash, randomUUID } from "node:crypto";
import { PaasBackupError, ExitCode } from "@paas-backup/core/errors";
import { ObjectNotFoundError, isStagedKey, stagedKey, stagedMismatch } from "@paas-backup/core/repository";
import type {
  CreateOnlyResult,
  ObjectStorage,
  PutOptions,
  PutResult,
  StoredObject,
  Immutability,
  StagedObject,
  StorageFlags,
} from "@paas-backup/core/repository";

interface MemoryObject {
  data: Buffer;
  sha256: string;
  lastModified: Date;
  lock?: PutOptions["lock"];
}

/**
 * The in-memory storage driver: for tests of the repository logic, and to emulate a bucket with
 * Object Lock (which s3rver does not enforce). It passes the same conformance suite as the
 * local and S3 drivers. `objects` is open so tests can damage what is stored.
 */
export class MemoryStorage implements ObjectStorage {
  readonly kind = "memory";
  readonly flags: StorageFlags;
  readonly objects = new Map<string, MemoryObject>();
  /**
   * `clock` is the bucket's own time, which decides whether a lock still holds; like every clock
   * in core it comes from the caller.
   */
  constructor(
    readonly url = "memory://test",
    private readonly lockEnabled = false,
    private readonly clock: () => Date = () => new Date(Date.UTC(2026, 0, 1)),
  ) {
    this.flags = { cheapReads: false, permissions: false, retention: lockEnabled };
  }

  private refuseLocked(key: string): void {
    const existing = this.objects.get(key);
    if (existing?.lock && existing.lock.retainUntil > this.clock())
      throw new PaasBackupError(
        "PAAS_BACKUP_STORAGE_FAILED",
        ExitCode.environment,
        `${this.locate(key)} is locked until ${existing.lock.retainUntil.toISOString()}`,
        {
          path: this.locate(key),
          remediation: "The object is under write-once retention; wait until it expires.",
          stage: "storage",
        },
      );
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    this.refuseLocked(key);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    const actual = createHash("sha256").update(data).digest("hex");
    if (actual !== options.sha256) throw stagedMismatch(this.locate(key), actual, options.sha256);
    this.objects.set(key, {
      data,
      sha256: options.sha256,
      lastModified: this.clock(),
      ...(options.lock && this.lockEnabled ? { lock: options.lock } : {}),
    });
    return { key, size: data.length, sha256: actual, confirmedBy: "reread", multipart: false };
  }

  async stage(key: string): Promise<StagedObject> {
    const staging = stagedKey(key, randomUUID().slice(0, 8));
    const chunks: Buffer[] = [];
    // Staged bytes are stored under their staging key as they arrive, as a disk would hold them.
    this.objects.set(staging, { data: Buffer.alloc(0), sha256: "", lastModified: this.clock() });
    const stream = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        chunks.push(chunk);
        const o = this.objects.get(staging);
        if (o) o.data = Buffer.concat(chunks);
        cb();
      },
    });
    return {
      stream,
      commit: async (expectSha256?: string) => {
        if (!stream.writableFinished)
          throw new Error(`commit of ${this.locate(key)} before its stream finished`);
        const staged = this.objects.get(staging);
        if (!staged) throw new ObjectNotFoundError(this.locate(staging));
        const sha256 = createHash("sha256").update(staged.data).digest("hex");
        if (expectSha256 !== undefined && sha256 !== expectSha256)
          throw stagedMismatch(this.locate(key), sha256, expectSha256);
        this.refuseLocked(key);
        this.objects.delete(staging);
        this.objects.set(key, { data: staged.data, sha256, lastModified: this.clock() });
        return { key, size: staged.data.length, sha256, confirmedBy: "reread", multipart: false };
      },
      abort: async () => {
        if (!stream.destroyed && !stream.writableFinished) stream.destroy();
        this.objects.delete(staging);
      },
    };
  }

  /** `honoursConditions: false` plays a server that ignores If-None-Match (s3rver, a versioned RGW 16 bucket) */
  honoursConditions = true;

  async createOnly(key: string, body: Buffer): Promise<CreateOnlyResult> {
    if (this.objects.has(key) && this.honoursConditions) return { created: false };
    const at = this.clock();
    this.objects.set(key, {
      data: Buffer.from(body),
      sha256: createHash("sha256").update(body).digest("hex"),
      lastModified: at,
    });
    return { created: true, at };
  }

  async serverTime(): Promise<Date> {
    return this.clock();
  }

  async get(key: string): Promise<Readable> {
    const o = this.objects.get(key);
    if (!o || isStagedKey(key)) throw new ObjectNotFoundError(this.locate(key));
    return Readable.from([o.data]);
  }

  async head(key: string): Promise<StoredObject | null> {
    const o = this.objects.get(key);
    if (!o || isStagedKey(key)) return null;
    return {
      key,
      size: o.data.length,
      sha256: o.sha256,
      lastModified: o.lastModified,
      retainUntil: o.lock?.retainUntil.toISOString() ?? null,
      lockMode: o.lock?.mode ?? null,
    };
  }

  async *list(prefix: string, options: { shallow?: boolean } = {}): AsyncIterable<StoredObject> {
    for (const key of [...this.objects.keys()].sort()) {
      if (
        !key.startsWith(prefix) ||
        isStagedKey(key) ||
        (options.shallow && key.slice(prefix.length).includes("/"))
      )
        continue;
      const h = await this.head(key);
      if (h) yield h;
    }
  }

  locate(key: string): string {
    return `${this.url}/${key}`;
  }

  async delete(key: string): Promise<void> {
    this.refuseLocked(key);
    this.objects.delete(key);
  }

  async sweepStaged(prefix: string, olderThan: Date): Promise<string[]> {
    const swept: string[] = [];
    for (const [key, o] of [...this.objects]) {
      if (key.startsWith(prefix) && isStagedKey(key) && o.lastModified < olderThan) {
        this.objects.delete(key);
        swept.push(key);
      }
    }
    return swept.sort();
  }

  /** Object Lock retention can only move later, and only on a bucket that has Object Lock. */
  async extendLock(
    key: string,
    lock: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date },
  ): Promise<void> {
    const o = this.objects.get(key);
    if (!o || isStagedKey(key)) throw new ObjectNotFoundError(this.locate(key));
    if (!this.lockEnabled || (o.lock && o.lock.retainUntil > lock.retainUntil))
      throw new PaasBackupError(
        "PAAS_BACKUP_STORAGE_FAILED",
        ExitCode.environment,
        `${this.locate(key)}: retention cannot be ${this.lockEnabled ? "shortened" : "set on a bucket without Object Lock"}`,
        {
          path: this.locate(key),
          remediation: "Extend, never shorten, and only on a bucket with Object Lock.",
          stage: "storage",
        },
      );
    o.lock = lock;
  }

  async immutability(): Promise<Immutability> {
    return {
      supported: true,
      enabled: this.lockEnabled,
      detail: this.lockEnabled ? "memory bucket with object lock" : "memory bucket without object lock",
    };
  }
}
