import { createHash, randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../../fs/types.js";
import { isNotFound } from "../../errors.js";
import { dirname, join } from "../../util/paths.js";
import { HashingStream } from "../../util/hash.js";
import type { Immutability, ObjectStorage, PutOptions, PutResult, StoredObject } from "../storage.js";

/**
 * A directory as a storage target (a mounted remote disk, an NFS share). Objects are written
 * atomically (temporary name, flush, rename) and then made read-only: 0400 files in 0500 folders,
 * so a stray write fails loudly; the sha256 of each object is kept in "<key>.sha256.meta".
 */
export class LocalStorage implements ObjectStorage {
  readonly kind = "file" as const;
  readonly url: string;
  constructor(
    private readonly fs: FileSystem,
    private readonly root: string,
    private readonly readOnly = true,
  ) {
    this.url = `file://${root}`;
  }

  private path(key: string): string {
    return join(this.root, key);
  }

  locate(key: string): string {
    return this.path(key);
  }

  private async ensureDir(dir: string): Promise<void> {
    // Read-only folders must be opened up briefly to add an object, then closed again.
    const missing: string[] = [];
    for (let d = dir; d !== this.root && d.startsWith(this.root); d = dirname(d)) {
      try {
        await this.fs.lstat(d);
        break;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        missing.unshift(d);
      }
    }
    await this.fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    for (const d of missing) {
      await this.fs.chmod(dirname(d), 0o700).catch(() => undefined);
      await this.fs.mkdir(d, { mode: 0o700 });
    }
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const target = this.path(key);
    const dir = dirname(target);
    await this.ensureDir(dir);
    await this.fs.chmod(dir, 0o700);
    const tmp = join(dir, `.${key.split("/").pop()}.${randomUUID().slice(0, 8)}.partial`);
    try {
      const hashing = new HashingStream();
      await pipeline(body, hashing, this.fs.createWriteStream(tmp, { mode: 0o600, exclusive: true }));
      await this.fs.sync(tmp);
      const written = hashing.digest();
      if (written !== options.sha256) throw new Error(`bytes written to ${target} hash to ${written}, expected ${options.sha256}`);
      for (const p of [target, `${target}.sha256.meta`]) await this.fs.chmod(p, 0o600).catch(() => undefined);
      await this.fs.rename(tmp, target);
      await this.fs.writeFile(`${target}.sha256.meta`, `${options.sha256}\n`, { mode: 0o600 });
      await this.fs.sync(dir);
      // Confirm the copy by reading it back: a share that lies about writes is caught here.
      const back = createHash("sha256");
      let size = 0;
      for await (const c of this.fs.createReadStream(target)) {
        back.update(c as Buffer);
        size += (c as Buffer).length;
      }
      if (this.readOnly) {
        await this.fs.chmod(target, 0o400);
        await this.fs.chmod(`${target}.sha256.meta`, 0o400);
      }
      return { key, size, sha256: back.digest("hex"), confirmedBy: "reread", multipart: false };
    } finally {
      await this.fs.rm(tmp, { force: true });
      if (this.readOnly) await this.fs.chmod(dir, 0o500).catch(() => undefined);
    }
  }

  async get(key: string): Promise<Readable> {
    await this.fs.lstat(this.path(key));
    return this.fs.createReadStream(this.path(key));
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      const st = await this.fs.lstat(this.path(key));
      let sha256: string | null = null;
      try {
        sha256 = Buffer.from(await this.fs.readFile(`${this.path(key)}.sha256.meta`)).toString("utf8").trim() || null;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      return { key, size: st.size, sha256, lastModified: new Date(st.mtimeMs), retainUntil: null, lockMode: this.readOnly ? "read-only files" : null, mode: st.mode, uid: st.uid };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async *list(prefix: string, options: { shallow?: boolean } = {}): AsyncIterable<StoredObject> {
    const shallow = options.shallow === true;
    const walk = async function* (self: LocalStorage, rel: string): AsyncGenerator<StoredObject> {
      let entries;
      try {
        entries = await self.fs.readdir(rel ? self.path(rel) : self.root);
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.kind === "directory") {
          if (!shallow) yield* walk(self, key);
        }
        else if (e.kind === "file" && !e.name.endsWith(".sha256.meta") && !e.name.endsWith(".partial") && key.startsWith(prefix)) {
          const h = await self.head(key);
          if (h) yield h;
        }
      }
    };
    yield* walk(this, prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "");
  }

  async delete(key: string): Promise<void> {
    const target = this.path(key);
    const dir = dirname(target);
    await this.fs.chmod(dir, 0o700).catch(() => undefined);
    try {
      await this.fs.rm(target, { force: true });
      await this.fs.rm(`${target}.sha256.meta`, { force: true });
    } finally {
      if (this.readOnly) await this.fs.chmod(dir, 0o500).catch(() => undefined);
    }
  }

  async immutability(): Promise<Immutability> {
    return { supported: false, enabled: false, detail: "a directory cannot enforce retention; copies are read-only (0400 in 0500) and checked by their checksums" };
  }
}
