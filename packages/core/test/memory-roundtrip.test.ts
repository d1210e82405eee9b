import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import { MemoryFileSystem, createStateRoot, appendEvents } from "@paas-backup/testing";
import { createSnapshot, restoreSnapshot, verifySnapshots } from "../src/index.js";
import { listSnapshots, chainOf } from "../src/repository/index.js";
import { materializeChain } from "../src/restore/index.js";

const CTX = "internal-dogfood";

function clockFrom(start: string) {
  let t = Date.parse(start);
  return () => new Date((t += 61_000));
}

/** the files a snapshot without --include holds: everything but the optional cache/ and releases/ */
async function contents(fs: MemoryFileSystem, dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const path of fs.files(dir))
    if (!/\/(cache|releases)\//.test(path.slice(dir.length)))
      out.set(
        path.slice(dir.length + 1),
        createHash("sha256")
          .update(await fs.readFile(path))
          .digest("hex"),
      );
  return out;
}

describe("snapshot and restore on the in-memory filesystem", () => {
  it("round-trips a full snapshot without touching the real disk", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/state",
      contexts: [{ name: CTX, eventBytes: 30_000, releases: 1 }],
    });
    const clock = clockFrom("2026-11-24T10:00:00Z");
    const snap = await createSnapshot({
      fs,
      stateRoot: "/state",
      backupRoot: "/backups",
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    expect(snap.kind).toBe("full");
    expect(fs.files("/backups")).toEqual([
      `/backups/${CTX}/${snap.id}.manifest.json`,
      `/backups/${CTX}/${snap.id}.tar.gz`,
      `/backups/${CTX}/${snap.id}.tar.gz.sha256`,
    ]);
    const [v] = await verifySnapshots({
      fs,
      backupRoot: "/backups",
      context: CTX,
      snapshot: "latest",
      deep: true,
    });
    expect(v).toMatchObject({ ok: true, checksum: "verified", deep: { ok: true, files: 10 } });
    const result = await restoreSnapshot({
      fs,
      stateRoot: "/restored",
      backupRoot: "/backups",
      context: CTX,
      snapshot: snap.id,
      ticket: "T-1",
      operator: "unit",
      clock,
    });
    expect(result.outcome).toBe("restored");
    const src = await contents(fs, sr.contextDir(CTX));
    const dst = await contents(fs, `/restored/contexts/${CTX}`);
    for (const [path, hash] of dst) if (path !== "events/audit.jsonl") expect(src.get(path), path).toBe(hash);
    expect([...dst.keys()].sort()).toEqual([
      "addons.json",
      "alerts/policy.json",
      "bluegreen.json",
      "config.json",
      "deployments.json",
      "events/alerts.jsonl",
      "events/audit.jsonl",
      "events/deployments.jsonl",
      "targets.json",
      "webhooks/mappings.json",
    ]);
  });

  it("stores only appended log bytes in an incremental and replays long chains byte-identically", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/state",
      contexts: [{ name: CTX, eventBytes: 60_000 }],
      plantSecrets: false,
    });
    const ctx = sr.contextDir(CTX);
    const clock = clockFrom("2026-11-24T00:00:00Z");
    const states: { id: string; files: Map<string, string> }[] = [];
    const full = await createSnapshot({
      fs,
      stateRoot: "/state",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    states.push({ id: full.id, files: await contents(fs, ctx) });
    let index = 10_000;
    for (let i = 0; i < 12; i++) {
      index = await appendEvents(fs, `${ctx}/events/audit.jsonl`, "audit", CTX, 2_000, new Date(), index);
      if (i % 4 === 1)
        await fs.writeFile(
          `${ctx}/targets.json`,
          JSON.stringify({ current_target: `edge-${i}`, targets: [] }, null, 2) + "\n",
        );
      if (i === 6) await fs.rm(`${ctx}/bluegreen.json`);
      if (i === 9) await fs.writeFile(`${ctx}/events/alerts.jsonl`, ""); // rewritten (truncated): stored whole
      fs.now += 1000;
      const inc = await createSnapshot({
        fs,
        stateRoot: "/state",
        backupRoot: "/b",
        context: CTX,
        clock,
        insecurePlaintext: true,
        kind: "incremental",
      });
      expect(inc.kind).toBe("incremental");
      // Only the new audit lines (and a rewritten targets.json) are stored, not the 60 KB of old logs.
      expect(inc.storedBytes).toBeLessThan(6_000);
      states.push({ id: inc.id, files: await contents(fs, ctx) });
    }
    const all = await listSnapshots(fs, "/b", CTX);
    const last = all[all.length - 1]!;
    expect(last.manifest!.files.find((f) => f.path === "events/audit.jsonl")!.stored).toBe("append");
    expect(all[7]!.manifest!.deleted).toEqual(["bluegreen.json"]);
    expect(all[10]!.manifest!.warnings.map((w) => w.path)).toContain("events/alerts.jsonl");
    for (const pick of [3, 7, 12, 5]) {
      const target = `/replay-${pick}`;
      await fs.mkdir(target, { recursive: true });
      const { chain } = chainOf(all[pick]!, all);
      expect(chain[0]!.kind).toBe("full");
      expect(chain).toHaveLength(pick + 1);
      await materializeChain({ fs, chain, target });
      expect(await contents(fs, target)).toEqual(states[pick]!.files);
    }
  });

  it("detects a log rewritten in place with the same length and stores it whole", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 9_000 }],
      plantSecrets: false,
    });
    const log = `${sr.contextDir(CTX)}/events/deployments.jsonl`;
    const clock = clockFrom("2026-11-24T00:00:00Z");
    await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
    });
    const old = Buffer.from(await fs.readFile(log));
    const tampered = Buffer.from(old);
    tampered[10] = tampered[10] === 0x31 ? 0x32 : 0x31;
    fs.now += 5000;
    await fs.writeFile(
      log,
      Buffer.concat([tampered, Buffer.from('{"timestamp":"2026-11-24T01:00:00Z","status":"succeeded"}\n')]),
    );
    const inc = await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock,
      insecurePlaintext: true,
      kind: "incremental",
    });
    const manifest = (await listSnapshots(fs, "/b", CTX)).find((s) => s.id === inc.id)!.manifest!;
    const entry = manifest.files.find((f) => f.path === "events/deployments.jsonl")!;
    expect(entry.stored).toBe("whole");
    expect(manifest.warnings).toContainEqual({
      path: "events/deployments.jsonl",
      reason: "log was rewritten since the parent; stored whole",
    });
  });

  it("captures a log only up to its last complete line while si is mid-write", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 3_000 }],
      plantSecrets: false,
    });
    const log = `${sr.contextDir(CTX)}/events/audit.jsonl`;
    const complete = Buffer.from(await fs.readFile(log));
    await fs.appendFile(log, '{"timestamp":"2026-11-24T01:00:00Z","status":"succ');
    const snap = await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock: clockFrom("2026-11-24T00:00:00Z"),
      insecurePlaintext: true,
    });
    const manifest = (await listSnapshots(fs, "/b", CTX))[0]!.manifest!;
    const entry = manifest.files.find((f) => f.path === "events/audit.jsonl")!;
    expect(entry.size).toBe(complete.length);
    expect(entry.sha256).toBe(createHash("sha256").update(complete).digest("hex"));
    expect(snap.id).toBeTruthy();
  });
});

describe("consistent reads while si is writing", () => {
  it("reads a JSON state file again when it changed while read, and never stores the torn version", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 2_000 }],
      plantSecrets: false,
    });
    const path = `${sr.contextDir(CTX)}/targets.json`;
    const good = Buffer.from(await fs.readFile(path));
    const readFile = fs.readFile.bind(fs);
    let reads = 0;
    fs.readFile = async (p: string) => {
      if (p === path && reads++ === 0) {
        // si is halfway through rewriting the file: the first read sees half of it.
        fs.now += 1;
        await fs.writeFile(path, good);
        return good.subarray(0, Math.floor(good.length / 2));
      }
      return readFile(p);
    };
    await createSnapshot({
      fs,
      stateRoot: "/s",
      backupRoot: "/b",
      context: CTX,
      clock: clockFrom("2026-11-24T00:00:00Z"),
      insecurePlaintext: true,
      sleep: async () => {},
    });
    expect(reads).toBeGreaterThanOrEqual(2);
    const manifest = (await listSnapshots(fs, "/b", CTX))[0]!.manifest!;
    const entry = manifest.files.find((f) => f.path === "targets.json")!;
    expect(entry.sha256).toBe(createHash("sha256").update(good).digest("hex"));
    expect(manifest.warnings).toEqual([]);
  });

  it("fails with exit 6 when a state file never holds still", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/s",
      contexts: [{ name: CTX, eventBytes: 2_000 }],
      plantSecrets: false,
    });
    const path = `${sr.contextDir(CTX)}/deployments.json`;
    const readFile = fs.readFile.bind(fs);
    let n = 0;
    fs.readFile = async (p: string) => {
      if (p === path) {
        fs.now += 1;
        await fs.writeFile(path, `{"apps": {"web${n++}": {}}`); // always mid-write, never valid
      }
      return readFile(p);
    };
    await expect(
      createSnapshot({
        fs,
        stateRoot: "/s",
        backupRoot: "/b",
        context: CTX,
        clock: clockFrom("2026-11-24T00:00:00Z"),
        insecurePlaintext: true,
        sleep: async () => {},
      }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_STATE_CHANGING", exitCode: 6 });
    expect(fs.files("/b").filter((f) => f.includes(".tar.gz"))).toEqual([]);
  });
});
