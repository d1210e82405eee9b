import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { existsSync, readFileSync, writeFileSync, readdirSync, appendFileSync, mkdirSync } from "node:fs";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { hostname } from "node:os";
import { makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });

describe("incremental snapshots through the CLI", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 3_000_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("stores only the appended lines, lists kind and parent, and restores byte-identical state", async () => {
    const full = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    const log = join(sb.state.contextDir(CTX), "events", "deployments.jsonl");
    const tail =
      `${JSON.stringify({ timestamp: "2026-11-24T12:00:00Z", context: CTX, source: "si paas", command: "deploy", status: "succeeded" })}\n`.repeat(
        100,
      );
    appendFileSync(log, tail);
    const inc = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    expect(inc.code, inc.stderr).toBe(0);
    const i = inc.json.data[0];
    expect(i).toMatchObject({
      kind: "incremental",
      parent: { id: full.json.data[0].id, sha256: full.json.data[0].sha256 },
    });
    expect(i.storedBytes).toBe(Buffer.byteLength(tail));
    expect(i.bytes).toBeLessThan(full.json.data[0].bytes / 20);
    const wanted = treeHashes(sb.state.contextDir(CTX), (rel) =>
      /^(vault|cache|releases|addons)|telegram|\.secret$/.test(rel),
    );
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.data.map((d: any) => [d.kind, d.parent])).toEqual([
      ["full", null],
      ["incremental", full.json.data[0].id],
    ]);
    const deep = await runCli([
      ...sb.flags,
      "--json",
      "verify",
      "--context",
      CTX,
      "--snapshot",
      i.id,
      "--deep",
    ]);
    expect(deep.code, deep.stdout).toBe(0);
    expect(deep.json.data[0].chain).toEqual([full.json.data[0].id, i.id]);
    writeFileSync(log, "");
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--snapshot",
      i.id,
      "--ticket",
      "INC-3",
      "--yes",
    ]);
    expect(r.code, r.stdout).toBe(0);
    const got = treeHashes(sb.state.contextDir(CTX), (rel) =>
      /^(vault|cache|releases|addons)|telegram|\.secret$|audit\.jsonl$/.test(rel),
    );
    wanted.delete("events/audit.jsonl");
    expect(got).toEqual(wanted);
  });

  it("refuses an incremental whose parent is gone, naming the newest snapshot that can still be restored", async () => {
    const f = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    const i1 = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    const f2 = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    appendFileSync(
      join(sb.state.contextDir(CTX), "events", "audit.jsonl"),
      '{"timestamp":"2026-11-24T13:00:00Z","status":"succeeded"}\n',
    );
    const i2 = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    expect(i2.json.data[0].parent.id).toBe(f2.json.data[0].id);
    const { rmSync } = await import("node:fs");
    rmSync(f2.json.data[0].artifact);
    const r = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--snapshot",
      i2.json.data[0].id,
      "--ticket",
      "INC-4",
      "--yes",
    ]);
    expect(r.code).toBe(3);
    expect(r.json.error.code).toBe("PAAS_BACKUP_CHAIN_BROKEN");
    expect(r.json.error.remediation).toContain(i1.json.data[0].id);
    expect(f.code).toBe(0);
  });
});

describe("tick and prune for cron", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([
      { name: CTX, eventBytes: 50_000 },
      { name: "customer-1", eventBytes: 20_000 },
      { name: "oss-demo", eventBytes: 20_000 },
    ]);
  });
  afterEach(() => sb.cleanup());

  it("takes the daily full, then hourly incrementals, and is idempotent", async () => {
    const t1 = await runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"], {
      env: at("2026-11-24T00:10:00Z"),
    });
    expect(t1.code, t1.stdout + t1.stderr).toBe(0);
    expect(t1.json.data[0]).toMatchObject({ context: CTX, ok: true, action: "full" });
    const again = await runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"], {
      env: at("2026-11-24T00:11:00Z"),
    });
    expect(again.json.data[0]).toMatchObject({ action: "none", snapshot: null });
    const t2 = await runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"], {
      env: at("2026-11-24T01:06:00Z"),
    });
    expect(t2.json.data[0]).toMatchObject({ action: "incremental" });
    const t3 = await runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"], {
      env: at("2026-11-25T00:05:00Z"),
    });
    expect(t3.json.data[0]).toMatchObject({ action: "full" });
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.data.map((d: any) => d.kind)).toEqual(["full", "incremental", "full"]);
  });

  it("with --all-contexts, one failing context does not stop the others (exit 7, each outcome listed)", async () => {
    // customer-1 is locked by a live process (pid 1) and the config waits 0 s: that context fails, not the run.
    // (A plaintext secret no longer fails a context: since issue 10 §4 it is redacted, see redaction.test.ts.)
    mkdirSync(join(sb.backupRoot, "customer-1"), { recursive: true, mode: 0o700 });
    writeFileSync(
      join(sb.backupRoot, "customer-1", ".lock"),
      JSON.stringify({
        pid: 1,
        host: hostname(),
        nonce: "n0",
        startedAt: new Date().toISOString(),
        command: "tick",
      }),
    );
    writeFileSync(
      join(sb.state.contextDir("oss-demo"), "targets.json"),
      `${JSON.stringify({ targets: [], api_token: "tok-live-9f8e7d6c5b4a" }, null, 2)}\n`,
    );
    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ lockTimeoutSeconds: 0 }));
    const r = await runCli(
      [...sb.flags, "--config", config, "--json", "tick", "--all-contexts", "--insecure-plaintext"],
      { env: at("2026-11-24T03:00:00Z") },
    );
    expect(r.code).toBe(7);
    expect(r.json.ok).toBe(false);
    expect(r.json.failed).toBe(1);
    const byCtx = Object.fromEntries(r.json.data.map((o: any) => [o.context, o]));
    expect(Object.keys(byCtx).sort()).toEqual(["customer-1", CTX, "oss-demo"].sort());
    expect(byCtx["customer-1"]).toMatchObject({ ok: false, error: { code: "PAAS_BACKUP_LOCKED" } });
    expect(byCtx[CTX]).toMatchObject({ ok: true, action: "full" });
    // the leaked token in oss-demo is redacted and listed; the tick still backs it up
    expect(byCtx["oss-demo"]).toMatchObject({
      ok: true,
      action: "full",
      redactions: [{ path: "targets.json", rule: "secret-json-field", acknowledged: false }],
    });
    expect(r.stdout).not.toContain("tok-live-9f8e7d6c5b4a");
  });

  it("prune --dry-run prints the plan, prune applies it, and every remaining snapshot still verifies", async () => {
    // Ten days of a full at 00:05 and an incremental at 06:05.
    for (let d = 10; d < 20; d++) {
      await runCli([...sb.flags, "tick", "--context", CTX, "--insecure-plaintext"], {
        env: at(`2026-11-${d}T00:05:00Z`),
      });
      appendFileSync(
        join(sb.state.contextDir(CTX), "events", "audit.jsonl"),
        `{"timestamp":"2026-11-${d}T06:00:00Z","status":"succeeded"}\n`,
      );
      await runCli(
        [...sb.flags, "snapshot", "--context", CTX, "--kind", "incremental", "--insecure-plaintext"],
        { env: at(`2026-11-${d}T06:05:00Z`) },
      );
    }
    const before = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(before.json.count).toBe(20);
    const dry = await runCli(
      [...sb.flags, "--json", "prune", "--context", CTX, "--dry-run", "--keep-hourly", "2"],
      { env: at("2026-11-19T07:00:00Z") },
    );
    expect(dry.code).toBe(0);
    const plan = dry.json.data[0].plan;
    expect(plan.keep.length + plan.remove.length).toBe(20);
    expect((await runCli([...sb.flags, "--json", "list", "--context", CTX])).json.count).toBe(20);
    const kept = Object.fromEntries(plan.keep.map((k: any) => [k.id, k.reasons]));
    const ids = before.json.data.map((d: any) => d.id);
    // the newest incremental (hourly) needs the newest full; 7 daily fulls; the older incrementals go
    expect(kept[ids[19]]).toEqual(expect.arrayContaining([expect.stringMatching(/^hourly /)]));
    expect(kept[ids[18]]).toEqual(expect.arrayContaining([`needed by ${ids[19]}`, "daily 2026-11-19"]));
    expect(plan.remove.map((r: any) => r.id)).toContain(ids[1]);
    const real = await runCli([...sb.flags, "--json", "prune", "--context", CTX, "--keep-hourly", "2"], {
      env: at("2026-11-19T07:00:00Z"),
    });
    expect(real.json.data[0].removed.sort()).toEqual(plan.remove.map((r: any) => r.id).sort());
    const after = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--all", "--deep"]);
    expect(after.code, after.stdout).toBe(0);
    expect(after.json.data.map((d: any) => d.id).sort()).toEqual(plan.keep.map((k: any) => k.id).sort());
    const files = readdirSync(join(sb.backupRoot, CTX));
    for (const r of plan.remove) expect(files.filter((f) => f.startsWith(`${r.id}.`))).toEqual([]);
  });
});

describe("one lock per context", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("a run waits a bounded time for a live holder, then exits 6 naming it; a dead holder's lock is taken over", async () => {
    const holder = spawn("sleep", ["30"]);
    mkdirSync(join(sb.backupRoot, CTX), { recursive: true });
    const lock = join(sb.backupRoot, CTX, ".lock");
    writeFileSync(
      lock,
      JSON.stringify({
        pid: holder.pid,
        host: hostname(),
        nonce: "n1",
        startedAt: new Date().toISOString(),
        command: "tick",
      }),
    );
    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ lockTimeoutSeconds: 1 }));
    const t0 = Date.now();
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
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(busy.json.error.code).toBe("PAAS_BACKUP_LOCKED");
    expect(busy.json.error.message).toContain(`pid ${holder.pid}`);
    holder.kill("SIGKILL");
    await new Promise((r) => holder.on("close", r));
    const ok = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(existsSync(lock)).toBe(false);
    expect(readFileSync(ok.json.data[0].checksumFile, "utf8")).toContain(ok.json.data[0].sha256);
  });
});
