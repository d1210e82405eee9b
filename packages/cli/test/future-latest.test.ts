import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

// Issue 20 §2, "A snapshot dated in the future", through the built CLI: ls, dump and verify
// resolve `latest` as restore does (never a snapshot ahead of the clock) and warn in its words.

const CTX = "internal-dogfood";
const at = (iso: string) => ({ env: { PAAS_BACKUP_NOW: iso } });
let sb: Sandbox;
let present: string;
let ahead: string;

beforeAll(async () => {
  sb = await makeSandbox([{ name: CTX, eventBytes: 5_000 }]);
  const log = join(sb.state.contextDir(CTX), "events", "audit.jsonl");
  const snap = async (iso: string, line: string) => {
    appendFileSync(log, `${JSON.stringify({ timestamp: iso, note: line })}\n`);
    const r = await runCli(
      [...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      at(iso),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return r.json.data[0].id as string;
  };
  await snap("2026-11-20T00:30:00Z", "first");
  ahead = await snap("2027-02-18T00:30:00Z", "written while the clock was three months ahead");
  present = await snap("2026-11-20T01:30:00Z", "after the clock was corrected");
});

afterAll(() => sb.cleanup());

describe("latest is never a snapshot from the future", () => {
  const now = "2026-11-20T02:00:00Z";
  // PAAS_BACKUP_NOW starts the run's clock there; it runs on from that second
  const warning = () =>
    new RegExp(
      `warning: latest is ${present}: 1 newer snapshot\\(s\\) are from the future \\(ahead of the clock 2026-11-20T02:00:00\\.\\d+Z by more than 5 minutes\\) and never latest: ${ahead}; `,
    );

  it("ls lists the newest snapshot the clock has reached, and says which one it passed over", async () => {
    const r = await runCli([...sb.flags, "ls", "--context", CTX], at(now));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^snapshot ${present} \\(full\\)`));
    expect(r.stderr).toMatch(warning());
    const j = await runCli([...sb.flags, "--json", "ls", "--context", CTX], at(now));
    expect(j.json.snapshot).toBe(present);
    expect(`warning: ${j.json.warnings[0]}`).toMatch(warning());
  });

  it("dump prints the file as the newest present snapshot holds it", async () => {
    const r = await runCli([...sb.flags, "dump", "--context", CTX, "events/audit.jsonl"], at(now));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("after the clock was corrected");
    expect(r.stderr).toMatch(warning());
    // by its id, the one from the future is still readable, without a warning
    const byId = await runCli(
      [...sb.flags, "dump", "--context", CTX, "--snapshot", ahead, "events/audit.jsonl"],
      at(now),
    );
    expect(byId.code, byId.stderr).toBe(0);
    expect(byId.stdout).toContain("three months ahead");
    expect(byId.stdout).not.toContain("after the clock was corrected");
    expect(byId.stderr).not.toContain("warning:");
  });

  it("verify checks the snapshot restore would restore", async () => {
    const r = await runCli([...sb.flags, "--json", "verify", "--context", CTX], at(now));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data.map((d: { id: string }) => d.id)).toEqual([present]);
    expect(r.stderr).toMatch(warning());
  });

  it("with every snapshot from the future, ls refuses latest (exit 2) and names one to pass by id", async () => {
    const r = await runCli([...sb.flags, "ls", "--context", CTX], at("2026-11-19T00:00:00Z"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /is from the future \(ahead of the clock, 2026-11-19T00:00:00\.\d+Z\), so none is latest/,
    );
    expect(r.stderr).toContain(`--snapshot ${ahead}`);
  });
});
