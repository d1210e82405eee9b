import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import { runTick, type TickOptions } from "../src/index.js";
import { readTickRecord } from "../src/governance/index.js";
import { listSnapshots } from "../src/repository/index.js";
import type { LockOwner } from "../src/snapshot/index.js";

const owner: LockOwner = { pid: 4242, host: "unit", command: "tick", isAlive: () => false };

/** a clock the test moves: each read advances one second, as a real tick's reads would */
function movableClock(start: string) {
  let t = Date.parse(start);
  const clock = () => new Date((t += 1_000));
  return { clock, set: (iso: string) => void (t = Date.parse(iso)) };
}

function options(fs: MemoryFileSystem, clock: () => Date, extra: Partial<TickOptions>): TickOptions {
  return {
    fs,
    stateRoot: "/state",
    backupRoot: "/backups",
    clock,
    owner,
    lockTimeoutMs: 1_000,
    insecurePlaintext: true,
    ...extra,
  };
}

describe("runTick: the one tick orchestration (SDK and CLI alike)", () => {
  it("takes the day's full, then nothing within the hour, then an incremental, recording each outcome for status", async () => {
    const fs = new MemoryFileSystem();
    await createStateRoot({
      fs,
      root: "/state",
      contexts: [{ name: "alpha", eventBytes: 20_000 }],
      plantSecrets: false,
    });
    const time = movableClock("2026-11-24T08:00:00Z");

    const first = await runTick(options(fs, time.clock, { contexts: ["alpha"] }));
    expect(first.exitCode).toBe(0);
    expect(first.outcomes).toHaveLength(1);
    expect(first.outcomes[0]).toMatchObject({
      context: "alpha",
      ok: true,
      action: "full",
      error: null,
      redactions: [],
    });
    expect(first.outcomes[0]!.reason).toContain("no full snapshot yet for 2026-11-24");
    expect(first.outcomes[0]!.snapshot).toMatchObject({ kind: "full" });
    expect(await readTickRecord(fs, "/backups", "alpha")).toMatchObject({
      ok: true,
      action: "full",
      lastSnapshots: { full: { id: first.outcomes[0]!.snapshot!.id } },
    });

    time.set("2026-11-24T08:20:00Z");
    const again = await runTick(options(fs, time.clock, { contexts: ["alpha"] }));
    expect(again.outcomes[0]).toMatchObject({ ok: true, action: "none", snapshot: null });
    expect(again.exitCode).toBe(0);

    time.set("2026-11-24T09:05:00Z");
    const later = await runTick(options(fs, time.clock, { contexts: ["alpha"] }));
    expect(later.exitCode).toBe(0);
    expect(later.outcomes[0]).toMatchObject({
      ok: true,
      action: "incremental",
      snapshot: { kind: "incremental" },
    });
    expect(later.outcomes[0]!.reason).toMatch(/newest snapshot is \d+ min old/);
    expect((await listSnapshots(fs, "/backups", "alpha")).map((s) => s.kind)).toEqual([
      "full",
      "incremental",
    ]);
    const record = await readTickRecord(fs, "/backups", "alpha");
    expect(record).toMatchObject({ ok: true, action: "incremental" });
    // the record keeps the newest of each kind, so status sees both the full and the incremental
    expect(Object.keys(record!.lastSnapshots).sort()).toEqual(["full", "incremental"]);
  });

  it("an all-contexts run ticks every context when one fails, records the failure and exits partial (7)", async () => {
    const fs = new MemoryFileSystem();
    await createStateRoot({
      fs,
      root: "/state",
      contexts: [{ name: "alpha" }, { name: "beta" }, { name: "gamma" }],
      plantSecrets: false,
    });
    const time = movableClock("2026-11-24T08:00:00Z");
    const offsite: string[] = [];
    const result = await runTick(
      options(fs, time.clock, {
        allContexts: true,
        // beta's offsite copy fails after its snapshot: a failure like any other, the others still run
        afterEach: async (context) => {
          if (context === "beta") throw new Error("offsite target refused the upload");
          offsite.push(context);
          return { pushed: context };
        },
      }),
    );
    expect(result.exitCode).toBe(7);
    expect(result.contexts).toEqual(["alpha", "beta", "gamma"]);
    expect(result.outcomes.map((o) => [o.context, o.ok, o.action])).toEqual([
      ["alpha", true, "full"],
      ["beta", false, "full"],
      ["gamma", true, "full"],
    ]);
    expect(result.outcomes[1]!.error).toMatchObject({
      code: "PAAS_BACKUP_UNEXPECTED",
      message: "offsite target refused the upload",
    });
    expect(result.outcomes[0]!.offsite).toEqual({ pushed: "alpha" });
    expect(offsite).toEqual(["alpha", "gamma"]);
    expect(await readTickRecord(fs, "/backups", "beta")).toMatchObject({
      ok: false,
      error: { code: "PAAS_BACKUP_UNEXPECTED" },
      lastSuccessAt: null,
    });
    expect(await readTickRecord(fs, "/backups", "gamma")).toMatchObject({ ok: true, action: "full" });
  });

  it("one named context that fails exits with that failure's own code, and a redaction alone exits 9", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/state",
      contexts: [{ name: "alpha" }],
      plantSecrets: false,
    });
    // a fake token of GitHub's format, as si writes it into a state file when a git clone fails
    const deployments = `${sr.contextDir("alpha")}/deployments.json`;
    const state = JSON.parse(Buffer.from(await fs.readFile(deployments)).toString("utf8"));
    state.last_error = "clone failed with ghp_R4nd0mF4k3T0k3nF0rT3st1ngPurp0s3s123";
    await fs.writeFile(deployments, Buffer.from(`${JSON.stringify(state, null, 2)}\n`));
    const time = movableClock("2026-11-24T08:00:00Z");
    const missing = await runTick(options(fs, time.clock, { contexts: ["nope"] }));
    expect(missing.outcomes[0]).toMatchObject({ context: "nope", ok: false });
    expect(missing.exitCode).toBe(2);
    // the snapshot is taken with the value redacted; unacknowledged, the tick exits 9
    const leaked = await runTick(options(fs, time.clock, { contexts: ["alpha"] }));
    expect(leaked.outcomes[0]).toMatchObject({ ok: true, action: "full" });
    expect(leaked.outcomes[0]!.redactions.length).toBeGreaterThan(0);
    expect(leaked.exitCode).toBe(9);
  });
});
