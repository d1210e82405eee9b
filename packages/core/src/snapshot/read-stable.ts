import { createHash } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { BusyError } from "../errors.js";

/**
 * si rewrites its JSON state files in place and appends to its logs without locks, so a reader
 * can meet a half-written file or a torn last line. These readers capture a consistent view.
 */
export interface StableJson {
  content: Buffer;
  mtimeMs: number;
  /** false when the file is stable but still not JSON (recorded as a warning, kept as is) */
  parses: boolean;
}

export async function readStableJson(
  fs: FileSystem,
  path: string,
  sleep: (ms: number) => Promise<void>,
  attempts = 6,
): Promise<StableJson> {
  let previous: string | null = null;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const before = await fs.lstat(path);
    const content = Buffer.from(await fs.readFile(path));
    const after = await fs.lstat(path);
    const unchanged =
      before.size === after.size && before.mtimeMs === after.mtimeMs && content.length === after.size;
    if (unchanged) {
      try {
        JSON.parse(content.toString("utf8"));
        return { content, mtimeMs: after.mtimeMs, parses: true };
      } catch {
        // Not JSON: half-written right now, or broken for good. Two identical reads apart in time say broken.
        const digest = createHash("sha256").update(content).digest("hex");
        if (digest === previous) return { content, mtimeMs: after.mtimeMs, parses: false };
        previous = digest;
      }
    }
    await sleep(25 * (attempt + 1));
  }
  throw new BusyError("PAAS_BACKUP_STATE_CHANGING", `${path} kept changing while it was read`, {
    path,
    remediation:
      "si is rewriting this file right now; run the snapshot again in a minute (tick retries on its next run).",
    stage: "read",
  });
}

/**
 * The length of a log up to and including its last newline, at or before `size`:
 * a line still being appended is left for the next snapshot.
 */
export async function completeLinesLength(fs: FileSystem, path: string, size: number): Promise<number> {
  const window = 64 * 1024;
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - window);
    const chunk = await fs.readRange(path, start, end - start);
    const idx = chunk.lastIndexOf(10);
    if (idx >= 0) return start + idx + 1;
    end = start;
  }
  return 0;
}
