import type { FileSystem } from "../fs/types.js";

/** Bytes per read: as a snapshot reads (snapshot/read-chunks.ts). */
const CHUNK_BYTES = 512 * 1024;

/**
 * Bytes [start, end) of a file (`end` Infinity: to its end), handed to `each` in order, a chunk
 * at a time, read into two buffers in turn with the next read in flight while `each` runs. For
 * readers that only look at the bytes (hash, count, scan): `each` must not keep a chunk, whose
 * buffer is read into again. The read stream gave a fresh buffer per chunk: a restore hashing and
 * scanning its logs left hundreds of MiB of garbage behind it, which V8 collects only once 64 MiB
 * of it piled up (most of a restore's peak memory). Returns the bytes read; a file shorter than
 * `end` simply ends there, as a read stream does.
 */
export async function forEachChunk(
  fs: FileSystem,
  path: string,
  start: number,
  end: number,
  each: (chunk: Buffer) => void,
): Promise<number> {
  if (end <= start) return 0;
  if (!fs.openRead) {
    let bytes = 0;
    const range = end === Number.POSITIVE_INFINITY ? { start } : { start, end: end - 1 };
    for await (const chunk of fs.createReadStream(path, range)) {
      each(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    return bytes;
  }
  const reader = await fs.openRead(path);
  const buffers = [Buffer.allocUnsafeSlow(CHUNK_BYTES), Buffer.allocUnsafeSlow(CHUNK_BYTES)];
  let position = start;
  let which = 0;
  const readInto = (buf: Buffer) =>
    reader.read(buf.subarray(0, Math.min(buf.length, end - position)), position);
  let pending: Promise<number> | null = readInto(buffers[0]!);
  try {
    while (pending) {
      const n = await pending;
      pending = null;
      if (n === 0) break;
      const chunk = buffers[which]!.subarray(0, n);
      position += n;
      which ^= 1;
      if (position < end) pending = readInto(buffers[which]!);
      each(chunk);
    }
    return position - start;
  } finally {
    // a read still in flight writes into its buffer and uses the file: let it land first
    await pending?.catch(() => undefined);
    await reader.close();
  }
}
