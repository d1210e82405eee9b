import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync, appendFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { CLI, runCli, makeSandbox, type Sandbox } from "./helpers.js";

/** Issue 13 §4: what a person at a terminal reads. */
const CTX = "internal-dogfood";

function underPty(args: string[]): { status: number | null; out: string } {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");
  const r = spawnSync("script", ["-qec", cmd, "/dev/null"], {
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: "xterm" },
  });
  return { status: r.status, out: r.stdout };
}

describe("human output", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 3 * 1024 * 1024, releases: 2 }]);
  });
  afterAll(() => sb.cleanup());

  it("progress on a terminal shows total, rate and time left, and ends at 100% for snapshot and restore; none without a terminal", () => {
    const snap = underPty([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.status, snap.out).toBe(0);
    const last =
      snap.out
        .split(/\r|\n/)
        .filter((l) => l.includes(`snapshot ${CTX} [`))
        .pop() ?? "";
    expect(last).toMatch(/100% .* of .*\/s, done in/);
    const restore = underPty([...sb.flags, "restore", "--context", CTX, "--ticket", "INC-P", "--yes"]);
    expect(restore.status, restore.out).toBe(0);
    const bar =
      restore.out
        .split(/\r|\n/)
        .filter((l) => l.includes(`restore ${CTX} [`))
        .pop() ?? "";
    expect(bar).toMatch(/100% (\d+\.\d) MiB of \1 MiB, .*\/s, done in/); // the total is the restored bytes, MiB not "226 B"
  }, 60_000);

  it("without a terminal there is no progress at all", async () => {
    const r = await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^stored: +\S+ \S+ put in the archive/m);
  });

  it("tables fit 100 columns, long texts below them", async () => {
    for (let i = 0; i < 2; i++) {
      appendFileSync(
        join(sb.state.contextDir(CTX), "events", "audit.jsonl"),
        `{"ts":"2026-11-24T10:00:0${i}Z","kind":"audit"}\n`,
      );
      await runCli([
        ...sb.flags,
        "snapshot",
        "--context",
        CTX,
        "--kind",
        "incremental",
        "--insecure-plaintext",
      ]);
    }
    const outputs = [
      await runCli([...sb.flags, "list", "--context", CTX]),
      await runCli([...sb.flags, "verify", "--context", CTX, "--all"]),
      await runCli([...sb.flags, "prune", "--context", CTX, "--dry-run"]),
      await runCli([...sb.flags, "ls", "--context", CTX]),
      await runCli([...sb.flags, "drill", "status", "--context", CTX]),
      await runCli([...sb.flags, "doctor", "--context", CTX]),
      await runCli([...sb.flags, "snapshot", "--context", CTX, "--dry-run"]),
    ];
    for (const r of outputs)
      for (const line of r.stdout.split("\n")) expect(line.length, line).toBeLessThanOrEqual(100);
  }, 60_000);

  it("tick says why it did what it did", async () => {
    const other = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
    try {
      const first = await runCli([...other.flags, "tick", "--context", CTX, "--insecure-plaintext"]);
      expect(first.stdout).toMatch(new RegExp(`${CTX}: took a full snapshot: .+`));
      const second = await runCli([...other.flags, "tick", "--context", CTX, "--insecure-plaintext"]);
      expect(second.stdout).toMatch(new RegExp(`${CTX}: nothing to do: .+`));
    } finally {
      other.cleanup();
    }
  });

  it("waiting for a lock prints who holds it and since when on stderr", async () => {
    const holder = spawn("sleep", ["30"]);
    try {
      mkdirSync(join(sb.backupRoot, CTX), { recursive: true });
      const since = new Date().toISOString();
      writeFileSync(
        join(sb.backupRoot, CTX, ".lock"),
        JSON.stringify({ pid: holder.pid, host: hostname(), nonce: "n1", startedAt: since, command: "tick" }),
      );
      const config = join(sb.dir, "config.json");
      writeFileSync(config, JSON.stringify({ lockTimeoutSeconds: 2 }));
      const busy = await runCli([
        ...sb.flags,
        "--config",
        config,
        "--json",
        "snapshot",
        "--context",
        CTX,
        "--insecure-plaintext",
      ]);
      expect(busy.code).toBe(6);
      expect(busy.stderr).toContain(
        `waiting for the lock of ${CTX}: held by pid ${holder.pid} on ${hostname()} (tick) since ${since}; giving up after 2 s`,
      );
      expect(busy.stderr.match(/waiting for the lock/g)).toHaveLength(1); // said once, not on every retry
      expect(busy.json.ok).toBe(false);
    } finally {
      holder.kill("SIGKILL");
    }
  });
});
