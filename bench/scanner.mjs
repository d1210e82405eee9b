// The secret scanner alone: MB/s of SecretScanner over si-shaped JSONL event logs (the bulk of
// every snapshot), in memory so disk and gzip do not count. Three kinds as si writes them (most
// lines with a "<redacted>" field) and "varied": deployment logs without one, random hex ids,
// digests and commit SHAs, and error messages that vary line by line (some naming tokens,
// passwords and keys in prose), where the prefilter cannot settle a line on a redacted field. BENCH_SCAN_MB (default 256) of lines,
// fed in 64 KiB chunks as createReadStream gives them. Run after `pnpm run build`.
// BENCH_SCANNER_BASELINE=<path to another build's policy/secrets.js> measures that one too, in
// the same process and interleaved, so a busy machine slows both alike (before/after figures).
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { SecretScanner } from "../packages/core/dist/policy/redact.js";
import { eventLine } from "../packages/testing/dist/index.js";

const baseline = process.env.BENCH_SCANNER_BASELINE
  ? (await import(pathToFileURL(resolve(process.env.BENCH_SCANNER_BASELINE)).href)).SecretScanner
  : null;

const MB = Number(process.env.BENCH_SCAN_MB ?? 256);
const CHUNK = 64 * 1024;
const start = new Date("2026-11-20T10:00:00Z");

/** mulberry32, so the varied log is the same bytes in every run and in both builds */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function variedLine(rand, i) {
  const hex = (n) => Array.from({ length: n }, () => "0123456789abcdef"[Math.floor(rand() * 16)]).join("");
  const int = (n) => Math.floor(rand() * n);
  const host = `edge-${int(12)}.acme.internal`;
  const messages = [
    () => `health check timed out after ${int(90)}s on ${host}:${8000 + int(1000)}`,
    () => `pull ghcr.io/acme/web@sha256:${hex(64)}: manifest unknown`,
    () => `connection refused: dial tcp 10.${int(255)}.${int(255)}.${int(255)}:5432`,
    () => `release r-${i} built from commit ${hex(40)} in ${int(600)}s`,
    () =>
      `token expired for session ${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}; re-run si paas login`,
    () => `password policy requires ${8 + int(8)} characters; rotation every ${int(90)}d`,
    () => `api key rotation scheduled for app-${int(7)} (owner team-${int(20)})`,
    () => `disk usage ${60 + int(40)}% on ${host}; prune old releases`,
    () => `POST https://${host}/v1/deployments/${hex(24)} returned ${[500, 502, 503, 429][int(4)]}`,
    () => `secret store unreachable: GET https://vault.acme.internal/v1/sys/health timed out`,
    () => `worker ${hex(12)} exited with code ${int(140)} after ${int(3600)}s`,
    () => `checksum mismatch: expected ${hex(64)}, got ${hex(64)}`,
  ];
  return JSON.stringify({
    timestamp: new Date(start.getTime() + i * 997).toISOString(),
    level: ["info", "warn", "error"][int(3)],
    request_id: hex(32),
    trace_id: hex(16),
    app: `app-${int(7)}`,
    message: messages[int(messages.length)](),
    duration_ms: int(30000),
  });
}

function corpus(kind) {
  const lines = [];
  const rand = seeded(0xbe7c4);
  let size = 0;
  for (let i = 0; size < 8 * 1048576; i++) {
    const line = `${kind === "varied" ? variedLine(rand, i) : eventLine(kind, "internal-dogfood", start, i)}\n`;
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
const samples = ["deploy", "alert", "audit", "varied"].map((k) => [k, corpus(k)]);
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
