import { describe, it, expect, beforeEach, afterEach } from "vitest";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  writeFileSync,
  cpSync,
} from "node:fs";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { CLI, makeSandbox, runCli, sh, untilArchiving, type Sandbox } from "./helpers.js";

/** Issue 9 §2, §5, §6 as an operator meets them, through the built CLI. */
const CTX = "internal-dogfood";
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });

describe("the context lock under real concurrency", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 8_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("six ticks started at once, four hours in a row: exactly one snapshot per hour, no crash, no leftovers", async () => {
    const hours = [
      "2026-11-24T10:00:00Z",
      "2026-11-24T11:00:00Z",
      "2026-11-24T12:00:00Z",
      "2026-11-24T13:00:00Z",
    ];
    for (const hour of hours) {
      const runs = await Promise.all(
        Array.from({ length: 6 }, () =>
          runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"], {
            env: at(hour),
          }),
        ),
      );
      // issue 13 §4: a run that waits over a second for the lock says who holds it on stderr; nothing else may appear there
      const other = (stderr: string) =>
        stderr
          .split("\n")
          .filter((l) => l && !/^paas-backup tick: waiting for the lock of /.test(l))
          .join("\n");
      for (const r of runs)
        expect({ code: r.code, stderr: other(r.stderr) }, r.stdout).toEqual({ code: 0, stderr: "" });
      const acted = runs.map((r) => r.json.data[0]).filter((o: any) => o.action !== "none");
      // two holders at once would both see the hour as due and both take a snapshot
      expect(acted, `${hour}: ${JSON.stringify(runs.map((r) => r.json.data[0].action))}`).toHaveLength(1);
      expect(acted[0].action).toBe(hour === hours[0] ? "full" : "incremental");
    }
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.data.map((d: any) => d.kind)).toEqual([
      "full",
      "incremental",
      "incremental",
      "incremental",
    ]);
    expect((await runCli([...sb.flags, "verify", "--context", CTX, "--all", "--deep"])).code).toBe(0);
    expect(
      readdirSync(join(sb.backupRoot, CTX)).filter((f) => f.startsWith(".lock") || f.startsWith("..lock")),
    ).toEqual([]);
  });

  it("a snapshot killed (SIGKILL) while it holds the lock: the next run takes the dead holder's lock, nothing partial is listed", async () => {
    const big = await makeSandbox([{ name: CTX, eventBytes: 40_000_000 }]);
    try {
      const lock = join(big.backupRoot, CTX, ".lock");
      const child = spawn(
        process.execPath,
        [CLI, ...big.flags, "snapshot", "--context", CTX, "--insecure-plaintext"],
        { stdio: "ignore" },
      );
      const exited = new Promise((r) => child.on("close", r));
      // Killed well into the archive, once its staged artifact has bytes.
      const archiving = await untilArchiving(child, join(big.backupRoot, CTX));
      expect(archiving, "the snapshot ended before it was seen archiving").toBe(true);
      expect(existsSync(lock)).toBe(true);
      child.kill("SIGKILL");
      await exited;
      expect(existsSync(lock)).toBe(true); // left behind by the dead run
      expect(JSON.parse(readFileSync(lock, "utf8")).pid).toBe(child.pid);
      const list = await runCli([...big.flags, "--json", "list", "--context", CTX]);
      expect(list.json.data).toEqual([]); // the half-written artifact is not a snapshot
      const next = await runCli([
        ...big.flags,
        "--json",
        "snapshot",
        "--context",
        CTX,
        "--insecure-plaintext",
      ]);
      expect(next.code, next.stdout).toBe(0);
      expect(existsSync(lock)).toBe(false);
      expect((await runCli([...big.flags, "verify", "--context", CTX, "--all"])).code).toBe(0);
    } finally {
      big.cleanup();
    }
  });

  it("a torn lock file counts as held: exit 6 naming it, and the file is left alone", async () => {
    mkdirSync(join(sb.backupRoot, CTX), { recursive: true });
    const lock = join(sb.backupRoot, CTX, ".lock");
    writeFileSync(lock, '{"pid": 4242, "host": "h');
    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ lockTimeoutSeconds: 1 }));
    const r = await runCli([
      ...sb.flags,
      "--config",
      config,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(r.code, r.stdout).toBe(6);
    expect(r.json.error.code).toBe("PAAS_BACKUP_LOCKED");
    expect(r.json.error.message).toContain("unreadable lock file");
    expect(r.json.error.message).toContain(lock);
    expect(readFileSync(lock, "utf8")).toBe('{"pid": 4242, "host": "h');
  });
});

describe("one bad snapshot never stops a context", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 8_000 }]);
  });
  afterEach(() => sb.cleanup());

  const tick = (iso: string) =>
    runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"], { env: at(iso) });

  it("a damaged manifest is its own error in list and verify; tick and prune go on", async () => {
    const full = (await tick("2026-11-23T10:00:00Z")).json.data[0].snapshot;
    const inc = (await tick("2026-11-24T09:00:00Z")).json.data[0].snapshot; // a new day: a full
    const inc2 = (await tick("2026-11-24T10:00:00Z")).json.data[0].snapshot;
    expect(inc2.kind).toBe("incremental");
    const manifest = join(sb.backupRoot, CTX, `${full.id}.manifest.json`);
    writeFileSync(manifest, readFileSync(manifest, "utf8").slice(0, 100)); // torn

    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.code).toBe(0);
    const damaged = list.json.data.find((d: any) => d.id === full.id);
    expect(damaged).toMatchObject({ kind: null, error: { code: "PAAS_BACKUP_MANIFEST_INVALID" } });
    expect(damaged.error.message).toContain(manifest);
    expect(list.json.data.filter((d: any) => d.error === null).map((d: any) => d.id)).toEqual([
      inc.id,
      inc2.id,
    ]);
    const text = await runCli([...sb.flags, "list", "--context", CTX]);
    expect(text.stdout).toMatch(new RegExp(`${full.id}\\s+DAMAGED`));

    const verify = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--all"]);
    expect(verify.code).toBe(3);
    expect(verify.json.data.map((d: any) => [d.id, d.ok])).toEqual([
      [full.id, false],
      [inc.id, true],
      [inc2.id, true],
    ]);

    const next = await tick("2026-11-24T11:00:00Z");
    expect(next.code, next.stdout).toBe(0);
    expect(next.json.data[0]).toMatchObject({ ok: true, action: "incremental" });
    const prune = await runCli([...sb.flags, "--json", "prune", "--context", CTX], {
      env: at("2026-11-24T11:30:00Z"),
    });
    expect(prune.code, prune.stdout).toBe(0);
    // restores of the others go on; the damaged one is refused naming a usable one
    const restore = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-M",
      "--yes",
      "--snapshot",
      inc.id,
    ]);
    expect(restore.code, restore.stdout).toBe(0);
    const refused = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-N",
      "--yes",
      "--snapshot",
      full.id,
    ]);
    expect(refused.code).toBe(3);
    expect(refused.json.error.code).toBe("PAAS_BACKUP_MANIFEST_INVALID");
  });

  it("tick takes a full, and says why, when the full of the chain it would extend is corrupt", async () => {
    const full = (await tick("2026-11-24T10:00:00Z")).json.data[0].snapshot;
    expect((await tick("2026-11-24T11:00:00Z")).json.data[0].action).toBe("incremental");
    // bit rot in the day's full, same size
    const bytes = readFileSync(full.artifact);
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(full.artifact, bytes);
    const r = await runCli([...sb.flags, "tick", "--context", CTX, "--insecure-plaintext"], {
      env: at("2026-11-24T12:00:00Z"),
    });
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(
      /took a full instead of an incremental: the chain it would extend does not verify: link \S+ no longer matches its checksum/,
    );
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    const newest = list.json.data[list.json.data.length - 1];
    expect(newest).toMatchObject({ kind: "full", checksum: "verified" });
    // and the next hour extends the new, sound chain
    const after = await runCli([...sb.flags, "--json", "tick", "--context", CTX, "--insecure-plaintext"], {
      env: at("2026-11-24T13:00:00Z"),
    });
    expect(after.json.data[0]).toMatchObject({ action: "incremental" });
    expect(
      (
        await runCli([
          ...sb.flags,
          "--json",
          "verify",
          "--context",
          CTX,
          "--snapshot",
          after.json.data[0].snapshot.id,
          "--deep",
        ])
      ).code,
    ).toBe(0);
  });
});

describe("hazards inside and around a context", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 8_000 }]);
  });
  afterEach(() => sb.cleanup());

  it("a context whose events/ is a symbolic link: the logs behind it are neither archived nor read by doctor", async () => {
    const ctx = sb.state.contextDir(CTX);
    const outside = join(sb.dir, "elsewhere-events");
    renameSync(join(ctx, "events"), outside);
    writeFileSync(
      join(outside, "audit.jsonl"),
      `{"timestamp":"2026-11-24T10:00:00Z","message":"OUTSIDE-MARKER"}\n`,
    );
    symlinkSync(outside, join(ctx, "events"));
    const r = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(r.code, r.stdout).toBe(0);
    const manifest = JSON.parse(readFileSync(r.json.data[0].manifestFile, "utf8"));
    expect(manifest.skipped.map((s: any) => s.path)).toEqual(
      expect.arrayContaining(["events", "events/audit.jsonl"]),
    );
    const entries = sh("tar", ["-tzf", r.json.data[0].artifact]);
    expect(entries).not.toMatch(/events\//);
    expect(
      sh("sh", ["-c", `tar -xzOf '${r.json.data[0].artifact}' | grep -c OUTSIDE-MARKER || true`]).trim(),
    ).toBe("0");
    const doctor = await runCli([...sb.flags, "--json", "doctor", "--context", CTX]);
    expect(doctor.code).toBe(5);
    const events = doctor.json.checks.find((c: any) => c.name === "events_readable");
    expect(events.ok).toBe(false);
    expect(events.detail).toContain("not followed");
    expect(JSON.stringify(doctor.json.data)).not.toContain("OUTSIDE-MARKER");
  });

  it("a context name longer than 200 UTF-8 bytes is refused at backup with exit 2, before anything is written", async () => {
    // a copy of the context under another name, its config.json naming it as si would
    const copyAs = (name: string) => {
      const dir = join(sb.stateRoot, "contexts", name);
      cpSync(sb.state.contextDir(CTX), dir, { recursive: true });
      const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      writeFileSync(join(dir, "config.json"), `${JSON.stringify({ ...config, name }, null, 2)}\n`, {
        mode: 0o600,
      });
    };
    const long = "日".repeat(80); // 80 characters, 240 bytes: would back up, then fail to restore
    copyAs(long);
    const r = await runCli([...sb.flags, "--json", "snapshot", "--context", long, "--insecure-plaintext"]);
    expect(r.code, r.stdout).toBe(2);
    expect(r.json.error.code).toBe("PAAS_BACKUP_INVALID_CONTEXT");
    expect(r.json.error.message).toMatch(/240 bytes long in UTF-8; the limit is 200 bytes/);
    expect(existsSync(join(sb.backupRoot, long))).toBe(false);
    const ok = "日".repeat(66); // 198 bytes: backs up and restores
    copyAs(ok);
    expect((await runCli([...sb.flags, "snapshot", "--context", ok, "--insecure-plaintext"])).code).toBe(0);
    const restored = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      ok,
      "--ticket",
      "INC-L",
      "--yes",
    ]);
    expect(restored.code, restored.stdout).toBe(0);
  });

  it("a backup root that is a symbolic link into a git work tree is refused (exit 4)", async () => {
    const repo = join(sb.dir, "repo");
    mkdirSync(join(repo, ".git"), { recursive: true });
    mkdirSync(join(repo, "data"));
    const link = join(sb.dir, "backups-link");
    symlinkSync(join(repo, "data"), link);
    const r = await runCli([
      "--state-root",
      sb.stateRoot,
      "--backup-root",
      link,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
    ]);
    expect(r.code, r.stdout).toBe(4);
    expect(r.json.error.code).toBe("PAAS_BACKUP_UNSAFE_LOCATION");
    expect(r.json.error.message).toContain(repo);
    expect(readdirSync(join(repo, "data"))).toEqual([]);
  });

  it("a torn block marker blocks: doctor exits 5 (not 1) and names it", async () => {
    writeFileSync(join(sb.state.contextDir(CTX), "paas-backup.blocked.json"), '{"schema": "paas-backup/bl');
    const r = await runCli([...sb.flags, "--json", "doctor", "--context", CTX]);
    expect(r.code, r.stderr).toBe(5);
    expect(r.json.checks.find((c: any) => c.name === "not_blocked")).toMatchObject({ ok: false });
    expect(r.json.checks.find((c: any) => c.name === "not_blocked").detail).toContain(
      "unreadable block marker",
    );
  });

  it("two restores with the same ticket in the same second each keep their incident record", async () => {
    // the snapshot an hour before the restores' clock: a snapshot dated after the clock is "from the future"
    const taken = await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"], {
      env: at("2026-11-24T09:00:00Z"),
    });
    expect(taken.code).toBe(0);
    // The clock runs on from PAAS_BACKUP_NOW with each process, so on a loaded machine two restores
    // started "at" the same time can begin a second apart. Pairs are tried until one starts in the
    // same second; every restore of every pair must keep its own record all the same.
    const now = at("2026-11-24T10:00:00Z");
    let collided = false;
    for (let attempt = 0; attempt < 6 && !collided; attempt++) {
      const ticket = `INC-SAME-${attempt}`;
      const first = await runCli(
        [...sb.flags, "--json", "restore", "--context", CTX, "--ticket", ticket, "--yes"],
        { env: now },
      );
      const second = await runCli(
        [...sb.flags, "--json", "restore", "--context", CTX, "--ticket", ticket, "--yes"],
        { env: now },
      );
      expect([first.code, second.code]).toEqual([0, 0]);
      const records = readdirSync(join(sb.backupRoot, CTX, "incidents")).filter(
        (f) => f.includes(ticket) && f.endsWith(".json"),
      );
      expect(records).toHaveLength(2);
      const startedAt = records.map((f) =>
        JSON.parse(readFileSync(join(sb.backupRoot, CTX, "incidents", f), "utf8")).startedAt.slice(0, 19),
      );
      collided = startedAt[0] === startedAt[1];
    }
    expect(collided).toBe(true);
  });
});
