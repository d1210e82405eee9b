import { createHash, type Hash } from "node:crypto";
import { Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError, SafetyError } from "../errors.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { readArchive, type ArchiveEntryInfo } from "../archive/reader.js";
import { parseManifest } from "../manifest/io.js";
import { canonicalJson, type Manifest, type ManifestFile } from "../manifest/schema.js";
import { hardExclusionReason } from "../policy/selection.js";
import type { SnapshotRef } from "../repository/repository.js";
import { dirname, isWithin, join } from "../util/paths.js";

export interface MaterializeOptions {
  fs: FileSystem;
  /** oldest (a full) first */
  chain: readonly SnapshotRef[];
  /** folder to write into (must be new and empty), or null to check without writing */
  target: string | null;
  decryptor?: ArtifactDecryptor;
  /** for archives with no manifest: refuse past this many times the artifact's size */
  maxExpansion?: number;
  onBytes?: (n: number) => void;
}

export interface MaterializeResult {
  /** the files the newest link describes, each checked: path, size, sha256 */
  files: { path: string; size: number; sha256: string }[];
  /** entries of hand-made archives that policy keeps out of a context (vault/, secrets): not restored */
  notRestored: { path: string; reason: string }[];
  bytes: number;
}

interface FileState {
  hash: Hash;
  size: number;
}

function disagree(label: string, path: string, why: string): SafetyError {
  return new SafetyError("PAAS_BACKUP_MANIFEST_DISAGREES", `archive ${label} entry ${JSON.stringify(path)} disagrees with its manifest: ${why}`, {
    path: label,
    remediation: "Do not restore this artifact; it was altered after it was written. Restore an older verified snapshot.",
    stage: "archive",
    data: { entry: path, reason: why },
  });
}

function integrity(label: string, message: string): IntegrityError {
  return new IntegrityError("PAAS_BACKUP_CONTENT_MISMATCH", message, {
    path: label,
    remediation: "The snapshot does not reproduce the state it describes: restore an older verified snapshot or fetch an offsite copy.",
    stage: "verify",
  });
}

/** Open an artifact as a plaintext tar.gz stream (decrypting when it is an .age artifact). */
export async function openArtifact(snapshot: SnapshotRef, decryptor?: ArtifactDecryptor): Promise<Readable> {
  if (snapshot.encrypted && !decryptor) {
    throw new SafetyError("PAAS_BACKUP_IDENTITY_REQUIRED", `snapshot ${snapshot.id} is encrypted (${snapshot.artifactPath}) and no identity was given`, {
      path: snapshot.artifactPath,
      remediation: "Pass --identity <file> with an age identity whose recipient the snapshot was encrypted to.",
      stage: "decrypt",
    });
  }
  const raw = await snapshot.storage.get(snapshot.artifactKey);
  if (!snapshot.encrypted) return raw;
  const plain = decryptor!.decrypt();
  raw.on("error", (err) => plain.destroy(err));
  raw.pipe(plain);
  return plain as unknown as Readable;
}

/**
 * Replay a chain of snapshots: the full, then each incremental's whole files, appended log tails
 * and deletions. Every entry is checked against its link's manifest before a byte is written,
 * every file's sha256 is tracked across the chain, and the result is checked against the newest
 * manifest: byte-identical to the context at that time, or an error.
 */
export async function materializeChain(options: MaterializeOptions): Promise<MaterializeResult> {
  const { fs, chain, target } = options;
  const state = new Map<string, FileState>();
  const notRestored: { path: string; reason: string }[] = [];
  let bytes = 0;
  const madeDirs = new Set<string>();

  const ensureDir = async (rel: string) => {
    if (!target || rel === "" || rel === "." || madeDirs.has(rel)) return;
    await ensureDir(dirname(rel) === "." ? "" : dirname(rel));
    await fs.mkdir(join(target, rel), { mode: 0o700, recursive: true });
    madeDirs.add(rel);
  };

  for (const link of chain) {
    const manifest = link.manifest;
    const byPath = new Map<string, ManifestFile>((manifest?.files ?? []).map((f) => [f.path, f]));
    const label = link.artifactPath;
    const source = await openArtifact(link, options.decryptor);
    // With a manifest the limit is exact: every entry's size is checked against it before a byte
    // is read. A hand-made archive has only the expansion ratio to go by.
    const maxExpansion = options.maxExpansion ?? 200;
    const maxTotalBytes = manifest ? manifest.totals.storedBytes : Math.max(link.bytes * maxExpansion, 64 * 1024 * 1024);
    const maxDecompressionRatio = manifest ? Number.POSITIVE_INFINITY : Math.max(maxExpansion, 1000);

    const onEntry = async (entry: ArchiveEntryInfo, body: Readable): Promise<void> => {
      if (entry.type === "directory") {
        body.resume();
        if (!manifest && hardExclusionReason(entry.path)) return;
        await ensureDir(entry.path);
        return;
      }
      let expected: ManifestFile | undefined;
      if (manifest) {
        expected = byPath.get(entry.path);
        if (!expected) throw disagree(label, entry.path, "not listed in the manifest");
        if (expected.stored === "unchanged") throw disagree(label, entry.path, "listed as unchanged, yet stored");
        const want = expected.stored === "append" ? expected.size - (expected.appendOffset ?? 0) : expected.size;
        if (entry.size !== want) throw disagree(label, entry.path, `size ${entry.size}, manifest says ${want}`);
      } else {
        const reason = hardExclusionReason(entry.path);
        if (reason) {
          body.resume();
          notRestored.push({ path: entry.path, reason });
          return;
        }
      }
      const append = expected?.stored === "append";
      let st = state.get(entry.path);
      if (append) {
        if (!st || st.size !== expected!.appendOffset) {
          throw integrity(label, `${entry.path} in ${link.id} extends ${expected!.appendOffset} bytes, but the chain before it holds ${st?.size ?? 0}`);
        }
        if (st.hash.copy().digest("hex") !== expected!.prefixSha256)
          throw integrity(label, `${entry.path} in ${link.id} extends content that the chain before it does not hold`);
      } else {
        st = { hash: createHash("sha256"), size: 0 };
        state.set(entry.path, st);
      }
      if (target) {
        const abs = join(target, entry.path);
        if (!isWithin(target, abs)) throw disagree(label, entry.path, "resolves outside the target folder");
        await ensureDir(dirname(entry.path) === "." ? "" : dirname(entry.path));
      }
      const current = st;
      const sink = target
        ? fs.createWriteStream(join(target, entry.path), { mode: 0o600, append })
        : new Writable({ write: (_c, _e, cb) => cb() });
      const counter = new Writable({
        write(chunk: Buffer, _enc, cb) {
          current.hash.update(chunk);
          current.size += chunk.length;
          bytes += chunk.length;
          options.onBytes?.(chunk.length);
          if (sink.write(chunk)) cb();
          else sink.once("drain", () => cb());
        },
        final(cb) {
          sink.end(cb);
        },
      });
      // A write error (a full disk: ENOSPC) fails the entry instead of going unhandled.
      sink.on("error", (err: Error) => counter.destroy(err));
      await pipeline(body, counter);
      if (expected && current.hash.copy().digest("hex") !== expected.sha256)
        throw integrity(label, `${entry.path} in ${link.id} does not match its manifest sha256`);
    };

    const result = await readArchive(source, { label, onEntry, maxTotalBytes, maxDecompressionRatio });

    if (manifest) {
      if (result.manifestJson) {
        // The sidecar guided the read; the copy inside the checksummed artifact must agree with it.
        const embedded = parseManifest(result.manifestJson, `${label} (embedded)`);
        if (canonicalJson(embedded) !== canonicalJson(manifest))
          throw integrity(label, `the manifest beside ${link.id} differs from the one inside its artifact`);
      } else {
        throw integrity(label, `artifact of ${link.id} carries no manifest though one stands beside it`);
      }
      for (const file of manifest.files) {
        const st = state.get(file.path);
        if (!st || st.size !== file.size || st.hash.copy().digest("hex") !== file.sha256)
          throw integrity(label, `${file.path} after ${link.id} is not the file its manifest describes`);
      }
      // Whatever the link does not list is gone at its time.
      for (const path of [...state.keys()]) {
        if (!byPath.has(path)) {
          state.delete(path);
          if (target) await fs.rm(join(target, path), { force: true });
        }
      }
    } else if (result.manifestJson) {
      // Our artifact whose sidecar manifest was lost: the embedded one still judges it.
      const embedded = parseManifest(result.manifestJson, `${label} (embedded)`);
      if (embedded.kind !== "full")
        throw integrity(label, `${link.id} is an incremental whose manifest file is missing; it cannot be restored on its own`);
      for (const file of embedded.files) {
        const st = state.get(file.path);
        if (!st || st.size !== file.size || st.hash.copy().digest("hex") !== file.sha256)
          throw integrity(label, `${file.path} in ${link.id} is not the file its embedded manifest describes`);
      }
    }
  }

  const files = [...state.entries()]
    .map(([path, st]) => ({ path, size: st.size, sha256: st.hash.digest("hex") }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
  return { files, notRestored, bytes };
}
