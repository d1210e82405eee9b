import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawnSync } from "node:child_process";
import { appendFileSync, readFileSync, writeFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { CLI, runCli, makeSandbox, treeHashes, type Sandbox } from "./helpers.js";

/** Issue 13 §5: looking inside snapshots without restoring, through the built CLI on real files. */
const CTX = "internal-dogfood";
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** dump's stdout as raw bytes (runCli decodes text; dump must be byte-exact). */
function dumpBytes(args: string[]): { code: number; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root" },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString() };
}

describe("ls, dump, diff, find and snapshot --dry-run", () => {
  let sb: Sandbox;
  let identity = "";
  let full = "";
  let inc = "";
  let ctxDir = "";
  const appended = Array.from(
    { length: 7 },
    (_, i) => `{"ts":"2026-11-24T11:00:0${i}Z","kind":"audit","action":"look-inside-${i}"}\n`,
  ).join("");
  let auditAtInc: Buffer;
  let deploymentsAtFull: Buffer;

  beforeAll(async () => {
    sb = await makeSandbox();
    ctxDir = sb.state.contextDir(CTX);
    identity = join(sb.dir, "keys", "id.txt");
    const k = await runCli([...sb.flags, "--json", "keygen", "--out", identity]);
    const recipient = k.json.data[0].recipient;
    deploymentsAtFull = readFileSync(join(ctxDir, "deployments.json"));
    full = (await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--recipient", recipient]))
      .json.data[0].id;
    appendFileSync(join(ctxDir, "events", "audit.jsonl"), appended);
    writeFileSync(
      join(ctxDir, "deployments.json"),
      JSON.stringify({ apps: { web: { current_release: "r-2" } } }, null, 2) + "\n",
    );
    auditAtInc = readFileSync(join(ctxDir, "events", "audit.jsonl"));
    const r = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--recipient",
      recipient,
    ]);
    expect(r.json.data[0].kind).toBe("incremental");
    inc = r.json.data[0].id;
  }, 60_000);
  afterAll(() => sb.cleanup());

  it("ls lists an incremental's files (through its chain) with size, mode and sha256", async () => {
    const r = await runCli([...sb.flags, "--json", "ls", "--context", CTX, "--snapshot", inc]);
    expect(r.code).toBe(0);
    expect(r.json.snapshot).toBe(inc);
    const byPath = new Map(r.json.data.map((f: { path: string }) => [f.path, f]));
    const live = treeHashes(ctxDir);
    for (const path of ["config.json", "deployments.json", "events/audit.jsonl"]) {
      const f = byPath.get(path) as { sha256: string; size: number; mode: number };
      expect(f.sha256).toBe(live.get(path));
      expect(f.size).toBe(statSync(join(ctxDir, path)).size);
      expect(f.mode & 0o777).toBe(statSync(join(ctxDir, path)).mode & 0o777);
    }
    expect([...byPath.keys()].some((p) => (p as string).startsWith("vault/"))).toBe(false);
    const human = await runCli([...sb.flags, "ls", "--context", CTX, "--snapshot", inc, "--long"]);
    expect(human.stdout).toContain(`${live.get("config.json")}  config.json`);
    for (const line of human.stdout.split("\n").slice(0, human.stdout.split("\n").indexOf("sha256:")))
      expect(line.length).toBeLessThanOrEqual(100);
  });

  it("dump prints one file byte-identical to what was backed up, from an encrypted incremental's chain", async () => {
    const audit = dumpBytes([
      ...sb.flags,
      "dump",
      "--context",
      CTX,
      "--snapshot",
      inc,
      "--identity",
      identity,
      "events/audit.jsonl",
    ]);
    expect(audit.code).toBe(0);
    expect(sha(audit.stdout)).toBe(sha(auditAtInc));
    const old = dumpBytes([
      ...sb.flags,
      "dump",
      "--context",
      CTX,
      "--snapshot",
      full,
      "--identity",
      identity,
      "deployments.json",
    ]);
    expect(old.stdout.equals(deploymentsAtFull)).toBe(true);
    // without the identity: exit 4 as for restore, and nothing on stdout
    const noKey = dumpBytes([...sb.flags, "dump", "--context", CTX, "--snapshot", inc, "deployments.json"]);
    expect(noKey.code).toBe(4);
    expect(noKey.stdout.length).toBe(0);
    // a path the snapshot does not hold (a policy-excluded secret): exit 2, and no secret printed
    const secret = dumpBytes([
      ...sb.flags,
      "dump",
      "--context",
      CTX,
      "--identity",
      identity,
      "vault/secrets.env",
    ]);
    expect(secret.code).toBe(2);
    expect(secret.stdout.length).toBe(0);
    for (const p of sb.state.planted) expect(secret.stderr).not.toContain(p.marker);
    // the scratch folder is gone
    expect(
      readdirSync(process.env.TMPDIR ?? "/tmp")
        .filter((n) => n.startsWith("paas-backup-inspect-"))
        .every((n) => readdirSync(join(process.env.TMPDIR ?? "/tmp", n)).length === 0),
    ).toBe(true);
  });

  it("diff names added, changed and removed files and the lines appended to an event log", async () => {
    const r = await runCli([
      ...sb.flags,
      "--json",
      "diff",
      "--context",
      CTX,
      full,
      inc,
      "--identity",
      identity,
    ]);
    expect(r.code).toBe(0);
    const changes = new Map(r.json.data.map((e: { path: string }) => [e.path, e]));
    expect(
      (changes.get("events/audit.jsonl") as { change: string; appendedLines: number }).appendedLines,
    ).toBe(7);
    expect((changes.get("deployments.json") as { change: string }).change).toBe("changed");
    expect(changes.has("config.json")).toBe(false);
    // against the live context: a new line, a removed file and a new one
    appendFileSync(
      join(ctxDir, "events", "alerts.jsonl"),
      '{"ts":"2026-11-24T12:00:00Z","kind":"alert","msg":"x"}\n',
    );
    const bluegreen = readFileSync(join(ctxDir, "bluegreen.json"));
    spawnSync("rm", [join(ctxDir, "bluegreen.json")]);
    const live = await runCli([...sb.flags, "--json", "diff", "--context", CTX, inc, "--live"]);
    const l = new Map(live.json.data.map((e: { path: string }) => [e.path, e]));
    expect((l.get("events/alerts.jsonl") as { appendedLines: number }).appendedLines).toBe(1);
    expect((l.get("bluegreen.json") as { change: string }).change).toBe("removed");
    const human = await runCli([...sb.flags, "diff", "--context", CTX, inc, "--live"]);
    expect(human.stdout).toMatch(/M {2}events\/alerts\.jsonl .*1 lines appended/);
    expect(human.stdout).toContain("-  bluegreen.json");
    writeFileSync(join(ctxDir, "bluegreen.json"), bluegreen);
  });

  it("find says which snapshots hold a path, with size and sha256", async () => {
    const r = await runCli([...sb.flags, "--json", "find", "--context", CTX, "deployments.json"]);
    expect(r.json.data.map((d: { snapshot: string }) => d.snapshot)).toEqual([full, inc]);
    expect(r.json.data[0].sha256).toBe(sha(deploymentsAtFull));
    const none = await runCli([...sb.flags, "--json", "find", "--context", CTX, "vault/secrets.env"]);
    expect(none.json.count).toBe(0);
  });

  it("snapshot --dry-run says what would be included, excluded and skipped, with the rule, and writes nothing", async () => {
    const before = treeHashes(sb.backupRoot);
    const r = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.json.mode).toBe("dry-run");
    const by = new Map(r.json.data.map((d: { path: string }) => [d.path, d]));
    expect((by.get("config.json") as { action: string }).action).toBe("include");
    expect((by.get("vault/") as { action: string; rule: string }).action).toBe("exclude");
    expect((by.get("vault/") as { rule: string }).rule.length).toBeGreaterThan(3);
    expect((by.get("alerts/telegram.json") as { action: string }).action).toBe("exclude");
    // the rule that decided each path comes from core's plan: its words in `rule`, its id in `ruleId`
    expect(by.get("config.json")).toMatchObject({ ruleId: "protected", rule: "protected file (policy §2)" });
    expect(by.get("vault/")).toMatchObject({
      ruleId: "excluded:vault",
      rule: "vault material (policy §3.1)",
    });
    expect(by.get("alerts/telegram.json")).toMatchObject({ ruleId: "excluded:alert-credentials" });
    const withReleases = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--dry-run",
      "--include",
      "releases",
    ]);
    const release = withReleases.json.data.find((d: { path: string }) => d.path.startsWith("releases/"));
    expect(release).toMatchObject({
      action: "include",
      ruleId: "optional:releases",
      rule: "optional folder asked for (--include releases)",
    });
    expect(treeHashes(sb.backupRoot)).toEqual(before);
    const human = await runCli([...sb.flags, "snapshot", "--context", CTX, "--dry-run"]);
    expect(human.stdout).toContain("nothing was written");
    for (const p of sb.state.planted) expect(human.stdout + r.stdout).not.toContain(p.marker);
  });
});
