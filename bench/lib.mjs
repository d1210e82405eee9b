import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const CLI = resolve(import.meta.dirname, "../packages/cli/dist/main.js");
const PRELOAD = resolve(import.meta.dirname, "maxrss.cjs");

export function workdir(label) {
  return mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), `pb-bench-${label}-`));
}

/** Time a shell pipeline (the GNU reference), wall clock. */
export function timeShell(script) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync("bash", ["-c", script], { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new Error(`shell failed: ${script}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Time the CLI and read its peak RSS. */
export function timeCli(args, env = {}) {
  const rssFile = join(tmpdir(), `pb-rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, ["--require", PRELOAD, CLI, ...args], { env: { ...process.env, ...env, BENCH_RSS_FILE: rssFile }, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`paas-backup ${args.join(" ")} exited ${r.status}: ${r.stderr}${r.stdout.slice(0, 2000)}`);
  const rss = Number(readFileSync(rssFile, "utf8"));
  rmSync(rssFile, { force: true });
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
