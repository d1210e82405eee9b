// The secret scanner alone: MB/s of SecretScanner over si-shaped JSONL event logs (the bulk of
// every snapshot), in memory so disk and gzip do not count. BENCH_SCAN_MB (default 256) of lines,
// fed in 64 KiB chunks as createReadStream gives them. Run after `pnpm run build`.
import { SecretScanner } from "../packages/core/dist/index.js";
import { eventLine } from "../packages/testing/dist/index.js";

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

function measure(label, sample) {
  const rounds = Math.max(1, Math.round((MB * 1048576) / sample.length));
  // warm-up: let the JIT settle on the regexes before timing
  const warm = new SecretScanner("warm.jsonl");
  for (let o = 0; o < sample.length; o += CHUNK) warm.push(sample.subarray(o, o + CHUNK));
  warm.end();
  const t0 = process.hrtime.bigint();
  let findings = 0;
  for (let r = 0; r < rounds; r++) {
    const scanner = new SecretScanner(`events/${label}.jsonl`);
    for (let o = 0; o < sample.length; o += CHUNK) scanner.push(sample.subarray(o, o + CHUNK));
    findings += scanner.end().length;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const mb = (rounds * sample.length) / 1048576;
  console.log(`${label.padEnd(12)} ${(mb / seconds).toFixed(1).padStart(8)} MiB/s  (${mb.toFixed(0)} MiB in ${seconds.toFixed(2)} s, ${findings} findings)`);
  return mb / seconds;
}

console.log(`# secret scanner throughput, ${MB} MiB per log kind, node ${process.version}`);
const rates = ["deploy", "alert", "audit"].map((k) => measure(k, corpus(k)));
console.log(`${"mean".padEnd(12)} ${(rates.reduce((a, b) => a + b, 0) / rates.length).toFixed(1).padStart(8)} MiB/s`);
