import { execSync, spawnSync } from "node:child_process";
import { readFileSync, rmSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** BENCH_CLI: another build's packages/cli/dist/bin.cjs, to measure it on the same data (before/after). */
export const CLI = process.env.BENCH_CLI
  ? resolve(process.env.BENCH_CLI)
  : resolve(import.meta.dirname, "../packages/cli/dist/bin.cjs");
/**
 * Peak RSS is read by GNU time (%M), which forks the measured process from its own small one. A
 * process the bench spawned itself reported getrusage's maxRSS, and Linux carries the resident set
 * of the forked copy (this bench's node, hundreds of MiB after generating the logs) into the
 * program it then runs: a run of `node -e 0` spawned from a parent of 240 MiB reported 204 MiB. The
 * CLI's fulls at 512 MiB "peaked" at 171 MiB that way, and at 117-123 MiB measured alone.
 */
const TIME = "/usr/bin/time";

export function workdir(label) {
  return mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), `pb-bench-${label}-`));
}

/**
 * Before each timed run, untimed: write back what earlier steps left dirty (the generated logs, a
 * restore's files), so no tool pays for another's writeback. Without it the first tool after a
 * large write (paas-backup's snapshot after the logs were generated, its restore after the
 * snapshot) ran beside the kernel flushing hundreds of MiB.
 */
function settle() {
  spawnSync("sync");
}

/** Time a shell pipeline (the GNU reference), wall clock. */
export function timeShell(script) {
  settle();
  const t0 = process.hrtime.bigint();
  const r = spawnSync("bash", ["-c", script], { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new Error(`shell failed: ${script}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Time the CLI and read its peak RSS. */
export function timeCli(args, env = {}) {
  const rssFile = join(tmpdir(), `pb-rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  settle();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(TIME, ["-f", "%M", "-o", rssFile, process.execPath, CLI, ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0)
    throw new Error(
      `paas-backup ${args.join(" ")} exited ${r.status}: ${r.stderr}${r.stdout.slice(0, 2000)}`,
    );
  const rss = peakOf(rssFile);
  let json = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {}
  return { seconds, rss, json, stdout: r.stdout };
}

export const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
export const secs = (n) => `${n.toFixed(2)} s`;
export const ratio = (a, b) => `${(a / b).toFixed(2)}x`;
export const size = (p) => statSync(p).size;

export function row(label, value, note = "") {
  console.log(`${label.padEnd(52)} ${String(value).padStart(14)}  ${note}`);
}

/** Time a shell command (GNU tools, restic) and read its peak RSS from GNU time. */
export function timeTool(script) {
  const out = join(tmpdir(), `pb-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  settle();
  const t0 = process.hrtime.bigint();
  const r = spawnSync("/usr/bin/time", ["-f", "%M", "-o", out, "bash", "-c", script], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`shell failed: ${script}`);
  // GNU time measures the largest process of the tree (the tool, not bash); %M is in KiB.
  const rss = Number(readFileSync(out, "utf8").trim().split("\n").pop()) * 1024;
  rmSync(out, { force: true });
  return { seconds, rss };
}

/** `node <args>` with the same peak-RSS probe as the CLI, so the two compare like for like. */
export function timeNode(args) {
  const rssFile = join(tmpdir(), `pb-rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  settle();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(TIME, ["-f", "%M", "-o", rssFile, process.execPath, ...args], { stdio: "ignore" });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${r.status}`);
  return { seconds, rss: peakOf(rssFile) };
}

/** GNU time's %M (KiB) from its output file, in bytes; the file is removed. */
function peakOf(rssFile) {
  const rss = Number(readFileSync(rssFile, "utf8").trim().split("\n").pop()) * 1024;
  rmSync(rssFile, { force: true });
  return rss;
}

/** The median run by time (start-up figures are noisy on a shared machine). */
export function median(n, run) {
  return medianOf(Array.from({ length: n }, run));
}

/** The run of median time, carrying the largest peak RSS of all the runs (the memory target is a ceiling). */
export function medianOf(runs) {
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds);
  return { ...sorted[Math.floor(sorted.length / 2)], rss: Math.max(...runs.map((r) => r.rss ?? 0)) };
}

/** restic from PATH; installed with apt-get when missing and we are root (as the tests install age). */
export function ensureRestic() {
  const has = () => spawnSync("sh", ["-c", "command -v restic"], { encoding: "utf8" }).stdout.trim();
  let path = has();
  if (path) return path;
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (root && spawnSync("sh", ["-c", "command -v apt-get"]).status === 0) {
    console.error("# installing restic for the comparison (apt-get)");
    execSync(
      "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null",
      { stdio: "inherit" },
    );
    path = has();
  }
  if (!path)
    throw new Error(
      "the benchmark compares against restic: install it (e.g. sudo apt-get install restic) and run again",
    );
  return path;
}
