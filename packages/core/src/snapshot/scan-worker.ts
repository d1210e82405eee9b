/**
 * The secret scanner in a worker thread: a snapshot's main thread reads, hashes and archives
 * while this thread scans the same bytes, so a large snapshot uses both cores of a small host
 * (the scanner is the largest single cost of a full). Messages arrive in order and each is
 * answered in order with the file's finding count so far; the main thread archives a chunk
 * only once its answer is 0 (see scannedChunks in create.ts for what that guarantees).
 */
import { parentPort } from "node:worker_threads";
import { SecretScanner, type SecretAllowance } from "../policy/secrets.js";

export type ScanMessage =
  | { type: "ring"; ring: SharedArrayBuffer; slotBytes: number }
  | { type: "start"; file: number; path: string; allow: SecretAllowance[] }
  | { type: "chunk"; file: number; chunk: Uint8Array }
  | { type: "slot"; file: number; slot: number; length: number }
  | { type: "end"; file: number };

/** One scanner per open file: a lane may be shared by snapshots running at once, whose files interleave. */
const scanners = new Map<number, SecretScanner>();
/** Chunks come through slots of memory shared with the main thread: no allocation per chunk on either side. */
let ring: SharedArrayBuffer | null = null;
let slotBytes = 0;

parentPort?.on("message", (message: ScanMessage) => {
  if (message.type === "ring") {
    ring = message.ring;
    slotBytes = message.slotBytes;
    return;
  }
  if (message.type === "start") {
    scanners.set(message.file, new SecretScanner(message.path, message.allow));
    return;
  }
  const scanner = scanners.get(message.file);
  if (!scanner) throw new Error(`scan worker: a message for file ${message.file}, which is not open`);
  if (message.type === "chunk") scanner.push(message.chunk);
  else if (message.type === "slot")
    scanner.push(new Uint8Array(ring!, message.slot * slotBytes, message.length));
  else {
    scanner.end();
    scanners.delete(message.file);
  }
  parentPort!.postMessage(scanner.findingCount);
});
