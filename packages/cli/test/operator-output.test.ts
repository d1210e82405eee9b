import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { CLI, runCli, makeSandbox, type Sandbox } from "./helpers.js";
import { humanBytes } from "../src/output.js";

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
