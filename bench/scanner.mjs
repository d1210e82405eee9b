// The secret scanner alone: MB/s of SecretScanner over si-shaped JSONL event logs (the bulk of
// every snapshot), in memory so disk and gzip do not count. BENCH_SCAN_MB (default 256) of lines,
// fed in 64 KiB chunks as createReadStream gives them. Run after `pnpm run build`.
// BENCH_SCANNER_BASELINE=<path to another build's policy/secrets.js> measures that one too, in
// the same process and interleaved, so a busy machine slows both alike (before/after figures).
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { SecretScanner } from "../packages/core/dist/index.js";
import { eventLine } from "../packages/testing/dist/index.js";

const baseline = process.env.BENCH_SCANNER_BASELINE
  ? (await import(pathToFileURL(resolve(process.env.BENCH_SCANNER_BASELINE)).href)).SecretScanner
  : null;

const MB = Number(process.env.BENCH_SCAN_MB ?? 256);
const CHUNK = 64 * 1024;
const start = new Date("2026-11-20T10:00:00Z");

function corpus(kind) {
  const lines = [];
  let size = 0;
  for (let i = 0; size < 8 * 1048576; i++) {
    const line = `${eventLine(kind, "internal-dogfood", start, i)}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(""));
}

function measure(label, sample, Scanner = SecretScanner) {
  const rounds = Math.max(1, Math.round((MB * 1048576) / sample.length));
  // warm-up: let the JIT settle on the regexes before timing
  const warm = new Scanner("warm.jsonl");
  for (let o = 0; o < sample.length; o += CHUNK) warm.push(sample.subarray(o, o + CHUNK));
  warm.end();
  const t0 = process.hrtime.bigint();
  let findings = 0;
  for (let r = 0; r < rounds; r++) {
    const scanner = new Scanner(`events/${label}.jsonl`);
    for (let o = 0; o < sample.length; o += CHUNK) scanner.push(sample.subarray(o, o + CHUNK));
    findings += scanner.end().length;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const mb = (rounds * sample.length) / 1048576;
  console.log(
    `${label.padEnd(12)} ${(mb / seconds).toFixed(1).padStart(8)} MiB/s  (${mb.toFixed(0)} MiB in ${seconds.toFixed(2)} s, ${findings} findings)`,
  );
  return mb / seconds;
}

console.log(`# secret scanner throughput, ${MB} MiB per log kind, node ${process.version}`);
const samples = ["deploy", "alert", "audit"].map((k) => [k, corpus(k)]);
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const rounds = Number(process.env.BENCH_SCAN_ROUNDS ?? (baseline ? 3 : 1));
const ours = [];
const theirs = [];
for (let r = 0; r < rounds; r++) {
  for (const [k, sample] of samples) {
    ours.push(measure(k, sample));
    if (baseline) theirs.push(measure(`${k} (base)`, sample, baseline));
  }
}
console.log(`${"mean".padEnd(12)} ${mean(ours).toFixed(1).padStart(8)} MiB/s`);
if (baseline)
  console.log(
    `${"mean (base)".padEnd(12)} ${mean(theirs).toFixed(1).padStart(8)} MiB/s  ratio ${(mean(ours) / mean(theirs)).toFixed(2)}x`,
  );
