import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import type { ObjectStorage, PutOptions, PutResult, StoredObject, Immutability } from "../storage.js";

/** The in-memory driver: for tests of the repository logic, and to emulate a lock-capable bucket. */
export class MemoryStorage implements ObjectStorage {
  readonly kind = "memory" as const;
  readonly objects = new Map<string, { data: Buffer; sha256: string; lastModified: Date; lock?: PutOptions["lock"] }>();
  /**
   * `clock` is the bucket's own time, which decides whether a lock still holds; like every clock
   * in core it comes from the caller.
   */
  constructor(
    readonly url = "memory://test",
    private readonly lockEnabled = false,
    private readonly clock: () => Date = () => new Date(Date.UTC(2026, 0, 1)),
  ) {}

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const existing = this.objects.get(key);
    if (existing?.lock && existing.lock.retainUntil > this.clock()) throw Object.assign(new Error(`object ${key} is locked`), { code: "AccessDenied" });
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    this.objects.set(key, { data, sha256: options.sha256, lastModified: this.clock(), ...(options.lock && this.lockEnabled ? { lock: options.lock } : {}) });
    const actual = createHash("sha256").update(data).digest("hex");
    return { key, size: data.length, sha256: actual, confirmedBy: "reread", multipart: false };
  }
  async get(key: string): Promise<Readable> {
    const o = this.objects.get(key);
    if (!o) throw Object.assign(new Error(`no object ${key}`), { code: "ENOENT" });
    return Readable.from([o.data]);
  }
  async head(key: string): Promise<StoredObject | null> {
    const o = this.objects.get(key);
    if (!o) return null;
    return { key, size: o.data.length, sha256: o.sha256, lastModified: o.lastModified, retainUntil: o.lock?.retainUntil.toISOString() ?? null, lockMode: o.lock?.mode ?? null };
  }
  async *list(prefix: string, options: { shallow?: boolean } = {}): AsyncIterable<StoredObject> {
    for (const key of [...this.objects.keys()].sort())
      if (key.startsWith(prefix) && !(options.shallow && key.slice(prefix.length).includes("/"))) yield (await this.head(key))!;
  }
  locate(key: string): string {
    return `${this.url}/${key}`;
  }
  async delete(key: string): Promise<void> {
    const o = this.objects.get(key);
    if (o?.lock && o.lock.retainUntil > this.clock()) throw Object.assign(new Error(`object ${key} is locked`), { code: "AccessDenied" });
    this.objects.delete(key);
  }
  async extendLock(key: string, lock: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date }): Promise<void> {
    const o = this.objects.get(key);
    if (!o) throw Object.assign(new Error(`no object ${key}`), { code: "ENOENT" });
    if (!this.lockEnabled) throw Object.assign(new Error(`bucket has no object lock`), { code: "InvalidRequest" });
    if (o.lock && o.lock.retainUntil > lock.retainUntil) throw Object.assign(new Error(`retention of ${key} cannot be shortened`), { code: "AccessDenied" });
    o.lock = lock;
  }
  async immutability(): Promise<Immutability> {
    return { supported: true, enabled: this.lockEnabled, detail: this.lockEnabled ? "memory bucket with object lock" : "memory bucket without object lock" };
  }
}
