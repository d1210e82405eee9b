import type { FileReader, FileSystem } from "../fs/types.js";

/**
 * Bytes per read: the size of the scan worker's shared slots, so one read is one slot. 512 KiB
 * rather than 256: half the reads, hand-overs and answers per file (bench/, 512 MiB full, median
 * of 9: 1.62 s -> 1.48 s), for 4 MiB more memory in flight.
 */
export const READ_CHUNK_BYTES = 512 * 1024;
/** Reads in flight at once: a read comes back from libuv's threadpool behind the deflate jobs there. */
const READS_AHEAD = 4;
/** Buffers kept for reuse between files; more than a snapshot holds at once (reads ahead, scan ahead). */
const KEPT = 16;

/**
 * The buffers a snapshot reads files into, reused from chunk to chunk and file to file. A fresh
 * buffer per 256 KiB chunk was 2,048 buffers per 512 MiB, and V8 collects garbage each time
 * 64 MiB of such memory builds up: about a sixth of a full snapshot's time (bench/: 1.71 s ->
 * 1.61 s for 512 MiB once reads reused their buffers).
 */
export class ReadBuffers {
  private readonly free: ArrayBuffer[] = [];

  take(): Buffer {
    const kept = this.free.pop();
    return kept ? Buffer.from(kept) : Buffer.allocUnsafeSlow(READ_CHUNK_BYTES);
  }

  give(chunk: Uint8Array): void {
    if (this.free.length < KEPT && chunk.buffer.byteLength === READ_CHUNK_BYTES)
      this.free.push(chunk.buffer as ArrayBuffer);
  }
}

/**
 * Bytes [start, end) of one file, in order, a chunk at a time with a few reads ahead. A chunk is
 * a view of a buffer from `buffers` and is the caller's until it hands it back with release();
 * a chunk never handed back is simply not reused. The reader ends at a read of nothing (the file
 * is shorter than planned): the caller, who knows the length it expects, says so.
 */
export interface ChunkReader {
  next(): Promise<Buffer | null>;
  release(chunk: Buffer): void;
  close(): Promise<void>;
}

export async function openChunks(
  fs: FileSystem,
  path: string,
  start: number,
  end: number,
  buffers: ReadBuffers,
): Promise<ChunkReader> {
  if (!fs.openRead) return streamChunks(fs, path, start, end);
  const reader: FileReader = await fs.openRead(path);
  const reads: { buf: Buffer; position: number; length: number; done: Promise<number> }[] = [];
  let position = start;
  let ended = false;
  let closed = false;
  const fill = () => {
    while (reads.length < READS_AHEAD && position < end && !ended) {
      const buf = buffers.take();
      const length = Math.min(buf.length, end - position);
      const done = reader.read(buf.subarray(0, length), position);
      done.catch(() => undefined);
      reads.push({ buf, position, length, done });
      position += length;
    }
  };
  /** Reads queued beyond a short one: wait until they are back (they write into their buffers), then reuse those. */
  const drop = async () => {
    for (const r of reads.splice(0)) {
      await r.done.catch(() => undefined);
      buffers.give(r.buf);
    }
  };
  return {
    async next() {
      if (closed || ended) return null;
      fill();
      const head = reads.shift();
      if (!head) return null;
      const n = await head.done;
      if (n === 0) {
        // Only a read of nothing is the end (the file is shorter than planned; the caller says so).
        ended = true;
        buffers.give(head.buf);
        await drop();
        return null;
      }
      if (n < head.length) {
        // A short read before the end (a network or FUSE filesystem may give one): go on from there.
        await drop();
        position = head.position + n;
      }
      return head.buf.subarray(0, n);
    },
    release(chunk) {
      buffers.give(chunk);
    },
    async close() {
      if (closed) return;
      closed = true;
      await drop();
      await reader.close();
    },
  };
}

/** A FileSystem without openRead: its read stream's chunks, nothing reused. */
function streamChunks(fs: FileSystem, path: string, start: number, end: number): ChunkReader {
  const stream = end > start ? fs.createReadStream(path, { start, end: end - 1 }) : null;
  const chunks = stream?.[Symbol.asyncIterator]() as AsyncIterator<Buffer> | undefined;
  return {
    async next() {
      const r = await chunks?.next();
      return !r || r.done ? null : r.value;
    },
    release() {},
    async close() {
      stream?.destroy();
    },
  };
}
