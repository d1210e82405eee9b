import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import type { FileSystem } from "../fs/types.js";
import { forEachChunk } from "./read-range.js";

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A pass-through that hashes and counts what flows through it. */
export class HashingStream extends Transform {
  readonly hash: Hash = createHash("sha256");
  bytes = 0;
  constructor(private readonly onChunk?: (chunk: Buffer) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onChunk?.(chunk);
    cb(null, chunk);
  }
  digest(): string {
    return this.hash.digest("hex");
  }
}

/** Stream a file through sha256: memory stays flat whatever its size, and leaves no garbage per chunk. */
export async function hashFile(fs: FileSystem, path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash("sha256");
  const bytes = await forEachChunk(fs, path, 0, Number.POSITIVE_INFINITY, (chunk) => hash.update(chunk));
  return { sha256: hash.digest("hex"), bytes };
}
