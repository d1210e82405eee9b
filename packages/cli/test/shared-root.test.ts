import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStateRoot, startRgw, type Rgw } from "@paas-backup/testing";
import { nodeFs } from "@paas-backup/core/node";
import { createHash, randomBytes } from "node:crypto";
import {
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { CLI, modeOf, runCli, treeHashes, type CliResult } from "./helpers.js";

// An s3:// backup root through the built CLI, on a real S3 server (Ceph RGW 16): two simulated
// hosts (each its own state root, HOME and cache) tick into one bucket, status shows both from the
// bucket alone, a third host lists, verifies and restores from it, and its cache can be removed at
// any time. One RGW for the whole file (about a second to start).

let rgw: Rgw;
let work: string;
let bucket: string;
let root: string;
beforeAll(async () => {
  rgw = await startRgw();
  work = mkdtempSync(join(tmpdir(), "pb-shared-root-"));
  bucket = await rgw.createBucket({ prefix: "fleet" });
  root = `s3://${bucket}/repo`;
}, 120_000);
afterAll(async () => {
  await rgw?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Host {
  name: string;
  home: string;
  cache: string;
  stateRoot: string;
  env: Record<string, string>;
}

async function makeHost(name: string, contexts: string[]): Promise<Host> {
  const home = join(work, name, "home");
  mkdirSync(home, { recursive: true });
  const state = await createStateRoot({
    fs: nodeFs,
    root: join(work, name, "state"),
    contexts: contexts.map((c) => ({ name: c, eventBytes: 20_000 })),
    plantSecrets: false,
  });
  const cache = join(work, name, "cache");
  return {
    name,
    home,
    cache,
    stateRoot: state.stateRoot,
    env: { HOME: home, XDG_CACHE_HOME: cache, PAAS_BACKUP_HOST: name, ...rgw.env },
  };
}

/** the CLI on a host, with the root given by flags */
function on(host: Host, args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  return runCli(
    [
      "--state-root",
      host.stateRoot,
      "--backup-root",
      root,
      "--root-endpoint",
      rgw.endpoint,
      "--root-path-style",
      "--json",
      ...args,
    ],
    { env: { ...host.env, ...extraEnv } },
  );
}

/** everything a command left below a folder, as relative paths */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
}

const restoredPart = (rel: string) =>
  /^(vault|cache|addons)|telegram|\.secret$|\.env$|audit\.jsonl$/.test(rel);

let a: Host;
let b: Host;
let c: Host;

describe("an s3:// backup root shared by a fleet (RGW, through the built CLI)", () => {
  it("two hosts tick into one bucket at once; status (and its metrics) shows both hosts' contexts from the bucket alone", async () => {
    a = await makeHost("host-a", ["alpha"]);
    b = await makeHost("host-b", ["beta"]);
    // host-b reaches the root through PAAS_BACKUP_ROOT and its config file instead of flags
    const configB = join(b.home, "config.json");
    writeFileSync(configB, JSON.stringify({ rootEndpoint: rgw.endpoint, rootPathStyle: true }));
    const [ta, tb] = await Promise.all([
      on(a, ["tick", "--context", "alpha", "--insecure-plaintext"]),
      runCli(["--state-root", b.stateRoot, "--json", "tick", "--context", "beta", "--insecure-plaintext"], {
        env: { ...b.env, PAAS_BACKUP_ROOT: root, PAAS_BACKUP_CONFIG: configB },
      }),
    ]);
    expect(ta.code, ta.stdout + ta.stderr).toBe(0);
    expect(tb.code, tb.stdout + tb.stderr).toBe(0);
    expect(ta.json.data[0]).toMatchObject({ context: "alpha", ok: true, action: "full" });
    expect(tb.json.data[0]).toMatchObject({ context: "beta", ok: true, action: "full" });
    expect(ta.json.data[0].snapshot.artifact).toMatch(new RegExp(`^${root}/alpha/`));
    // a second tick within the hour does nothing: the committed snapshots are what it decides on
    const again = await on(a, ["tick", "--context", "alpha", "--insecure-plaintext"]);
    expect(again.json.data[0]).toMatchObject({ ok: true, action: "none" });

    // Nothing was written to a local backup root: the hosts have only their caches (0700).
    for (const h of [a, b]) {
      expect(existsSync(join(h.home, ".si", "paas-backups"))).toBe(false);
      const [id] = readdirSync(join(h.cache, "paas-backup"));
      expect(modeOf(join(h.cache, "paas-backup"))).toBe(0o700);
      expect(modeOf(join(h.cache, "paas-backup", id!))).toBe(0o700);
      expect(filesUnder(join(h.cache, "paas-backup", id!)).some((f) => f.includes(".tar.gz"))).toBe(false);
    }
    // the commit log's entries read once are kept in the cache (create-only, they never change)
    const [idA] = readdirSync(join(a.cache, "paas-backup"));
    const logCache = JSON.parse(
      readFileSync(join(a.cache, "paas-backup", idA!, "log", "alpha.json"), "utf8"),
    );
    expect(logCache.entries.filter((e: { kind: string }) => e.kind === "commit")).toHaveLength(1);
    // both hosts named the same repository identity (made once, in the bucket)
    expect(readdirSync(join(a.cache, "paas-backup"))).toEqual(readdirSync(join(b.cache, "paas-backup")));

    c = await makeHost("host-c", []);
    const metrics = join(work, "fleet.prom");
    const status = await on(c, ["status", "--metrics-file", metrics]);
    expect(status.code, status.stdout + status.stderr).toBe(0);
    expect(
      status.json.data.map((r: { host: string; context: string; ok: boolean }) => [r.host, r.context, r.ok]),
    ).toEqual([
      ["host-a", "alpha", true],
      ["host-b", "beta", true],
    ]);
    expect(status.json.fleet.hosts.map((h: { host: string }) => h.host)).toEqual(["host-a", "host-b"]);
    const prom = readFileSync(metrics, "utf8");
    const check = spawnSync("promtool", ["check", "metrics"], { input: prom, encoding: "utf8" });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(prom).toMatch(/paas_backup_fleet_context_ok\{host="host-a",context="alpha"\} 1/);
    expect(prom).toMatch(/paas_backup_fleet_context_ok\{host="host-b",context="beta"\} 1/);
    expect(prom).toMatch(/paas_backup_fleet_host_stale\{host="host-b"\} 0/);
  });

  it("a host whose status object went stale is an alert (exit 11), named in status and its metrics", async () => {
    const config = join(c.home, "stale.json");
    writeFileSync(config, JSON.stringify({ sharedRoot: { hostStaleAfterSeconds: 1 } }));
    await new Promise((r) => setTimeout(r, 2_500));
    const metrics = join(work, "stale.prom");
    const status = await on(c, ["--config", config, "status", "--metrics-file", metrics]);
    expect(status.code, status.stdout).toBe(11);
    expect(status.json.fleet.alerts.join("\n")).toMatch(/host host-a last reported .* stale/);
    expect(readFileSync(metrics, "utf8")).toMatch(/paas_backup_fleet_host_stale\{host="host-a"\} 1/);
  });

  it("a third host lists, verifies and restores (checksum-confirmed) from the bucket alone; its cache can be deleted and is rebuilt", async () => {
    // host-a adds an incremental with the snapshot command: the chain lives in the bucket
    const incr = await on(a, [
      "snapshot",
      "--context",
      "alpha",
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    expect(incr.code, incr.stdout + incr.stderr).toBe(0);
    expect(incr.json.data[0]).toMatchObject({ kind: "incremental" });

    // an artifact nobody committed through the context's lease (a writer that lost it) is never listed
    const stray = "20261203T000001Z";
    for (const [key, body] of [
      [`repo/alpha/${stray}.tar.gz`, "not a committed snapshot"],
      [`repo/alpha/${stray}.tar.gz.sha256`, `${"0".repeat(64)}  ${stray}.tar.gz\n`],
    ])
      await rgw.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    const list = await on(c, ["list", "--context", "alpha"]);
    expect(list.code, list.stdout + list.stderr).toBe(0);
    expect(list.json.data.map((s: { kind: string; checksum: string }) => [s.kind, s.checksum])).toEqual([
      ["full", "verified"],
      ["incremental", "verified"],
    ]);
    const verify = await on(c, ["verify", "--context", "alpha", "--all", "--deep"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);

    // the cache goes; the next command rebuilds it from the bucket
    rmSync(c.cache, { recursive: true, force: true });
    const fresh = await createStateRoot({
      fs: nodeFs,
      root: join(work, "host-c", "state"),
      contexts: [{ name: "alpha", eventBytes: 1_000 }],
      plantSecrets: false,
    });
    expect(fresh.stateRoot).toBe(c.stateRoot);
    const restore = await on(c, ["restore", "--context", "alpha", "--ticket", "INC-FLEET", "--yes"]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    const result = restore.json.data[0];
    expect(result.outcome).toBe("restored");
    expect(result.snapshot.id).toBe(incr.json.data[0].id);
    expect(result.snapshot.sha256).toBe(list.json.data[1].sha256);
    expect(treeHashes(join(c.stateRoot, "contexts", "alpha"), restoredPart)).toEqual(
      treeHashes(join(a.stateRoot, "contexts", "alpha"), restoredPart),
    );
    // the incident record went to the bucket, not to the host
    expect(result.incidentFile).toMatch(new RegExp(`^${root}/records/alpha/incidents/`));
    const [id] = readdirSync(join(c.cache, "paas-backup"));
    expect(modeOf(join(c.cache, "paas-backup", id!))).toBe(0o700);
    expect(filesUnder(join(c.cache, "paas-backup", id!)).filter((f) => f.includes("incidents/"))).toEqual([]);
  });

  it("prune works under the maintenance lease in two phases (marked, then removed after the delay), its history in the bucket; offsite push copies bucket to bucket", async () => {
    const full2 = await on(a, ["snapshot", "--context", "alpha", "--insecure-plaintext"]);
    expect(full2.code, full2.stdout + full2.stderr).toBe(0);
    const before = await on(c, ["list", "--context", "alpha"]);
    const dropped = before.json.data
      .map((s: { id: string }) => s.id)
      .filter((id: string) => id !== full2.json.data[0].id);
    expect(dropped).toHaveLength(2);
    const config = join(c.home, "prune.json");
    writeFileSync(config, JSON.stringify({ sharedRoot: { deleteAfterSeconds: 2 } }));
    const keepOne = ["--keep-hourly", "1", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0"];
    const first = await on(c, ["--config", config, "prune", "--context", "alpha", ...keepOne]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect([...first.json.data[0].marked].sort()).toEqual(dropped);
    expect(first.json.data[0].removed).toEqual([]);
    // marked: gone from every listing at once, its objects still there for a restore already reading them
    const listed = await on(b, ["list", "--context", "alpha"]);
    expect(listed.json.data.map((s: { id: string }) => s.id)).toEqual([full2.json.data[0].id]);
    const objects = async (prefix: string) =>
      (
        (await rgw.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `repo/${prefix}` })))
          .Contents ?? []
      ).map((o) => o.Key!.slice("repo/".length));
    expect((await objects("alpha/")).filter((k) => k.startsWith(`alpha/${dropped[0]}.`))).not.toEqual([]);
    await new Promise((r) => setTimeout(r, 3_000));
    const second = await on(c, ["--config", config, "prune", "--context", "alpha", ...keepOne]);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect([...second.json.data[0].removed].sort()).toEqual(dropped);
    expect((await objects("alpha/")).filter((k) => dropped.some((id: string) => k.includes(id)))).toEqual([]);
    // the prune history is in the bucket (one object per removal, written before it), not on the host
    const history = await objects("history/alpha/prune/");
    expect(history).toHaveLength(2);
    const lines = await Promise.all(
      history.map(async (key) => {
        const r = await rgw.client.send(new GetObjectCommand({ Bucket: bucket, Key: `repo/${key}` }));
        return JSON.parse(await r.Body!.transformToString());
      }),
    );
    expect(lines.map((l) => l.id).sort()).toEqual(dropped);
    expect(lines[0]).toMatchObject({ schema: "paas-backup/history-prune@1", host: "host-c", where: root });
    expect(await objects("history/alpha/ticks/")).not.toEqual([]);
    // taken under the bucket's maintenance lease (and given back)
    expect((await objects("leases/maintenance/")).some((k) => k.endsWith(".released"))).toBe(true);
    expect(filesUnder(c.cache).some((f) => f.includes("history"))).toBe(false);

    // bucket to bucket, across the root's endpoint flags and the target's own
    const target = await rgw.createBucket({ prefix: "offsite" });
    const push = await on(c, [
      "offsite",
      "push",
      "--context",
      "alpha",
      "--to",
      `s3://${target}/copies`,
      "--endpoint",
      rgw.endpoint,
      "--path-style",
      "--allow-plaintext",
    ]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data[0].pushed.map((p: { id: string }) => p.id)).toEqual([full2.json.data[0].id]);
    const copied = (
      (await rgw.client.send(new ListObjectsV2Command({ Bucket: target, Prefix: "copies/" }))).Contents ?? []
    ).map((o) => o.Key!);
    const artifact = copied.find((k) => k.endsWith(`/alpha/${full2.json.data[0].id}.tar.gz`));
    expect(artifact, copied.join("\n")).toBeDefined();
    const bytes = await (
      await rgw.client.send(new GetObjectCommand({ Bucket: target, Key: artifact! }))
    ).Body!.transformToByteArray();
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(full2.json.data[0].sha256);
    // under the root's own id, the one in the bucket (a lost cache does not make a new one)
    expect(artifact).toContain(readdirSync(join(c.cache, "paas-backup"))[0]);
    rmSync(c.cache, { recursive: true, force: true });
    const again = await on(c, [
      "offsite",
      "push",
      "--context",
      "alpha",
      "--to",
      `s3://${target}/copies`,
      "--endpoint",
      rgw.endpoint,
      "--path-style",
      "--allow-plaintext",
    ]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.json.data[0].root).toBe(push.json.data[0].root);

    // the governance report reads its evidence from the bucket: the removals, the restore, the ticks
    const report = await on(c, ["report", "--context", "alpha", "--period", "2026-12"]);
    expect(report.code, report.stdout + report.stderr).toBe(0);
    const r = report.json.data[0];
    expect(r.backupRoot).toBe(root);
    const ctx = r.contexts[0];
    expect(ctx.retention.deletions.map((d: { id: string }) => d.id).sort()).toEqual(dropped);
    expect(
      ctx.restores.map((x: { ticket: string; file: string }) => [x.ticket, x.file.startsWith(root)]),
    ).toEqual([["INC-FLEET", true]]);
    expect(ctx.snapshots.count).toBe(1);
    expect(ctx.exceptions).toEqual([]);
  });

  it("ls, dump, diff and find read the bucket; doctor, rollback, unblock and drill work on a host of it, their records going to the bucket", async () => {
    // host-a appends an event line and takes an incremental on the full prune kept
    const log = join(a.stateRoot, "contexts", "alpha", "events", "deployments.jsonl");
    writeFileSync(log, `${readFileSync(log, "utf8")}{"event":"deploy","n":1}\n`);
    const incr = await on(a, [
      "snapshot",
      "--context",
      "alpha",
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    expect(incr.code, incr.stdout + incr.stderr).toBe(0);
    const incrId: string = incr.json.data[0].id;
    const fullId: string = incr.json.data[0].parent.id;

    // ls, from host-c (no snapshot of its own): the newest committed snapshot's files
    const ls = await on(c, ["ls", "--context", "alpha"]);
    expect(ls.code, ls.stdout + ls.stderr).toBe(0);
    expect(ls.json.snapshot).toBe(incrId);
    const deployments = ls.json.data.find((f: { path: string }) => f.path === "events/deployments.jsonl");
    expect(deployments).toMatchObject({ stored: "append", size: statSync(log).size });
    // dump: the file's bytes, replayed through the chain read from the bucket
    const dump = await runCli(
      [
        "--state-root",
        c.stateRoot,
        "--backup-root",
        root,
        "--root-endpoint",
        rgw.endpoint,
        "--root-path-style",
        "dump",
        "--context",
        "alpha",
        "events/deployments.jsonl",
      ],
      { env: c.env },
    );
    expect(dump.code, dump.stderr).toBe(0);
    expect(dump.stdout).toBe(readFileSync(log, "utf8"));
    // diff: the one line appended between the full and the incremental
    const diff = await on(c, ["diff", "--context", "alpha", fullId, incrId]);
    expect(diff.code, diff.stdout + diff.stderr).toBe(0);
    expect(diff.json.data).toEqual([
      expect.objectContaining({ path: "events/deployments.jsonl", change: "changed", appendedLines: 1 }),
    ]);
    // diff --live on host-a: nothing changed since its incremental
    const live = await on(a, ["diff", "--context", "alpha", "latest", "--live"]);
    expect(live.code, live.stdout + live.stderr).toBe(0);
    expect(live.json.data).toEqual([]);
    // find: both snapshots hold the log, with the sha256 each recorded
    const found = await on(c, ["find", "--context", "alpha", "events/deployments.jsonl"]);
    expect(found.code, found.stdout + found.stderr).toBe(0);
    expect(found.json.data.map((f: { snapshot: string }) => f.snapshot)).toEqual([fullId, incrId]);
    expect(found.json.data[1].sha256).toBe(deployments.sha256);

    // doctor on host-c's restored context
    const doctor = await on(c, ["doctor", "--context", "alpha"]);
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
    // rollback puts back what the restore of INC-FLEET moved aside; its record goes to the bucket
    const rollback = await on(c, ["rollback", "--context", "alpha", "--ticket", "INC-FLEET"]);
    expect(rollback.code, rollback.stdout + rollback.stderr).toBe(0);
    const undone = rollback.json.data[0];
    expect(undone.incidentFile).toMatch(new RegExp(`^${root}/records/alpha/incidents/`));
    // the previous contents are live again, the restored ones kept aside
    expect(existsSync(undone.restoredFrom)).toBe(false);
    expect(existsSync(join(undone.movedAsideTo, "deployments.json"))).toBe(true);

    // a restore whose external doctor fails blocks the context; unblock lifts it, recorded in the bucket
    const failing = `echo '{"ok": false}'`;
    const blocked = await on(c, [
      "restore",
      "--context",
      "alpha",
      "--ticket",
      "INC-BLOCK",
      "--yes",
      "--doctor-cmd",
      failing,
    ]);
    expect(blocked.code, blocked.stdout + blocked.stderr).toBe(5);
    expect(existsSync(join(c.stateRoot, "contexts", "alpha", "paas-backup.blocked.json"))).toBe(true);
    const unblock = await on(c, [
      "unblock",
      "--context",
      "alpha",
      "--ticket",
      "INC-BLOCK",
      "--doctor-cmd",
      `echo '{"ok": true}'`,
      "--override-doctor",
    ]);
    expect(unblock.code, unblock.stdout + unblock.stderr).toBe(0);
    expect(unblock.json.data[0].incidentFile).toMatch(new RegExp(`^${root}/records/alpha/incidents/`));
    expect(existsSync(join(c.stateRoot, "contexts", "alpha", "paas-backup.blocked.json"))).toBe(false);

    // drill: the newest verified snapshot restored into a scratch root; its record in the bucket
    const drill = await on(c, ["drill", "--context", "alpha"]);
    expect(drill.code, drill.stdout + drill.stderr).toBe(0);
    expect(drill.json.data[0]).toMatchObject({ ok: true, snapshot: incrId });
    expect(drill.json.data[0].recordFile).toMatch(new RegExp(`^${root}/records/alpha/drills/`));
    const records = (
      (await rgw.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/records/alpha/" })))
        .Contents ?? []
    ).map((o) => o.Key!);
    expect(records.filter((k) => k.includes("/drills/"))).toHaveLength(1);
    expect(
      records.filter((k) => k.includes("/incidents/") && k.endsWith(".json")).length,
    ).toBeGreaterThanOrEqual(4);
    // nothing of it stays in host-c's cache
    expect(filesUnder(c.cache).filter((f) => /incidents\/|drills\//.test(f))).toEqual([]);

    // drill status from another host reads the drill records in the bucket: alpha's passed drill
    // counts, beta (mandatory here, never drilled) is overdue: exit 8, in the metrics too
    const drillConfig = join(work, "drill-config.json");
    writeFileSync(drillConfig, JSON.stringify({ mandatoryDrillContexts: ["alpha", "beta"] }));
    const drillMetrics = join(work, "drill.prom");
    const drills = await on(b, ["drill", "status", "--metrics-file", drillMetrics], {
      PAAS_BACKUP_CONFIG: drillConfig,
    });
    expect(drills.code, drills.stdout + drills.stderr).toBe(8);
    expect(drills.json.error.code).toBe("PAAS_BACKUP_DRILL_OVERDUE");
    const byContext = Object.fromEntries(drills.json.data.map((s: { context: string }) => [s.context, s]));
    expect(Object.keys(byContext)).toEqual(["alpha", "beta"]);
    expect(byContext.alpha).toMatchObject({
      mandatory: true,
      overdue: false,
      lastDrill: { ok: true, snapshot: incrId, record: drill.json.data[0].recordFile },
    });
    expect(byContext.beta).toMatchObject({ mandatory: true, overdue: true, lastDrill: null });
    const gauges = readFileSync(drillMetrics, "utf8");
    expect(gauges).toMatch(/paas_backup_drill_overdue\{context="alpha"\} 0/);
    expect(gauges).toMatch(/paas_backup_drill_overdue\{context="beta"\} 1/);
    const alphaConfig = join(work, "drill-alpha-config.json");
    writeFileSync(alphaConfig, JSON.stringify({ mandatoryDrillContexts: ["alpha"] }));
    const alphaOnly = await on(b, ["drill", "status", "--context", "alpha"], {
      PAAS_BACKUP_CONFIG: alphaConfig,
    });
    expect(alphaOnly.code, alphaOnly.stdout + alphaOnly.stderr).toBe(0);
    expect(alphaOnly.json.data.map((s: { context: string }) => s.context)).toEqual(["alpha"]);
    // a context the bucket has never heard of is a typo, as on a folder
    const unknown = await on(b, ["drill", "status", "--context", "gamma"]);
    expect(unknown.code, unknown.stdout).toBe(2);
    expect(unknown.json.error.code).toBe("PAAS_BACKUP_CONTEXT_NOT_FOUND");
  });

  it("offsite list, verify, extend-locks and prune work on the bucket's copies (prune under the maintenance lease); restore --from-offsite restores from the target alone", async () => {
    const target = await rgw.createBucket({ prefix: "offsite2" });
    const to = ["--to", `s3://${target}/copies`, "--endpoint", rgw.endpoint, "--path-style"];
    // two fulls of one day at the target: the offsite retention (7 daily, ...) keeps the newer
    const older = (await on(c, ["list", "--context", "alpha"])).json.data.find(
      (s: { kind: string }) => s.kind === "full",
    ).id;
    const pushed1 = await on(c, ["offsite", "push", "--context", "alpha", ...to, "--allow-plaintext"]);
    expect(pushed1.code, pushed1.stdout + pushed1.stderr).toBe(0);
    const newer = await on(a, ["snapshot", "--context", "alpha", "--insecure-plaintext"]);
    expect(newer.code, newer.stdout + newer.stderr).toBe(0);
    const newerId: string = newer.json.data[0].id;
    const pushed2 = await on(c, ["offsite", "push", "--context", "alpha", ...to, "--allow-plaintext"]);
    expect(pushed2.code, pushed2.stdout + pushed2.stderr).toBe(0);
    expect(pushed2.json.data[0].pushed.map((p: { id: string }) => p.id)).toEqual([newerId]);

    // list: from host-c, which pushed (confirmed), and host-b, whose cache never saw a push: both
    // name the copies the bucket's root owns
    const listC = await on(c, ["offsite", "list", "--context", "alpha", ...to]);
    expect(listC.code, listC.stdout + listC.stderr).toBe(0);
    expect(listC.json.data[0].root).toBe(pushed2.json.data[0].root);
    expect(listC.json.data[0].entries.map((e: { id: string; own: boolean }) => [e.id, e.own])).toEqual([
      [older, true],
      [newerId, true],
    ]);
    const listB = await on(b, ["offsite", "list", "--context", "alpha", ...to]);
    expect(listB.code, listB.stdout + listB.stderr).toBe(0);
    expect(listB.json.data[0].entries.map((e: { id: string }) => e.id)).toEqual([older, newerId]);
    // verify --deep reads every copy's bytes
    const verify = await on(b, ["offsite", "verify", "--context", "alpha", ...to, "--deep"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.json.data[0].results.map((r: { id: string; ok: boolean }) => [r.id, r.ok])).toEqual([
      [older, true],
      [newerId, true],
    ]);
    // extend-locks: a bucket without Object Lock has nothing to extend, and says so
    const locks = await on(b, ["offsite", "extend-locks", "--all-contexts", ...to]);
    expect(locks.code, locks.stdout + locks.stderr).toBe(0);
    expect(locks.json.data.map((d: { context: string }) => d.context)).toContain("alpha");
    expect(locks.json.data.every((d: { skipped: string | null }) => d.skipped)).toBe(true);
    // prune: the older full of the day goes, under the bucket's maintenance lease
    // the maintenance lease: a new epoch taken (the epoch only grows) and given back
    const maintenance = async () => {
      const keys = (
        (
          await rgw.client.send(
            new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/leases/maintenance/" }),
          )
        ).Contents ?? []
      ).map((o) => o.Key!.slice("repo/leases/maintenance/".length));
      const epoch = Math.max(...keys.map((k) => Number(/^e(\d+)/.exec(k)?.[1] ?? 0)));
      return { epoch, released: keys.some((k) => Number(/^e(\d+)\.released$/.exec(k)?.[1]) === epoch) };
    };
    const before = await maintenance();
    const prune = await on(b, ["offsite", "prune", "--context", "alpha", ...to]);
    expect(prune.code, prune.stdout + prune.stderr).toBe(0);
    expect(prune.json.data[0].remove).toEqual([older]);
    const after = await maintenance();
    expect(after.epoch).toBeGreaterThan(before.epoch);
    expect(after.released).toBe(true);
    const atTarget = (
      (await rgw.client.send(new ListObjectsV2Command({ Bucket: target, Prefix: "copies/" }))).Contents ?? []
    ).map((o) => o.Key!);
    expect(atTarget.some((k) => k.includes(`/alpha/${older}.`))).toBe(false);
    expect(atTarget.some((k) => k.endsWith(`/alpha/${newerId}.tar.gz`))).toBe(true);

    // restore --from-offsite: the chain fetched from the target into the cache, restored, and
    // removed from the cache again
    const restore = await on(c, [
      "restore",
      "--context",
      "alpha",
      "--ticket",
      "INC-OFFSITE",
      "--yes",
      "--from-offsite",
      `s3://${target}/copies`,
      "--endpoint",
      rgw.endpoint,
      "--path-style",
    ]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.json.data[0]).toMatchObject({ outcome: "restored", snapshot: { id: newerId } });
    expect(restore.json.offsite.fetched).toEqual([newerId]);
    expect(restore.json.data[0].incidentFile).toMatch(new RegExp(`^${root}/records/alpha/incidents/`));
    expect(filesUnder(c.cache).filter((f) => f.includes(".tar.gz"))).toEqual([]);
  });

  it("tick prunes in two phases, sweeps what was never committed and applies the offsite targets' retention, under the maintenance lease; prune --all-contexts covers the fleet", async () => {
    const target = await rgw.createBucket({ prefix: "offsite3" });
    const config = join(a.home, "maintenance.json");
    writeFileSync(
      config,
      JSON.stringify({
        retention: { hourly: 1, daily: 0, weekly: 0, monthly: 0 },
        sharedRoot: { deleteAfterSeconds: 10, logCheckpointEvery: 2 },
        offsite: {
          targets: [
            {
              name: "far",
              url: `s3://${target}/copies`,
              endpoint: rgw.endpoint,
              pathStyle: true,
              allowPlaintext: true,
              retention: { daily: 1, weekly: 0, monthly: 0 },
            },
          ],
        },
      }),
    );
    const committed = (await on(a, ["list", "--context", "alpha"])).json.data.map(
      (s: { id: string }) => s.id,
    );
    expect(committed.length).toBeGreaterThanOrEqual(3);
    const newest = committed[committed.length - 1];
    const fulls = (await on(a, ["list", "--context", "alpha"])).json.data
      .filter((s: { kind: string }) => s.kind === "full")
      .map((s: { id: string }) => s.id);
    const tick = (extra: string[] = []) =>
      on(a, ["--config", config, "tick", "--context", "alpha", "--insecure-plaintext", ...extra]);
    const first = await tick();
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const m1 = first.json.data[0].maintenance;
    expect(m1).toMatchObject({ ran: true, removed: [], error: null });
    expect([...m1.marked].sort()).toEqual(committed.filter((id: string) => id !== newest).sort());
    // alpha's commit log had more entries than logCheckpointEvery: maintenance wrote a checkpoint
    expect(m1.log).toMatchObject({ checkpoint: expect.any(Number), removed: 0 });

    // the target got the fulls from the push, and keeps one per day
    expect(m1.offsite).toEqual([
      { target: `s3://${target}/copies`, removed: fulls.slice(0, -1), heldByLock: [] },
    ]);
    // marked: gone from every listing at once
    expect((await on(b, ["list", "--context", "alpha"])).json.data.map((s: { id: string }) => s.id)).toEqual([
      newest,
    ]);
    // what a writer killed between its upload and its commit leaves: an artifact nobody committed;
    // younger than the delete delay it stays (a prune now does not sweep it)
    const orphan = "20261203T000002Z";
    await rgw.client.send(
      new PutObjectCommand({ Bucket: bucket, Key: `repo/alpha/${orphan}.tar.gz`, Body: "killed mid-upload" }),
    );
    const early = await on(a, ["--config", config, "prune", "--context", "alpha"]);
    expect(early.code, early.stdout + early.stderr).toBe(0);
    expect(early.json.data[0].swept).toEqual([]);
    await new Promise((r) => setTimeout(r, 10_500));
    const second = await tick();
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const m2 = second.json.data[0].maintenance;
    expect([...m2.removed].sort()).toEqual([...m1.marked].sort());
    expect(second.json.data[0].pruned.sort()).toEqual([...m1.marked].sort());
    // the tick's line in the bucket's history is written after maintenance: it names what was pruned
    const tickLines = (
      (
        await rgw.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/history/alpha/ticks/" }),
        )
      ).Contents ?? []
    )
      .map((o) => o.Key!)
      .sort();
    const lastLine = JSON.parse(
      await (
        await rgw.client.send(new GetObjectCommand({ Bucket: bucket, Key: tickLines[tickLines.length - 1]! }))
      ).Body!.transformToString(),
    );
    expect(lastLine).toMatchObject({ context: "alpha", host: "host-a", ok: true });
    expect([...lastLine.pruned].sort()).toEqual([...m1.marked].sort());
    expect(m2.swept).toContain(`${orphan}.tar.gz`);
    const left = (
      (await rgw.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/alpha/" }))).Contents ??
      []
    ).map((o) => o.Key!);
    expect(left.filter((k) => !k.includes(newest))).toEqual([]);

    // the checkpoint is older than the delete delay now: the entries it covers are gone from the
    // bucket, and a host with no cache reads the log from the checkpoint alone
    expect(m2.log.removed).toBeGreaterThan(0);
    const logKeys = (
      (await rgw.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/log/context/alpha/" })))
        .Contents ?? []
    ).map((o) => o.Key!.slice("repo/log/context/alpha/".length));
    expect(logKeys).toContain(`${String(m1.log.checkpoint).padStart(12, "0")}.checkpoint`);
    expect(logKeys.filter((k) => /^\d{12}$/.test(k) && Number(k) <= m1.log.checkpoint)).toEqual([]);
    const fresh = await on(a, ["list", "--context", "alpha"], {
      XDG_CACHE_HOME: mkdtempSync(join(work, "fresh-cache-")),
    });
    expect(fresh.json.data.map((s: { id: string }) => s.id)).toEqual([newest]);

    // prune --all-contexts, from a host that backs up neither: every context the fleet reports
    const all = await on(c, ["--config", config, "prune", "--all-contexts"]);
    expect(all.code, all.stdout + all.stderr).toBe(0);
    expect(all.json.data.map((d: { context: string; ok: boolean }) => [d.context, d.ok])).toEqual([
      ["alpha", true],
      ["beta", true],
    ]);
    expect(all.json.data[0].plan.keep.map((k: { id: string }) => k.id)).toEqual([newest]);
  });

  it("Ctrl-C during a snapshot gives the context's lease back at once, and a dry run writes nothing to the bucket", async () => {
    const d = await makeHost("host-d", []);
    await createStateRoot({
      fs: nodeFs,
      root: join(work, "host-d", "state"),
      contexts: [{ name: "gamma", eventBytes: 60_000_000 }],
      plantSecrets: false,
    });
    const leaseKeys = async () =>
      (
        (
          await rgw.client.send(
            new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/leases/context/gamma/" }),
          )
        ).Contents ?? []
      ).map((o) => o.Key!.slice("repo/leases/context/gamma/".length));
    const child = spawn(
      process.execPath,
      [
        CLI,
        "--state-root",
        d.stateRoot,
        "--backup-root",
        root,
        "--root-endpoint",
        rgw.endpoint,
        "--root-path-style",
        "snapshot",
        "--context",
        "gamma",
        "--insecure-plaintext",
      ],
      { env: { PATH: process.env.PATH ?? "", ...d.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (c) => (stderr += c));
    const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
    // the snapshot holds the context's lease: interrupt it then
    const deadline = Date.now() + 60_000;
    while (!(await leaseKeys()).some((k) => /^e\d+$/.test(k)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(
      (await leaseKeys()).some((k) => /^e\d+$/.test(k)),
      stderr,
    ).toBe(true);
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(130);
    expect(stderr).toContain("interrupted");
    // given back, not left to its ttl (5 minutes): another host takes it without waiting
    expect((await leaseKeys()).some((k) => k.endsWith(".released"))).toBe(true);
    const config = join(d.home, "no-wait.json");
    writeFileSync(config, JSON.stringify({ lockTimeoutSeconds: 0 }));
    // prune takes the context's lease (and would exit 6 at once, were it still held)
    const taken = await on(d, ["--config", config, "prune", "--context", "gamma"]);
    expect(taken.code, taken.stdout + taken.stderr).toBe(0);

    // a dry run on a bucket that holds no repository: no probe, no identity, no object at all
    const empty = await rgw.createBucket({ prefix: "dry" });
    const dry = await runCli(
      [
        "--state-root",
        a.stateRoot,
        "--backup-root",
        `s3://${empty}/repo`,
        "--root-endpoint",
        rgw.endpoint,
        "--root-path-style",
        "--json",
        "snapshot",
        "--context",
        "alpha",
        "--dry-run",
      ],
      { env: { ...a.env, PAAS_BACKUP_S3_REQUEST_LOG: join(work, "dry-requests.jsonl") } },
    );
    expect(dry.code, dry.stdout + dry.stderr).toBe(0);
    expect(dry.json.mode).toBe("dry-run");
    // the requests it sent, as the S3 driver counted them: one read of the identity, nothing written
    const sent = JSON.parse(readFileSync(join(work, "dry-requests.jsonl"), "utf8")).requests;
    expect(sent).toEqual({ GetObject: 1 });
    expect((await rgw.client.send(new ListObjectsV2Command({ Bucket: empty }))).Contents ?? []).toEqual([]);
    // nor a cache named after a repository that does not exist
    expect(readdirSync(join(a.cache, "paas-backup"))).toHaveLength(1);
  });

  it("a snapshot SIGKILLed mid-upload leaves an unfinished multipart upload; a later tick's maintenance aborts it and sweeps what it left, and the committed snapshot still restores", async () => {
    const k = await makeHost("host-k", []);
    await createStateRoot({
      fs: nodeFs,
      root: join(work, "host-k", "state"),
      contexts: [{ name: "kappa", eventBytes: 20_000 }],
      plantSecrets: false,
    });
    // an artifact over the part size (5 MiB): streamed to the bucket as a multipart upload
    const bundle = join(k.stateRoot, "contexts", "kappa", "releases", "r-1", "bundle.bin");
    mkdirSync(join(bundle, ".."), { recursive: true });
    writeFileSync(bundle, randomBytes(12 * 1024 * 1024));
    const parts = { PAAS_BACKUP_S3_PART_SIZE: String(5 * 1024 * 1024) };
    const config = join(k.home, "short.json");
    writeFileSync(config, JSON.stringify({ sharedRoot: { deleteAfterSeconds: 2, leaseSeconds: 10 } }));
    const snapshotArgs = ["snapshot", "--context", "kappa", "--insecure-plaintext", "--include", "releases"];
    const committed = await on(k, ["--config", config, ...snapshotArgs], parts);
    expect(committed.code, committed.stdout + committed.stderr).toBe(0);
    const keep = committed.json.data[0].id as string;

    const uploads = async () =>
      (await rgw.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: "repo/kappa/" })))
        .Uploads ?? [];
    writeFileSync(bundle, randomBytes(12 * 1024 * 1024));
    const child = spawn(
      process.execPath,
      [
        CLI,
        "--state-root",
        k.stateRoot,
        "--backup-root",
        root,
        "--root-endpoint",
        rgw.endpoint,
        "--root-path-style",
        "--config",
        config,
        ...snapshotArgs,
        "--kind",
        "full",
      ],
      { env: { PATH: process.env.PATH ?? "", ...k.env, ...parts }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (c) => (stderr += c));
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on("close", (_code, signal) => r(signal)));
    const deadline = Date.now() + 90_000;
    while ((await uploads()).length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGKILL");
    expect(await exited, stderr).toBe("SIGKILL");
    const left = await uploads();
    expect(left.length, stderr).toBeGreaterThan(0);
    expect(left.every((u) => /\/\.[^/]+\.partial$/.test(u.Key!))).toBe(true);

    // past the delete delay and the dead run's lease: the next tick's maintenance sweeps
    await new Promise((r) => setTimeout(r, 10_500));
    const tick = await on(k, ["--config", config, "tick", "--context", "kappa", "--insecure-plaintext"]);
    expect(tick.code, tick.stdout + tick.stderr).toBe(0);
    const m = tick.json.data[0].maintenance;
    expect(m).toMatchObject({ ran: true, error: null });
    for (const u of left) expect(m.swept).toContain(u.Key!.slice("repo/kappa/".length));
    expect(await uploads()).toEqual([]);
    // nothing of the killed run is left; the committed snapshot is whole, and restores
    const objects = (
      (await rgw.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/kappa/" }))).Contents ??
      []
    ).map((o) => o.Key!.slice("repo/kappa/".length));
    expect(objects.filter((key) => !key.startsWith(keep) && key !== ".verified-chain.json")).toEqual([]);
    const listed = await on(k, ["list", "--context", "kappa"]);
    expect(listed.json.data.map((s: { id: string }) => s.id)).toEqual([keep]);
    const verified = await on(k, ["verify", "--context", "kappa", "--deep"]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    const fresh = await makeHost("host-k2", []);
    const restored = await on(fresh, ["restore", "--context", "kappa", "--ticket", "INC-KILLED", "--yes"]);
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(restored.json.data[0].snapshot.id).toBe(keep);
  });

  it("refuses what it cannot do safely or at all, with documented exit codes, and never shows a credential", async () => {
    const outputs: string[] = [];
    const keep = (r: CliResult) => (outputs.push(r.stdout, r.stderr), r);
    // a wrong endpoint: nothing answers there
    const nowhere = keep(
      await runCli(
        [
          "--backup-root",
          root,
          "--root-endpoint",
          "http://127.0.0.1:9",
          "--root-path-style",
          "--json",
          "list",
          "--context",
          "alpha",
        ],
        { env: c.env },
      ),
    );
    expect(nowhere.code, nowhere.stdout).toBe(10);
    expect(nowhere.json.error.code).toBe("PAAS_BACKUP_STORAGE_FAILED");
    expect(nowhere.json.error.message).toContain("http://127.0.0.1:9");
    expect(nowhere.json.error.remediation).toContain("--root-endpoint");
    // wrong credentials
    const denied = keep(
      await on(c, ["list", "--context", "alpha"], { AWS_SECRET_ACCESS_KEY: "0".repeat(40) }),
    );
    expect(denied.code, denied.stdout).toBe(10);
    expect(denied.json.error.code).toBe("PAAS_BACKUP_STORAGE_FAILED");
    // a bucket without a repository is not one, for a reader
    const empty = `s3://${await rgw.createBucket({ prefix: "empty" })}/repo`;
    const none = keep(
      await runCli(
        [
          "--backup-root",
          empty,
          "--root-endpoint",
          rgw.endpoint,
          "--root-path-style",
          "--json",
          "list",
          "--context",
          "alpha",
        ],
        { env: c.env },
      ),
    );
    expect(none.code).toBe(2);
    expect(none.json.error.code).toBe("PAAS_BACKUP_NOT_A_REPOSITORY");
    // a versioned bucket on RGW 16 ignores create-only writes: refused before anything is written
    const versioned = `s3://${await rgw.createBucket({ prefix: "versioned", versioning: true })}/repo`;
    const refused = keep(
      await runCli(
        [
          "--state-root",
          a.stateRoot,
          "--backup-root",
          versioned,
          "--root-endpoint",
          rgw.endpoint,
          "--root-path-style",
          "--json",
          "snapshot",
          "--context",
          "alpha",
          "--insecure-plaintext",
        ],
        { env: a.env },
      ),
    );
    expect(refused.code, refused.stdout).toBe(4);
    expect(refused.json.error.code).toBe("PAAS_BACKUP_NO_CONDITIONAL_WRITES");
    for (const text of outputs) {
      expect(text).not.toContain(rgw.secretAccessKey);
      expect(text).not.toContain(rgw.accessKeyId);
    }
    // nor in what the hosts wrote to the bucket (status objects, history, leases, records)
    const keys = (
      (await rgw.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "repo/" }))).Contents ?? []
    ).map((o) => o.Key!);
    expect(keys.some((k) => k.startsWith("repo/status/"))).toBe(true);
    for (const key of keys.filter((k) => !/\.tar\.gz$/.test(k))) {
      const text = await (
        await rgw.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
      ).Body!.transformToString();
      expect(text, key).not.toContain(rgw.secretAccessKey);
      expect(text, key).not.toContain(rgw.accessKeyId);
    }
    // nor in what the hosts keep (their caches) or wrote (metrics)
    const kept = [a, b, c].flatMap((h) => filesUnder(h.cache).map((f) => join(h.cache, f)));
    for (const path of [...kept, join(work, "fleet.prom"), join(work, "stale.prom")]) {
      if (!statSync(path).isFile()) continue;
      const text = readFileSync(path, "utf8");
      expect(text, path).not.toContain(rgw.secretAccessKey);
      expect(text, path).not.toContain(rgw.accessKeyId);
    }
  });
});
