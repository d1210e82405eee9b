/**
 * The secret scanner in a worker thread: a snapshot's main thread reads, hashes and archives
 * while this thread scans the same bytes, so a large snapshot uses both cores of a small host
 * (the scanner is the largest single cost of a full). Messages arrive in order and each is
 * answered in order with the file's finding count so far; the main thread archives a chunk
 * only once its answer is 0, so no byte of a secret reaches the artifact.
 */
import { parentPort } from "node:worker_threads";
import { SecretScanner, type SecretAllowance } from "../policy/secrets.js";

export type ScanMessage =
  | { type: "start"; path: string; allow: SecretAllowance[] }
  | { type: "chunk"; chunk: Uint8Array }
  | { type: "end" };

let scanner: SecretScanner | null = null;

parentPort?.on("message", (message: ScanMessage) => {
  if (message.type === "start") {
    scanner = new SecretScanner(message.path, message.allow);
    return;
  }
  if (!scanner) throw new Error("scan worker: a chunk arrived before its file");
  if (message.type === "chunk") scanner.push(message.chunk);
  else scanner.end();
  parentPort!.postMessage(scanner.findingCount);
});
