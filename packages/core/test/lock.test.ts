import { describe, it, expect, vi } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MemoryFileSystem, FaultInjectingFileSystem, countFileSystemCalls } from "@paas-backup/testing";
import { acquireContextLock, type LockOwner } from "../src/snapshot/index.js";
import { withContextLock, BusyError, type FileSystem } from "../src/index.js";

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3600_000;
const MINUTE = 60_000;

function owner(pid: number, host = "h1", alive: (pid: number) => boolean = () => true): LockOwner {
  return { pid, host, command: `test ${pid}`, isAlive: alive };
}

function opts(fs: FileSystem, who: LockOwner, at: number, timeoutMs = 0) {
  return {
    fs,
    backupRoot: "/b",
    context: "ctx",
    owner: who,
    clock: () => new Date(at),
    timeoutMs,
    sleep: async () => undefined,
  };
}

const record = (pid: number, host: string, startedAt: number) =>
  `${JSON.stringify({ pid, host, nonce: `n-${pid}`, startedAt: new Date(startedAt).toISOString(), command: "other" })}\n`;

describe("context lock: one holder", () => {
  it("six real processes taking the lock 40 rounds each never overlap, and takeovers of dead holders race safely", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pb-lock-"));
    try {
      const journal = join(dir, "journal");
      writeFileSync(journal, "");
      const worker = resolve(import.meta.dirname, "fixtures/lock-worker.mjs");
      const runs = Array.from(
        { length: 6 },
        (_, i) =>
          new Promise<{ code: number | null; stderr: string }>((done) => {
            const child = spawn(
              process.execPath,
              [worker, join(dir, "backups"), journal, "40", ...(i < 2 ? ["--spawn-dead-holders"] : [])],
              { stdio: ["ignore", "ignore", "pipe"] },
            );
            let stderr = "";
            child.stderr.on("data", (c) => (stderr += c));
            child.on("close", (code) => done({ code, stderr }));
          }),
      );
      const results = await Promise.all(runs);
      for (const r of results) expect(r, r.stderr).toEqual({ code: 0, stderr: "" });
      const lines = readFileSync(journal, "utf8").trim().split("\n");
      // 6 workers x 40 rounds, plus 2 workers x 4 dead holders left behind
      expect(lines).toHaveLength(2 * (6 * 40 + 2 * 4));
      let holder: string | null = null;
      for (const [i, line] of lines.entries()) {
        const [what, pid] = line.split(" ");
        if (what === "enter") {
          expect(holder, `line ${i + 1}: ${pid} entered while ${holder} held the lock`).toBeNull();
          holder = pid!;
        } else {
          expect(pid, `line ${i + 1}`).toBe(holder);
          holder = null;
        }
      }
      // nothing left behind: no lock, no temporaries, no takeover markers
      expect(readdirSync(join(dir, "backups", "racy"))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const [name, content] of [
    ["empty", ""],
    ["torn", '{"pid": 12, "host": "h1", "non'],
    ["foreign", "locked by ops\n"],
  ] as const) {
    it(`an ${name} lock file counts as held until 30 minutes pass`, async () => {
      const fs = new MemoryFileSystem();
      await fs.mkdir("/b/ctx", { recursive: true });
      fs.now = T0;
      await fs.writeFile("/b/ctx/.lock", content);
      const err = await acquireContextLock(opts(fs, owner(1), T0 + 29 * MINUTE)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BusyError);
      expect((err as BusyError).message).toMatch(/unreadable lock file/);
      expect((err as BusyError).data).toMatchObject({ holder: { pid: null } });
      expect(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString()).toBe(content); // untouched
      const lock = await acquireContextLock(opts(fs, owner(1), T0 + 31 * MINUTE));
      expect(lock.tookOverFrom).toMatchObject({ nonce: "unreadable" });
      await lock.release();
      expect(fs.files("/b")).toEqual([]);
    });
  }

  it("takes over a dead holder on this host at once, a live one never, another host's only when old", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/b/ctx", { recursive: true });
    await fs.writeFile("/b/ctx/.lock", record(77, "h1", T0));
    await expect(
      acquireContextLock(
        opts(
          fs,
          owner(1, "h1", () => true),
          T0 + 1000,
        ),
      ),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_LOCKED", data: { holder: { pid: 77, host: "h1" } } });
    const lock = await acquireContextLock(
      opts(
        fs,
        owner(1, "h1", (pid) => pid !== 77),
        T0 + 1000,
      ),
    );
    expect(lock.tookOverFrom).toMatchObject({ pid: 77 });
    await lock.release();
    await fs.writeFile("/b/ctx/.lock", record(77, "other-host", T0));
    await expect(
      acquireContextLock(
        opts(
          fs,
          owner(1, "h1", () => false),
          T0 + 29 * MINUTE,
        ),
      ),
    ).rejects.toBeInstanceOf(BusyError);
    const late = await acquireContextLock(
      opts(
        fs,
        owner(1, "h1", () => false),
        T0 + 31 * MINUTE,
      ),
    );
    expect(late.tookOverFrom).toMatchObject({ pid: 77, host: "other-host" });
    await late.release();
  });

  it("a live holder on this host keeps the lock whatever its age (a restore at its prompt for 7 hours)", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/b/ctx", { recursive: true });
    await fs.writeFile("/b/ctx/.lock", record(77, "h1", T0));
    for (const at of [T0 + 7 * HOUR, T0 + 30 * 24 * HOUR])
      await expect(
        acquireContextLock(
          opts(
            fs,
            owner(1, "h1", () => true),
            at,
          ),
        ),
      ).rejects.toMatchObject({
        code: "PAAS_BACKUP_LOCKED",
        data: { holder: { pid: 77 } },
      });
    expect(JSON.parse(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString())).toMatchObject({ pid: 77 });
  });

  it("a pid reused by another process (same pid, another start time) is not the holder; the same start time is", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/b/ctx", { recursive: true });
    const withStart = (processStart: string) =>
      `${JSON.stringify({ pid: 77, host: "h1", nonce: "n-77", startedAt: new Date(T0).toISOString(), command: "restore", processStart })}\n`;
    const asking = (startOf77: string): LockOwner => ({
      ...owner(1, "h1", () => true),
      startTimeOf: (pid) => (pid === 77 ? startOf77 : "5"),
    });
    await fs.writeFile("/b/ctx/.lock", withStart("1000"));
    await expect(acquireContextLock(opts(fs, asking("1000"), T0 + 7 * HOUR))).rejects.toBeInstanceOf(
      BusyError,
    );
    const lock = await acquireContextLock(opts(fs, asking("2000"), T0 + 1000));
    expect(lock.tookOverFrom).toMatchObject({ pid: 77, processStart: "1000" });
    // and the new holder records its own start time
    expect(JSON.parse(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString())).toMatchObject({
      pid: 1,
      processStart: "5",
    });
    await lock.release();
  });

  it("another host's holder that refreshes keeps the lock; staleness is judged on the last refresh", async () => {
    const fs = new MemoryFileSystem();
    let now = T0;
    const holderOptions = { ...opts(fs, owner(5, "h2"), T0), clock: () => new Date(now), refreshEveryMs: 5 };
    let done!: () => void;
    const holding = withContextLock(holderOptions, () => new Promise<void>((r) => (done = r)));
    // the holder's clock moves on while it holds the lock: its refreshes say so
    now = T0 + 2 * HOUR;
    await vi.waitFor(async () => {
      const record = JSON.parse(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString());
      expect(record.refreshedAt).toBe(new Date(T0 + 2 * HOUR).toISOString());
    });
    // two hours after it started, 20 minutes after its last refresh: still held
    await expect(
      acquireContextLock(opts(fs, owner(1, "h1"), T0 + 2 * HOUR + 20 * MINUTE)),
    ).rejects.toBeInstanceOf(BusyError);
    done();
    await holding;
    expect(fs.files("/b").filter((f) => !f.endsWith(".tmp"))).toEqual([]);
  });

  it("a lock with our own pid that this process does not hold (a restarted container) is taken over; one it holds is not", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/b/ctx", { recursive: true });
    await fs.writeFile("/b/ctx/.lock", record(1, "h1", T0)); // left by an earlier pid 1 on this host
    const lock = await acquireContextLock(opts(fs, owner(1, "h1"), T0 + 1000));
    expect(lock.tookOverFrom).toMatchObject({ pid: 1, nonce: "n-1" });
    // held here by the process: a second acquire in the same process enters it; only the outer release frees it
    const inner = await acquireContextLock(opts(fs, owner(1, "h1"), T0 + 2000));
    expect(inner.reentered).toBe(true);
    await inner.release();
    expect(JSON.parse(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString())).toMatchObject({ pid: 1 });
    await lock.release();
    expect(fs.files("/b")).toEqual([]);
    await (await acquireContextLock(opts(fs, owner(1, "h1"), T0 + 3000))).release();
  });

  it("five takers of one dead holder's lock at once: exactly one wins", async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir("/b/ctx", { recursive: true });
    await fs.writeFile("/b/ctx/.lock", record(77, "h1", T0));
    const dead = (pid: number) => pid !== 77;
    const results = await Promise.allSettled(
      [1, 2, 3, 4, 5].map((pid) => acquireContextLock(opts(fs, owner(pid, "h1", dead), T0 + 1000))),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(BusyError);
    const holder = JSON.parse(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString());
    expect(holder.pid).not.toBe(77);
  });

  it("a taker that finds a new lock where the stale one was (released and retaken in between) leaves it in place", async () => {
    class Racy extends MemoryFileSystem {
      raced = false;
      override async rename(from: string, to: string): Promise<void> {
        if (!this.raced && from === "/b/ctx/.lock" && to.includes(".stale-")) {
          // the judged holder was alive after all: it releases, and pid 9 takes the lock, right now
          this.raced = true;
          await super.rm(from);
          await super.writeFile(from, record(9, "h1", T0 + 1500));
        }
        return super.rename(from, to);
      }
    }
    const fs = new Racy();
    await fs.mkdir("/b/ctx", { recursive: true });
    await fs.writeFile("/b/ctx/.lock", record(77, "h1", T0));
    const alive = (pid: number) => pid !== 77;
    await expect(acquireContextLock(opts(fs, owner(1, "h1", alive), T0 + 2000))).rejects.toBeInstanceOf(
      BusyError,
    );
    expect(fs.raced).toBe(true);
    expect(JSON.parse(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString())).toMatchObject({
      pid: 9,
      nonce: "n-9",
    });
    expect(fs.files("/b")).toEqual(["/b/ctx/.lock"]);
  });

  it("release never removes or recreates a lock that is no longer ours", async () => {
    const fs = new MemoryFileSystem();
    const lock = await acquireContextLock(opts(fs, owner(1), T0));
    // judged stale by someone (say, on another host after the age limit) and taken over
    await fs.rm("/b/ctx/.lock");
    await fs.writeFile("/b/ctx/.lock", record(2, "h2", T0));
    await lock.release();
    expect(JSON.parse(Buffer.from(await fs.readFile("/b/ctx/.lock")).toString())).toMatchObject({ pid: 2 });
    await fs.rm("/b/ctx/.lock");
    await lock.release();
    expect(fs.files("/b")).toEqual([]);
  });

  it("a fault at any call of acquire+release leaves a lock the next run can take", async () => {
    const setup = async () => {
      const fs = new MemoryFileSystem();
      await fs.mkdir("/b/ctx", { recursive: true });
      await fs.writeFile("/b/ctx/.lock", record(77, "h1", T0)); // a dead holder to take over, so the sweep covers takeover too
      return fs;
    };
    const dead = (pid: number) => pid !== 77 && pid !== 1;
    const cycle = async (fs: FileSystem) =>
      (await acquireContextLock(opts(fs, owner(1, "h1", dead), T0 + 1000))).release();
    const { calls } = await countFileSystemCalls(setup, cycle);
    expect(calls).toBeGreaterThan(10);
    console.log(`fault sweep: lock takeover+acquire+release: ${calls} injection points x 2 modes`);
    for (let at = 1; at <= calls; at++) {
      for (const mode of ["throw", "crash"] as const) {
        const inner = await setup();
        await cycle(new FaultInjectingFileSystem(inner, { at, mode, code: "ENOSPC" })).catch(() => undefined);
        // reboot: pid 1 is gone; a new run takes the lock (at once, or after the marker/lock ages)
        const next = await acquireContextLock(opts(inner, owner(2, "h1", dead), T0 + 2000)).catch(() =>
          acquireContextLock(opts(inner, owner(2, "h1", dead), T0 + 2000 + 2 * 60_000)),
        );
        await next.release();
        expect(
          inner.files("/b").filter((f) => !f.endsWith(".tmp")),
          `${mode} at ${at}`,
        ).toEqual([]);
      }
    }
  });

  it("withContextLock is re-entrant within its own call chain only: a nested call enters, an independent one waits", async () => {
    const fs = new MemoryFileSystem();
    const o = opts(fs, owner(1, "h1"), T0);
    const order: string[] = [];
    let done!: () => void;
    const first = withContextLock(o, async () => {
      // a core call inside (it locks itself) enters the lock rather than wait for itself
      await withContextLock(o, async () => {
        order.push("nested");
      });
      await new Promise<void>((r) => (done = r));
    });
    await vi.waitFor(() => expect(order).toEqual(["nested"]));
    expect(fs.files("/b")).toEqual(["/b/ctx/.lock"]);
    // another call chain of the same process is another run: it waits, then gives up
    await expect(withContextLock(o, async () => "in")).rejects.toMatchObject({ code: "PAAS_BACKUP_LOCKED" });
    done();
    await first;
    expect(order).toEqual(["nested"]);
    expect(fs.files("/b")).toEqual([]);
  });
});
