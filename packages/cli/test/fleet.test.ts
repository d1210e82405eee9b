import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createStateRoot, startRgw, type Rgw } from "@paas-backup/testing";
import { S3Storage } from "@paas-backup/s3";
import {
  checkSnapshotChecksum,
  listSnapshotsIn,
  readFencedLog,
  readFleetStatus,
} from "@paas-backup/core/repository";
import { listMarks } from "@paas-backup/core/retention";
import { nodeFs } from "@paas-backup/core/node";
import { runCli, treeHashes } from "./helpers.js";

// Three hosts (processes, each with its own state root) tick their contexts into one RGW bucket at
// once while a fourth prunes under the maintenance lease; then a fresh host restores from what is
// in the bucket alone. The hosts run packages/s3/test/fleet-host.mjs on the built packages.

const HOST = join(import.meta.dirname, "../../s3/test/fleet-host.mjs");
const HOUR0 = Date.parse("2026-12-01T00:00:00Z");

let rgw: Rgw;
let work: string;
beforeAll(async () => {
  rgw = await startRgw();
  work = mkdtempSync(join(tmpdir(), "pb-fleet-"));
});
afterAll(async () => {
  await rgw?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function host(options: Record<string, unknown>): Promise<{ code: number | null; events: any[] }> {
  const child = spawn(process.execPath, [HOST, JSON.stringify({ endpoint: rgw.endpoint, ...options })], {
    env: { PATH: process.env.PATH, ...rgw.env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.on("data", (c) => (out += c));
  return new Promise((resolve) =>
    child.on("close", (code) =>
      resolve({
        code,
        events: out
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l)),
      }),
    ),
  );
}

// what a restore brings back on another host: not the vault (it stays with its host), caches, or secrets
const restored = (rel: string) => /^(vault|cache|addons)|telegram|\.secret$|\.env$|audit\.jsonl$/.test(rel);

describe("a fleet sharing one bucket (RGW)", () => {
  it("three hosts tick into one bucket while another prunes (marks, then removes after the delay); every snapshot is committed once and verifies; a fresh host restores from the bucket alone", async () => {
    const bucket = await rgw.createBucket({ prefix: "fleet" });
    const storage = new S3Storage({
      bucket,
      prefix: "repo",
      url: `s3://${bucket}/repo`,
      endpoint: rgw.endpoint,
      pathStyle: true,
      client: rgw.client,
    });
    const hosts = ["host-a", "host-b", "host-c"];
    const contextsOf = (h: string) => [1, 2, 3].map((i) => `${h}-ctx-${i}`);
    for (const h of hosts)
      await createStateRoot({
        fs: nodeFs,
        root: join(work, h, "state"),
        contexts: contextsOf(h).map((name) => ({ name, eventBytes: 20_000 })),
        plantSecrets: false,
      });
    const common = { bucket, prefix: "repo", ttlMs: 10_000, hourMs0: HOUR0, ticks: 4 };
    const policy = { hourly: 1, daily: 0, weekly: 0, monthly: 0 };
    const all = hosts.flatMap(contextsOf);
    const [a, b, c, pruner] = await Promise.all([
      ...hosts.map((h) =>
        host({
          ...common,
          host: h,
          role: "tick",
          stateRoot: join(work, h, "state"),
          scratch: join(work, h, "scratch"),
          contexts: contextsOf(h),
        }),
      ),
      host({
        ...common,
        host: "host-p",
        role: "prune",
        scratch: join(work, "p", "scratch"),
        contexts: all,
        policy,
        // while the hosts tick, the pruner only marks (the delay outlasts the test)
        deleteAfterMs: 600_000,
        rounds: 4,
        pauseMs: 300,
      }),
    ]);
    for (const r of [a, b, c, pruner])
      expect(r.code, JSON.stringify(r.events.filter((e) => e.event === "error"))).toBe(0);
    // once the ticks are done, prune marks what the policy drops, and removes it only once the
    // marks are older than the delete delay on the server's clock
    const settle = (deleteAfterMs: number) =>
      host({
        ...common,
        host: "host-p",
        role: "prune",
        scratch: join(work, "p", "scratch"),
        contexts: all,
        policy,
        deleteAfterMs,
      });
    const marking = await settle(600_000);
    expect(marking.code).toBe(0);
    const stillListed = await listSnapshotsIn(storage, all[0]!);
    expect(stillListed.length).toBe(4);
    const marked = (await listMarks(storage, all[0]!)).size;
    expect(marked).toBe(stillListed.length - 2);
    const t0 = (await storage.serverTime()).getTime();
    while ((await storage.serverTime()).getTime() - t0 < 3_000) await new Promise((r) => setTimeout(r, 200));
    const removing = await settle(2_000);
    expect(removing.code).toBe(0);
    expect(
      removing.events.filter((e) => e.event === "pruned" && e.context === all[0]).at(-1).removed,
    ).toHaveLength(marked);
    expect((await listMarks(storage, all[0]!)).size).toBe(0);

    for (const h of hosts)
      for (const context of contextsOf(h)) {
        const log = await readFencedLog(storage, `context/${context}`);
        const commits = log.filter((e) => e.kind === "commit");
        // one commit per tick, by its own host, none fenced
        expect(commits.map((e) => [e.data.host, e.fenced])).toEqual(Array(4).fill([h, false]));
        const listed = await listSnapshotsIn(storage, context);
        // the policy keeps the newest (an incremental) and its chain: the full of tick 2
        expect(listed.map((s) => s.kind)).toEqual(["full", "incremental"]);
        expect(listed.map((s) => s.id)).toEqual(commits.slice(2).map((e) => e.data.snapshot));
        for (const s of listed) expect((await checkSnapshotChecksum(s)).state).toBe("verified");
      }

    // The fleet view from the bucket alone: every host's contexts, each with its newest snapshot
    const fleet = await readFleetStatus(storage, { staleAfterMs: 600_000 });
    expect(fleet.alerts).toEqual([]);
    expect(fleet.hosts.map((h) => [h.host, h.stale])).toEqual(hosts.map((h) => [h, false]));
    for (const h of fleet.hosts)
      for (const c of h.contexts) {
        const log = await readFencedLog(storage, `context/${c.context}`);
        expect(c).toMatchObject({
          ok: true,
          lastSnapshot: { id: log.at(-1)!.data.snapshot, kind: "incremental" },
        });
      }
    expect(fleet.hosts.flatMap((h) => h.contexts.map((c) => c.context)).sort()).toEqual(all.sort());
    // once the hosts stop reporting for longer than the stale limit (server time), each is an alert
    const quiet = (await storage.serverTime()).getTime();
    while ((await storage.serverTime()).getTime() - quiet < 2_000)
      await new Promise((r) => setTimeout(r, 200));
    const later = await readFleetStatus(storage, { staleAfterMs: 1_000 });
    expect(later.hosts.every((h) => h.stale)).toBe(true);
    expect(later.alerts).toHaveLength(3);
    expect(later.alerts[0]).toMatch(
      /^host host-a last reported .* it stopped ticking or cannot reach the bucket$/,
    );

    // A fresh host: nothing but the bucket. It copies one context's objects into an empty folder
    // (the backup root layout is the repository's keys) and restores with the built CLI.
    const context = "host-b-ctx-2";
    const fresh = join(work, "fresh");
    for await (const o of storage.list(`${context}/`)) {
      const chunks: Buffer[] = [];
      for await (const chunk of await storage.get(o.key)) chunks.push(chunk as Buffer);
      mkdirSync(dirname(join(fresh, "backups", o.key)), { recursive: true });
      writeFileSync(join(fresh, "backups", o.key), Buffer.concat(chunks));
    }
    await createStateRoot({
      fs: nodeFs,
      root: join(fresh, "state"),
      contexts: [{ name: context, eventBytes: 1_000 }],
      plantSecrets: false,
    });
    const r = await runCli([
      "--state-root",
      join(fresh, "state"),
      "--backup-root",
      join(fresh, "backups"),
      "--json",
      "restore",
      "--context",
      context,
      "--ticket",
      "INC-FLEET",
      "--yes",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(treeHashes(join(fresh, "state", "contexts", context), restored)).toEqual(
      treeHashes(join(work, "host-b", "state", "contexts", context), restored),
    );
  });
});
