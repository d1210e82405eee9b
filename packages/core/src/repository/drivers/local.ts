import { createHash, randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../../fs/types.js";
import { errorCodeOf, isNotFound } from "../../errors.js";
import { dirname, join } from "../../util/paths.js";
import { HashingStream } from "../../util/hash.js";
import {
  ObjectNotFoundError,
  isStagedKey,
  stagedMismatch,
  stagedKey,
  type CreateOnlyResult,
  type Immutability,
  type ObjectStorage,
  type PutOptions,
  type PutResult,
  type StagedObject,
  type StorageFlags,
  type StoredObject,
} from "../storage.js";

export interface LocalStorageOptions {
  /**
   * Offsite copies: objects become 0400 files in 0500 folders once written, so a stray write
   * fails loudly. The backup root is writable (false): prune and the sweep remove files there.
   */
  readOnly?: boolean;
  /**
   * Keep each object's sha256 in "<key>.sha256.meta" (offsite targets). The backup root has
   * the policy's own layout (artifact, .sha256, manifest) and no extra files (false).
   */
  shaSidecars?: boolean;
  /**
   * Read every object back after writing it and hash it again (offsite targets: a share that
   * lies about writes is caught). The backup root trusts the hash taken on the way in (false).
   */
  confirmByReread?: boolean;
}

const SHA_SIDECAR = ".sha256.meta";

/**
 * A directory as storage: the backup root, or an offsite target (a mounted remote disk, an NFS
 * share). Objects are written atomically (a dot-file in the same folder, flush, rename, flush
 * the folder), so a reader sees the old object or the new, never a torn one.
 */
export class LocalStorage implements ObjectStorage {
  readonly kind = "file";
  readonly flags: StorageFlags = { cheapReads: true, permissions: true, retention: false };
  readonly url: string;
  private readonly readOnly: boolean;
  private readonly shaSidecars: boolean;
  private readonly confirmByReread: boolean;

  constructor(
    private readonly fs: FileSystem,
    private readonly root: string,
    options: LocalStorageOptions = {},
  ) {
    this.url = `file://${root}`;
    this.readOnly = options.readOnly ?? true;
    this.shaSidecars = options.shaSidecars ?? this.readOnly;
    this.confirmByReread = options.confirmByReread ?? this.readOnly;
    if (!this.readOnly) this.append = (key, text) => this.appendFile(key, text);
  }

  private path(key: string): string {
    return join(this.root, key);
  }

  locate(key: string): string {
    return this.path(key);
  }

  /**
   * How many writes of this driver have each read-only folder open. A folder is closed (0500)
   * only when the last one is done: closing it under a write still streaming would make that
   * write's rename fail for any user but root (root ignores the folder's mode).
   */
  private readonly openWrites = new Map<string, number>();

  private async ensureDir(dir: string): Promise<void> {
    if (this.readOnly) this.openWrites.set(dir, (this.openWrites.get(dir) ?? 0) + 1);
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
      if (this.readOnly) await this.fs.chmod(dirname(d), 0o700).catch(() => undefined);
      // Two writes racing into a new folder both find it missing: the second mkdir finds it made.
      await this.fs.mkdir(d, { mode: 0o700 }).catch((err: unknown) => {
        if (errorCodeOf(err) !== "EEXIST") throw err;
      });
    }
    if (this.readOnly) await this.fs.chmod(dir, 0o700);
  }

  private async closeDir(dir: string): Promise<void> {
    if (!this.readOnly) return;
    const open = (this.openWrites.get(dir) ?? 1) - 1;
    if (open > 0) {
      this.openWrites.set(dir, open);
      return;
    }
    this.openWrites.delete(dir);
    await this.fs.chmod(dir, 0o500).catch(() => undefined);
  }

  /** flush, rename over the key, record the sha256, flush the folder; then read it back to confirm */
  private async commitFile(
    key: string,
    tmp: string,
    written: { sha256: string; bytes: number },
  ): Promise<PutResult> {
    const sha256 = written.sha256;
    const target = this.path(key);
    const dir = dirname(target);
    await this.fs.sync(tmp);
    if (this.readOnly)
      for (const p of [target, `${target}${SHA_SIDECAR}`])
        await this.fs.chmod(p, 0o600).catch(() => undefined);
    // Everything the copy needs is in place before the rename that makes it appear (issue 20): its
    // sha256 sidecar, and its final mode. A kill after the rename leaves a whole, read-only copy
    // that verifies, not one "CONFIRMED no" forever or left 0600; a kill before it leaves a
    // sidecar with no object, which the next push replaces.
    if (this.shaSidecars) {
      const sidecar = `${target}${SHA_SIDECAR}`;
      const sidecarTmp = this.path(stagedKey(`${key}${SHA_SIDECAR}`, randomUUID().slice(0, 8)));
      await this.fs.writeFile(sidecarTmp, `${sha256}\n`, { mode: 0o600, exclusive: true });
      await this.fs.sync(sidecarTmp);
      if (this.readOnly) await this.fs.chmod(sidecarTmp, 0o400);
      await this.fs.rename(sidecarTmp, sidecar);
    }
    if (this.readOnly) await this.fs.chmod(tmp, 0o400);
    await this.fs.rename(tmp, target);
    await this.fs.sync(dir);
    if (!this.confirmByReread)
      return { key, size: written.bytes, sha256, confirmedBy: "hashed-on-write", multipart: false };
    // Confirm the copy by reading it back: a share that lies about writes is caught here.
    const back = createHash("sha256");
    let size = 0;
    for await (const c of this.fs.createReadStream(target)) {
      back.update(c as Buffer);
      size += (c as Buffer).length;
    }
    return { key, size, sha256: back.digest("hex"), confirmedBy: "reread", multipart: false };
  }

  /**
   * Create-only, as S3's If-None-Match: * PUT: an exclusive create (O_EXCL) decides which of
   * several racing creators makes the object; the others get `created: false`. The object is
   * written in place (no staged name a crash could leave behind), so a reader racing the creator
   * can see it empty for an instant. The backup root's identity is made this way. Without
   * serverTime the driver is still refused as a shared repository: a folder is one host's.
   */
  async createOnly(key: string, body: Buffer): Promise<CreateOnlyResult> {
    const target = this.path(key);
    const dir = dirname(target);
    await this.ensureDir(dir);
    try {
      try {
        await this.fs.writeFile(target, body, { mode: 0o600, exclusive: true });
      } catch (err) {
        if (errorCodeOf(err) === "EEXIST") return { created: false };
        throw err;
      }
      await this.fs.sync(target);
      if (this.shaSidecars) {
        const sidecarTmp = this.path(stagedKey(`${key}${SHA_SIDECAR}`, randomUUID().slice(0, 8)));
        const sha256 = createHash("sha256").update(body).digest("hex");
        await this.fs.writeFile(sidecarTmp, `${sha256}\n`, { mode: 0o600, exclusive: true });
        await this.fs.sync(sidecarTmp);
        if (this.readOnly) await this.fs.chmod(sidecarTmp, 0o400);
        await this.fs.rename(sidecarTmp, `${target}${SHA_SIDECAR}`);
      }
      if (this.readOnly) await this.fs.chmod(target, 0o400);
      await this.fs.sync(dir);
      return { created: true, at: new Date((await this.fs.lstat(target)).mtimeMs) };
    } finally {
      await this.closeDir(dir);
    }
  }

  /**
   * A writable folder (the backup root) appends, as si appends its events; read-only folders
   * (offsite targets, whose files are 0400 once written) do not.
   */
  readonly append?: (key: string, text: string) => Promise<void>;

  private async appendFile(key: string, text: string): Promise<void> {
    await this.ensureDir(dirname(this.path(key)));
    await this.fs.appendFile(this.path(key), text, { mode: 0o600 });
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const staged = await this.stage(key);
    try {
      await pipeline(body, staged.stream);
      return await staged.commit(options.sha256);
    } finally {
      await staged.abort();
    }
  }

  async stage(key: string): Promise<StagedObject> {
    const target = this.path(key);
    const dir = dirname(target);
    await this.ensureDir(dir);
    const tmp = this.path(stagedKey(key, randomUUID().slice(0, 8)));
    const hashing = new HashingStream();
    const written = pipeline(hashing, this.fs.createWriteStream(tmp, { mode: 0o600, exclusive: true }));
    written.catch(() => undefined);
    let settled = false;
    return {
      stream: hashing,
      commit: async (expectSha256?: string) => {
        try {
          await written;
          const sha256 = hashing.digest();
          if (expectSha256 !== undefined && sha256 !== expectSha256)
            throw stagedMismatch(this.locate(key), sha256, expectSha256);
          return await this.commitFile(key, tmp, { sha256, bytes: hashing.bytes });
        } catch (err) {
          // Remove the staged bytes while the folder is still open: once it is read-only again
          // (0500), a user other than root could no longer unlink them.
          await this.fs.rm(tmp, { force: true }).catch(() => undefined);
          throw err;
        } finally {
          settled = true;
          await this.closeDir(dir);
        }
      },
      abort: async () => {
        if (!hashing.destroyed && !hashing.writableFinished) hashing.destroy();
        await written.catch(() => undefined);
        // A settled stage was committed (its bytes renamed) or failed its commit (which removed
        // them): nothing is left to drop.
        if (settled) return;
        await this.fs.rm(tmp, { force: true });
        await this.closeDir(dir);
        settled = true;
      },
    };
  }

  async get(key: string): Promise<Readable> {
    try {
      const st = await this.fs.lstat(this.path(key));
      if (st.kind !== "file") throw new ObjectNotFoundError(this.locate(key));
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(this.locate(key), err);
      throw err;
    }
    return this.fs.createReadStream(this.path(key));
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      const st = await this.fs.lstat(this.path(key));
      if (st.kind !== "file") return null;
      let sha256: string | null = null;
      if (this.shaSidecars) {
        try {
          sha256 =
            Buffer.from(await this.fs.readFile(`${this.path(key)}${SHA_SIDECAR}`))
              .toString("utf8")
              .trim() || null;
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
      return {
        key,
        size: st.size,
        sha256,
        lastModified: new Date(st.mtimeMs),
        retainUntil: null,
        lockMode: this.readOnly ? "read-only files" : null,
        mode: st.mode,
        uid: st.uid,
      };
    } catch (err) {
      if (isNotFound(err) || (err as { code?: string }).code === "ENOTDIR") return null;
      throw err;
    }
  }

  /** every regular file under the prefix's folder, staged ones included, in key order */
  private async *walk(prefix: string, shallow: boolean): AsyncGenerator<{ key: string; name: string }> {
    const self = this;
    const isSidecar = (name: string) => this.shaSidecars && name.endsWith(SHA_SIDECAR);
    const walkDir = async function* (rel: string): AsyncGenerator<{ key: string; name: string }> {
      let entries;
      try {
        entries = await self.fs.readdir(rel ? self.path(rel) : self.root);
      } catch (err) {
        if (isNotFound(err) || (err as { code?: string }).code === "ENOTDIR") return;
        throw err;
      }
      for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.kind === "directory") {
          if (!shallow) yield* walkDir(key);
        } else if (e.kind === "file" && key.startsWith(prefix) && !isSidecar(e.name))
          yield { key, name: e.name };
      }
    };
    yield* walkDir(prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "");
  }

  async *list(prefix: string, options: { shallow?: boolean } = {}): AsyncIterable<StoredObject> {
    for await (const { key } of this.walk(prefix, options.shallow === true)) {
      if (isStagedKey(key)) continue;
      const h = await this.head(key);
      if (h) yield h;
    }
  }

  async delete(key: string): Promise<void> {
    const target = this.path(key);
    const dir = dirname(target);
    if (this.readOnly) {
      this.openWrites.set(dir, (this.openWrites.get(dir) ?? 0) + 1);
      await this.fs.chmod(dir, 0o700).catch(() => undefined);
    }
    try {
      await this.fs.rm(target, { force: true });
      if (this.shaSidecars) await this.fs.rm(`${target}${SHA_SIDECAR}`, { force: true });
    } finally {
      await this.closeDir(dir);
    }
  }

  async sweepStaged(prefix: string, olderThan: Date): Promise<string[]> {
    const swept: string[] = [];
    for await (const { key } of this.walk(prefix, false)) {
      if (!isStagedKey(key)) continue;
      const st = await this.fs.lstat(this.path(key)).catch(() => null);
      if (!st || st.mtimeMs >= olderThan.getTime()) continue;
      await this.delete(key);
      swept.push(key);
    }
    return swept;
  }

  async immutability(): Promise<Immutability> {
    return {
      supported: false,
      enabled: false,
      detail:
        "a directory cannot enforce retention; copies are read-only (0400 in 0500) and checked by their checksums",
    };
  }
}
