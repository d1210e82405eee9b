import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, runCli, makeSandbox, untilArchiving, type Sandbox } from "./helpers.js";
import { humanBytes } from "../src/render/text.js";

/** Issue 25 §2: what a new operator reads, as the built CLI prints it. */
const CTX = "internal-dogfood";

function underPty(args: string[], env: Record<string, string> = {}): { status: number | null; out: string } {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");
  const r = spawnSync("script", ["-qec", cmd, "/dev/null"], {
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: "xterm", ...env },
  });
  return { status: r.status, out: r.stdout };
}

describe("messages an operator reads", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
  });
  afterAll(() => sb.cleanup());

  it("tick says 'an incremental' and an hour is '60 min old'", async () => {
    const first = await runCli([...sb.flags, "tick", "--context", CTX, "--insecure-plaintext"], {
      env: { PAAS_BACKUP_NOW: "2026-11-24T10:00:00Z" },
    });
    expect(first.stdout).toContain(`${CTX}: took a full snapshot`);
    const second = await runCli([...sb.flags, "tick", "--context", CTX, "--insecure-plaintext"], {
      env: { PAAS_BACKUP_NOW: "2026-11-24T11:00:00Z" },
    });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`${CTX}: took an incremental snapshot: newest snapshot is 60 min old`);
  });

  it("keygen's refusal to overwrite names --force", async () => {
    const out = join(sb.dir, "identity.txt");
    expect((await runCli([...sb.flags, "keygen", "--out", out])).code).toBe(0);
    const again = await runCli([...sb.flags, "keygen", "--out", out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/never overwrites a key unless given --force/);
    expect(again.stderr).toMatch(/pass --force/);
    expect((await runCli([...sb.flags, "keygen", "--out", out, "--force"])).code).toBe(0);
  });

  it("rates are rounded: whole bytes, one decimal for larger units", () => {
    expect(humanBytes(662.7906976744187)).toBe("663 B");
    expect(humanBytes(1536)).toBe("1.5 KiB");
    const snap = underPty([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.status, snap.out).toBe(0);
    const bar = snap.out.split(/\r|\n/).filter((l) => l.includes(`snapshot ${CTX} [`));
    expect(bar.length).toBeGreaterThan(0);
    for (const line of bar) expect(line).not.toMatch(/\d\.\d{2,}/);
  });
});

/** `cli args | reader` in bash: the CLI's exit status and what it printed on stderr. */
function piped(args: string[], reader: string, env: Record<string, string> = {}) {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");
  const r = spawnSync("bash", ["-c", `${cmd} 2>"$ERR" | ${reader} >/dev/null; echo "\${PIPESTATUS[0]}"`], {
    encoding: "utf8",
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ERR: join(env.TMPDIR ?? tmpdir(), "stderr"),
      ...env,
    },
  });
  return {
    status: Number(r.stdout.trim()),
    stderr: spawnSync("cat", [join(env.TMPDIR ?? tmpdir(), "stderr")], { encoding: "utf8" }).stdout,
  };
}

describe("a closed pipe, Ctrl-C and scratch folders", () => {
  let sb: Sandbox;
  let tmp: string;
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 3 * 1024 * 1024 }]);
    tmp = mkdtempSync(join(tmpdir(), "pb-tmpdir-"));
  });
  afterAll(() => {
    sb.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("piping into head (or a reader that is gone) ends quietly: exit 0, no stack, no PAAS_BACKUP_UNEXPECTED", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stderr).toBe(0);
    const offsite = join(sb.dir, "offsite");
    const push = await runCli([
      ...sb.flags,
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      `file://${offsite}`,
    ]);
    expect(push.code, push.stderr).toBe(0);
    const env = { TMPDIR: tmp };
    const runs = [
      piped([...sb.flags, "offsite", "list", "--context", CTX, "--to", `file://${offsite}`], "true", env),
      piped([...sb.flags, "offsite", "list", "--context", CTX, "--to", `file://${offsite}`], "head -1", env),
      piped([...sb.flags, "dump", "--context", CTX, "events/audit.jsonl"], "head -1", env),
      piped([...sb.flags, "dump", "--context", CTX, "events/audit.jsonl"], "true", env),
      piped([...sb.flags, "list", "--context", CTX], "true", env),
      piped([...sb.flags, "--json", "list", "--context", CTX], "true", env),
      piped([...sb.flags, "ls", "--context", CTX, "--long"], "true", env),
    ];
    for (const r of runs) {
      expect(r.stderr).not.toMatch(/EPIPE|UNEXPECTED|at .*\.js:\d+/);
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it("ls, dump and diff leave no paas-backup-inspect-* folder in the temporary directory", async () => {
    const env = { TMPDIR: tmp };
    const before = readdirSync(tmp).filter((n) => n.startsWith("paas-backup-inspect-"));
    expect((await runCli([...sb.flags, "ls", "--context", CTX], { env })).code).toBe(0);
    const dump = await runCli([...sb.flags, "dump", "--context", CTX, "config.json"], { env });
    expect(dump.code, dump.stderr).toBe(0);
    const diff = await runCli([...sb.flags, "diff", "--context", CTX, "latest", "--live"], { env });
    expect(diff.code, diff.stderr).toBe(0);
    expect(readdirSync(tmp).filter((n) => n.startsWith("paas-backup-inspect-"))).toEqual(before);
  });

  it("Ctrl-C mid-snapshot on a terminal: exit 130, 'interrupted: nothing was kept', no .lock or .partial left", async () => {
    // large enough that the snapshot is still archiving when the key is pressed
    const big = await makeSandbox([{ name: CTX, eventBytes: 60 * 1024 * 1024 }]);
    try {
      await interruptSnapshot(big);
    } finally {
      big.cleanup();
    }
  }, 120_000);
});

async function interruptSnapshot(sb: Sandbox): Promise<void> {
  await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
  const dir = join(sb.backupRoot, CTX);
  const listing = () => readdirSync(dir).sort();
  const before = listing();
  const cmd = [process.execPath, CLI, ...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]
    .map((a) => `'${a}'`)
    .join(" ");
  // Ctrl-C typed at the terminal: the pty's line discipline turns it into SIGINT for the run.
  const child = spawn("script", ["-qec", cmd, "/dev/null"], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: "xterm" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (c) => (out += c));
  const ended = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  expect(await untilArchiving(child, dir)).toBe(true);
  expect(readdirSync(dir)).toContain(".lock");
  child.stdin.write("\x03");
  expect(await ended, out).toBe(130);
  expect(out).toContain("paas-backup snapshot: interrupted: nothing was kept");
  expect(listing()).toEqual(before);
  expect(listing().filter((n) => n === ".lock" || n.endsWith(".partial") || n.endsWith(".tmp"))).toEqual([]);
  // and the next run is not held up by what the interrupted one left
  const next = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  expect(next.code, next.stderr).toBe(0);
}
