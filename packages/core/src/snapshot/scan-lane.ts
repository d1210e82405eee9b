import { Worker } from "node:worker_threads";
import { SecretScanner, type SecretAllowance } from "../policy/secrets.js";
import type { ScanMessage } from "./scan-worker.js";
import { READ_CHUNK_BYTES } from "./read-chunks.js";

/** One file's bytes, scanned in order: each answer is the file's finding count after that chunk. */
export interface FileScan {
  push(chunk: Buffer): Promise<number>;
  end(): Promise<number>;
}

/**
 * Where a snapshot scans the bytes it archives. A range of at least `workerBytes` goes to a
 * worker thread (started on first use), so scanning runs beside reading, hashing and archiving
 * on the main thread; smaller ranges are scanned inline, where a worker's start-up would cost
 * more than it saves. Either way the answers are the same scanner's: the worker runs this module's
 * SecretScanner on the same bytes.
 */
export interface ScanLane {
  file(path: string, allow: readonly SecretAllowance[], bytes: number): FileScan;
  close(): Promise<void>;
}

/**
 * The worker thread failed (it could not start, ran out of memory or died): the snapshot is taken
 * again with every file scanned inline (createSnapshot), so a worker problem costs time, never a backup.
 */
export class ScanWorkerFailed extends Error {
  constructor(detail: string) {
    super(`the secret scanner's worker thread failed: ${detail}`);
  }
}

/** Below this, a file's range is scanned inline: a worker's start-up is about what 16 MiB of scanning costs. */
export const WORKER_SCAN_BYTES = 16 * 1024 * 1024;

function inlineScan(path: string, allow: readonly SecretAllowance[]): FileScan {
  const scanner = new SecretScanner(path, allow);
  return {
    push: async (chunk) => (scanner.push(chunk), scanner.findingCount),
    end: async () => (scanner.end(), scanner.findingCount),
  };
}

/** Scanning on the calling thread only: the SDK's choice where worker threads are not wanted. */
export function inlineScanLane(): ScanLane {
  return { file: (path, allow) => inlineScan(path, allow), close: async () => undefined };
}

/**
 * The worker's compiled module beside this one; null when this module runs from TypeScript
 * sources (a test runner's transform), which a worker thread cannot load.
 */
function scanWorkerUrl(): URL | null {
  const url = new URL("./scan-worker.js", import.meta.url);
  return import.meta.url.endsWith(".js") ? url : null;
}

/**
 * Slots of memory shared with the worker, each a chunk in flight: a snapshot's chunk (512 KiB,
 * READ_CHUNK_BYTES) is copied into the next slot rather than into a new buffer handed over,
 * which left the worker's collector tens of MiB of buffers to find (peak RSS over 150 MiB). The
 * archiver keeps at most SCAN_AHEAD chunks unanswered per file, and a snapshot that gives up on a
 * file closes the lane, so twice that many slots are never reused early (checked anyway).
 */
const SLOT_BYTES = READ_CHUNK_BYTES;
// twice SCAN_AHEAD (8), as reasoned above: 32 slots held 8 MiB more shared memory than ever in flight
const SLOTS = 16;

class WorkerLane implements ScanLane {
  private worker: Worker | null = null;
  /** allocated with the worker: a lane that scans nothing inline-only (small files) must not hold 8 MiB */
  private ring: SharedArrayBuffer | null = null;
  private sent = 0;
  private answered = 0;
  private readonly waiting: { resolve: (n: number) => void; reject: (err: Error) => void }[] = [];
  private failure: Error | null = null;
  private closing = false;
  private files = 0;

  constructor(
    private readonly url: URL,
    private readonly workerBytes: number,
  ) {}

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.url, {
      resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 64 },
    });
    worker.on("message", (count: number) => {
      this.answered++;
      this.waiting.shift()?.resolve(count);
      // Idle, the worker does not keep the process alive: an SDK caller who never closes its lane still exits.
      if (this.waiting.length === 0) worker.unref();
    });
    worker.on("error", (err: Error) => this.fail(new ScanWorkerFailed(err.message)));
    worker.on("exit", (code: number) => {
      if (!this.closing) this.fail(new ScanWorkerFailed(`it exited with code ${code}`));
    });
    this.ring = new SharedArrayBuffer(SLOT_BYTES * SLOTS);
    worker.postMessage({ type: "ring", ring: this.ring, slotBytes: SLOT_BYTES } satisfies ScanMessage);
    // Unreferenced until asked (after the listeners, which reference it): a lane started ahead
    // (prestartScanWorker) and never used does not keep the process alive.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  private ask(message: ScanMessage, transfer: ArrayBuffer[] = []): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const answer = new Promise<number>((resolve, reject) => this.waiting.push({ resolve, reject }));
    // Rejections are awaited by the archiver in order; this keeps one not yet awaited from being "unhandled".
    answer.catch(() => undefined);
    this.worker!.ref();
    this.worker!.postMessage(message, transfer);
    this.sent++;
    return answer;
  }

  /** Start the worker now, so its start-up overlaps other work (see prestartScanWorker). */
  warm(): void {
    if (this.failure) return;
    try {
      this.start();
    } catch (err) {
      // A worker that cannot even be created (a thread limit) costs inline scanning, not the command.
      this.fail(new ScanWorkerFailed((err as Error).message));
    }
  }

  file(path: string, allow: readonly SecretAllowance[], bytes: number): FileScan {
    if (bytes < this.workerBytes) return inlineScan(path, allow);
    this.warm();
    if (this.failure) return inlineScan(path, allow);
    const file = ++this.files;
    this.worker!.postMessage({
      type: "start",
      file,
      path,
      allow: allow.map((a) => ({ ...a })),
    } satisfies ScanMessage);
    return {
      push: (chunk) => {
        if (this.failure) return Promise.reject(this.failure);
        if (chunk.length > SLOT_BYTES) {
          // Larger than a slot (another FileSystem's chunking): a copy of just this view, handed over.
          const own = new Uint8Array(chunk);
          return this.ask({ type: "chunk", file, chunk: own }, [own.buffer as ArrayBuffer]);
        }
        // The slot's previous chunk must have been answered: the worker has read it.
        if (this.sent - this.answered >= SLOTS)
          return Promise.reject(new Error("secret scanner: more chunks in flight than shared slots"));
        const slot = this.sent % SLOTS;
        new Uint8Array(this.ring!, slot * SLOT_BYTES, chunk.length).set(chunk);
        return this.ask({ type: "slot", file, slot, length: chunk.length });
      },
      end: () => this.ask({ type: "end", file }),
    };
  }

  /** Final: files asked for afterwards are scanned inline, answers still awaited are refused. */
  async close(): Promise<void> {
    this.closing = true;
    this.fail(new Error("the secret scanner's lane was closed"));
    if (this.worker) await this.worker.terminate();
    this.worker = null;
    this.ring = null;
  }
}

/** A lane whose worker was started ahead, for the next defaultScanLane() to take. */
let prestarted: WorkerLane | null = null;

/**
 * Start the default lane's worker thread now, for the next snapshot in this process. A worker
 * takes tens of milliseconds to start (an isolate, then the scanner's module); the CLI calls this
 * before it loads a snapshot's modules, so the worker is ready when the first large file is read
 * rather than the archiver waiting for it. Unused, it costs that start-up and holds nothing open.
 */
export function prestartScanWorker(): void {
  const url = scanWorkerUrl();
  if (!url || prestarted) return;
  prestarted = new WorkerLane(url, WORKER_SCAN_BYTES);
  prestarted.warm();
}

/** A worker-backed lane where the compiled worker is there, else inline. */
export function defaultScanLane(workerBytes = WORKER_SCAN_BYTES): ScanLane {
  if (prestarted && workerBytes === WORKER_SCAN_BYTES) {
    const lane = prestarted;
    prestarted = null;
    return lane;
  }
  const url = scanWorkerUrl();
  return url ? new WorkerLane(url, workerBytes) : inlineScanLane();
}

/** A worker-backed lane for a given worker module (tests point it at the built one). */
export function workerScanLane(url: URL, workerBytes = WORKER_SCAN_BYTES): ScanLane {
  return new WorkerLane(url, workerBytes);
}
