import type { ReadEntry } from "tar";
import type { Readable } from "node:stream";
import { IntegrityError, SafetyError } from "../errors.js";

export interface ArchiveEntryInfo {
  /** normalised: no leading "./" */
  path: string;
  type: "file" | "directory";
  size: number;
  mode: number;
}

export interface ReadArchiveOptions {
  /** where the archive came from, for messages */
  label: string;
  /** called for each file or directory entry, in order; consume `body` before resolving */
  onEntry(entry: ArchiveEntryInfo, body: Readable): Promise<void>;
  /** refuse once the entries' declared sizes add up past this (decompression bombs) */
  maxTotalBytes: number;
  /** refuse once the stream has expanded past this many times its compressed size (node-tar's guard) */
  maxDecompressionRatio: number;
}

export interface ReadArchiveResult {
  /** the manifest JSON carried by our trailing "./" entry, or null for a hand-made archive */
  manifestJson: string | null;
  entries: number;
  totalBytes: number;
}

const ALLOWED_TYPES = new Set(["File", "OldFile", "ContiguousFile", "Directory"]);

/**
 * Deeper or longer paths than any si state holds are refused before anything is created: a path
 * nested thousands of levels deep is an attack on whoever walks it, not a file to restore.
 */
export const MAX_ENTRY_DEPTH = 64;
export const MAX_ENTRY_PATH_BYTES = 4096;

/** Why an entry is refused, or null when it is a plain file or folder with a clean relative path. */
export function hostileEntryReason(rawPath: string, type: string): string | null {
  if (!ALLOWED_TYPES.has(type)) return `entry type ${type} (only plain files and folders are restored)`;
  if (/[\u0000-\u001f\u007f]/.test(rawPath)) return "control character in the path";
  if (rawPath.startsWith("/") || /^[A-Za-z]:/.test(rawPath)) return "absolute path";
  if (rawPath.includes("\\")) return "backslash in the path";
  const segments = rawPath.split("/");
  if (segments.includes("..")) return "'..' in the path";
  if (Buffer.byteLength(rawPath) > MAX_ENTRY_PATH_BYTES) return `path longer than ${MAX_ENTRY_PATH_BYTES} bytes`;
  if (segments.filter((s) => s !== "" && s !== ".").length > MAX_ENTRY_DEPTH) return `path nested deeper than ${MAX_ENTRY_DEPTH} levels`;
  return null;
}

export function normaliseEntryPath(rawPath: string): string {
  let p = rawPath;
  while (p.startsWith("./")) p = p.slice(2);
  p = p.replace(/\/+$/, "").replace(/\/+/g, "/");
  return p === "." ? "" : p;
}

function printable(path: string): string {
  return JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);
}

/**
 * Stream a tar.gz (or plain tar) and hand each entry to `onEntry` after checking it is safe.
 * Any refusal stops the stream at once: nothing past the hostile entry is read or written.
 */
export async function readArchive(source: Readable, options: ReadArchiveOptions): Promise<ReadArchiveResult> {
  // tar is loaded by the commands that read archives, not at every start.
  const { Parser } = await import("tar");
  return new Promise<ReadArchiveResult>((resolve, reject) => {
    let manifestJson: string | null = null;
    let entries = 0;
    let totalBytes = 0;
    let failed = false;
    const seen = new Set<string>();
    let queue: Promise<void> = Promise.resolve();
    const parser = new Parser({ strict: true, maxDecompressionRatio: options.maxDecompressionRatio });
    const tooLarge = (detail: string) =>
      new SafetyError("PAAS_BACKUP_ARCHIVE_TOO_LARGE", `archive ${options.label} expands past its limit (${detail}; decompression bomb guard)`, {
        path: options.label,
        remediation: "Do not restore this artifact. If it is a genuine hand-made snapshot (no manifest) of very compressible data, pass a larger --max-expansion (default 200) to restore or verify.",
        stage: "archive",
      });

    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      source.unpipe(parser);
      source.destroy();
      reject(err);
    };

    parser.on("entry", (entry: ReadEntry) => {
      if (failed) {
        entry.resume();
        return;
      }
      const raw = entry.path;
      const path = normaliseEntryPath(raw);
      if (path === "" && entry.type === "Directory") {
        // The root entry: ours carries the manifest; the reference flow's "./" carries nothing.
        const comment = (entry as unknown as { comment?: string }).comment;
        if (typeof comment === "string" && comment.startsWith("{")) manifestJson = comment;
        entry.resume();
        return;
      }
      const reason = hostileEntryReason(raw, entry.type) ?? (path === "" ? "empty path" : null) ?? (seen.has(path) ? "duplicate path" : null);
      if (reason) {
        entry.resume();
        fail(
          new SafetyError("PAAS_BACKUP_HOSTILE_ENTRY", `refused archive entry ${printable(raw)} in ${options.label}: ${reason}`, {
            path: options.label,
            remediation: "Do not restore this artifact; it was not written by paas-backup or has been tampered with. Restore an older verified snapshot.",
            stage: "archive",
            data: { entry: raw, reason },
          }),
        );
        return;
      }
      seen.add(path);
      entries++;
      totalBytes += entry.size ?? 0;
      if (totalBytes > options.maxTotalBytes) {
        entry.resume();
        fail(tooLarge(`${options.maxTotalBytes} bytes at entry ${printable(path)}`));
        return;
      }
      const info: ArchiveEntryInfo = {
        path,
        type: entry.type === "Directory" ? "directory" : "file",
        size: entry.size ?? 0,
        mode: (entry.mode ?? 0o600) & 0o777,
      };
      entry.pause();
      queue = queue.then(async () => {
        if (failed) {
          entry.resume();
          return;
        }
        try {
          await options.onEntry(info, entry as unknown as Readable);
        } catch (err) {
          entry.resume();
          fail(err);
        }
      });
    });
    parser.on("warn", (code: string, message: string) => {
      if (/decompression ratio/.test(String(message))) return fail(tooLarge(String(message)));
      fail(
        new IntegrityError("PAAS_BACKUP_ARCHIVE_CORRUPT", `archive ${options.label} is corrupt (${code}: ${message})`, {
          path: options.label,
          remediation: "Restore an older snapshot that verifies, or fetch this one again from the offsite copy.",
          stage: "archive",
        }),
      );
    });
    parser.on("error", (err: Error) => {
      if (/decompression ratio/.test(err.message)) return fail(tooLarge(err.message));
      fail(
        new IntegrityError("PAAS_BACKUP_ARCHIVE_CORRUPT", `archive ${options.label} is corrupt (${err.message})`, {
          path: options.label,
          remediation: "Restore an older snapshot that verifies, or fetch this one again from the offsite copy.",
          stage: "archive",
          cause: err,
        }),
      );
    });
    parser.on("end", () => {
      void queue.then(() => {
        if (!failed) resolve({ manifestJson, entries, totalBytes });
      });
    });
    source.on("error", (err) => fail(err));
    source.pipe(parser);
  });
}
