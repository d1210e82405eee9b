import { describe, it, expect, beforeAll, afterAll } from "vitest";
import {
  appendFileSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { spawn } from "node:child_process";
import { EVENT_LOGS } from "@paas-backup/core/policy";
import { eventLine } from "@paas-backup/testing";
import { CLI, makeSandbox, runCli, type Sandbox } from "./helpers.js";

/**
 * The defects the fleet simulation (issue 20 §1) found beyond the list, as an operator
 * meets them through the built CLI: one test each, each failing on the code before its fix.
 */
const CTX = "internal-dogfood";
const DAY = 86_400_000;

describe("offsite push keeps to the target's retention (offsiteWithinRetention)", () => {
  let sb: Sandbox;
  let target: string;
  let config: string;
  let recipient: string;
  const at = (t: number) => ({ env: { PAAS_BACKUP_NOW: new Date(t).toISOString() } });
  const t0 = Date.parse("2026-10-01T08:00:00Z");
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 2_000 }]);
    target = join(sb.dir, "offsite");
    config = join(sb.dir, "config.json");
    // the target keeps one daily full; home keeps the tagged one beyond the slots
    writeFileSync(
      config,
      JSON.stringify({
        retention: { keepTags: ["pre-upgrade"] },
        mandatoryDrillContexts: [],
        offsite: {
          targets: [{ name: "nfs", url: `file://${target}`, retention: { daily: 1, weekly: 0, monthly: 0 } }],
        },
      }),
    );
    const key = await runCli([...sb.flags, "--json", "keygen", "--out", join(sb.dir, "keys", "id.txt")]);
    recipient = key.json.data[0].recipient;
  }, 60_000);
  afterAll(() => sb?.cleanup());

  const cli = (args: string[], t: number) => runCli(["--config", config, ...sb.flags, ...args], at(t));
  const copies = () =>
    readdirSync(target, { recursive: true, encoding: "utf8" })
      .flatMap((p) => /\/([^/]+)\.tar\.gz(\.age)?$/.exec(p)?.[1] ?? [])
      .sort();

  it("a full kept at home by a tag but dropped by the target's retention is not sent again after every offsite prune", async () => {
    const snap = (tag: string[], t: number) =>
      cli(["--json", "snapshot", "--context", CTX, "--recipient", recipient, ...tag], t);
    const tagged = await snap(["--tag", "pre-upgrade"], t0);
    expect(tagged.code, tagged.stderr).toBe(0);
    const newer = await snap([], t0 + DAY);
    expect(newer.code, newer.stderr).toBe(0);
    const taggedId = tagged.json.data[0].id;
    const newerId = newer.json.data[0].id;
    const push = await cli(["--json", "offsite", "push", "--context", CTX], t0 + DAY + 60_000);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data[0].pushed.map((c: { id: string }) => c.id)).toEqual([taggedId, newerId]);
    const prune = await cli(["--json", "offsite", "prune", "--context", CTX], t0 + DAY + 120_000);
    expect(prune.code, prune.stdout + prune.stderr).toBe(0);
    // the daily maintenance's push: the target stays as its retention wants it
    const again = await cli(["--json", "offsite", "push", "--context", CTX], t0 + DAY + 180_000);
    expect(again.code).toBe(0);
    expect(again.json.data[0].pushed).toEqual([]);
    expect(again.json.data[0].removedByRetention).toEqual([taggedId]);
    expect(copies()).toEqual([newerId]);
  }, 120_000);
});

describe("tick --all-contexts ages out the offsite copies of a context whose folder vanished (offsiteWithinRetention)", () => {
  let sb: Sandbox;
  let target: string;
  let config: string;
  const at = (t: number) => ({ env: { PAAS_BACKUP_NOW: new Date(t).toISOString() } });
  const t0 = Date.parse("2026-10-05T08:00:00Z");
  beforeAll(async () => {
    sb = await makeSandbox([
      { name: CTX, eventBytes: 2_000 },
      { name: "staging", eventBytes: 2_000 },
    ]);
    target = join(sb.dir, "offsite");
    config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        offsite: {
          targets: [
            {
              name: "nfs",
              url: `file://${target}`,
              allowPlaintext: true,
              retention: { daily: 1, weekly: 0, monthly: 0 },
            },
          ],
        },
      }),
    );
  }, 60_000);
  afterAll(() => sb?.cleanup());
  const cli = (args: string[], t: number) => runCli(["--config", config, ...sb.flags, ...args], at(t));
  const copies = (context: string) =>
    readdirSync(target, { recursive: true, encoding: "utf8" })
      .flatMap((p) => new RegExp(`/${context}/([^/]+)\\.tar\\.gz$`).exec(p)?.[1] ?? [])
      .sort();

  it("names the context vanished, keeps its newest copy and removes what the target's retention does not keep", async () => {
    // two fulls of the same day at home and at the target (the day's tick and an operator's snapshot)
    for (const t of [t0, t0 + 3_600_000]) {
      const snap = await cli(["snapshot", "--context", CTX, "--insecure-plaintext"], t);
      expect(snap.code, snap.stderr).toBe(0);
      const push = await cli(["offsite", "push", "--context", CTX], t + 60_000);
      expect(push.code, push.stdout + push.stderr).toBe(0);
    }
    const [older, newer] = copies(CTX);
    expect(copies(CTX)).toHaveLength(2);
    // the context's folder vanishes from the state root; the backup root still holds it
    renameSync(sb.state.contextDir(CTX), join(sb.dir, `lost-${CTX}`));
    const tick = await cli(["--json", "tick", "--all-contexts", "--insecure-plaintext"], t0 + 2 * 3_600_000);
    expect(tick.code, tick.stdout + tick.stderr).toBe(0);
    const outcome = tick.json.data.find((o: { context: string }) => o.context === CTX);
    expect([outcome.ok, outcome.vanished, outcome.action, outcome.snapshot]).toEqual([
      true,
      true,
      "none",
      null,
    ]);
    expect(outcome.reason).toContain("is gone from the state root");
    expect(outcome.offsite[0].prune.remove).toEqual([older]);
    // the target keeps its retention's set of the copies' own dates: the newest, none for want of a live folder
    expect(copies(CTX)).toEqual([newer]);
    // the human output says which context vanished and what its copies did
    const human = await cli(["tick", "--all-contexts", "--insecure-plaintext"], t0 + 3 * 3_600_000);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(
      new RegExp(
        `${CTX}: vanished: .*age out by each target's retention; offsite file://${target}: 1 kept, none removed`,
      ),
    );
    expect(copies(CTX)).toEqual([newer]);
    // status names it as needing attention, vanished, and how its copies age out
    const status = await cli(["--json", "status"], t0 + 3 * 3_600_000);
    const st = status.json.data.find((c: { context: string }) => c.context === CTX);
    expect(st.ok).toBe(false);
    expect(st.attention.join(" ")).toMatch(/missing \(vanished\).*age out by each target's retention/);
  }, 120_000);
});

describe("rollback (restoreLosesNothing, documentedExitCodes)", () => {
  let sb: Sandbox;
  let live: string;
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 2_000 }]);
    live = sb.state.contextDir(CTX);
  }, 60_000);
  afterAll(() => sb?.cleanup());
  let n = 0;
  const append = () =>
    EVENT_LOGS.map((log) => {
      const kind = log.includes("deploy") ? "deploy" : log.includes("alert") ? "alert" : "audit";
      const line = eventLine(kind, CTX, new Date("2026-12-01T09:00:00Z"), 5000 + n++);
      appendFileSync(join(live, log), `${line}\n`);
      return line;
    });
  const liveText = () => EVENT_LOGS.map((log) => readFileSync(join(live, log), "utf8")).join("");
  const cli = (args: string[]) => runCli([...sb.flags, "--json", ...args]);

  it("keeps the event lines si wrote since the restore it undoes", async () => {
    expect((await cli(["snapshot", "--context", CTX, "--insecure-plaintext"])).code).toBe(0);
    const before = append();
    const r = await cli(["restore", "--context", CTX, "--ticket", "INC-7", "--yes"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const since = append();
    const back = await cli(["rollback", "--context", CTX, "--ticket", "INC-7"]);
    expect(back.code, back.stdout + back.stderr).toBe(0);
    const text = liveText();
    for (const line of [...before, ...since]) expect(text).toContain(line);
    const lines = back.json.data[0].eventLines;
    expect(lines.map((e: { path: string; action: string }) => [e.path, e.action])).toEqual(
      EVENT_LOGS.map((log) => [log, "append"]),
    );
    const record = JSON.parse(readFileSync(back.json.data[0].incidentFile, "utf8"));
    expect(record.eventLines).toEqual(lines);
    const again = await runCli([...sb.flags, "rollback", "--context", CTX, "--ticket", "INC-7"]);
    // the rollback was the last restore's undoing: nothing left to roll back, said so (exit 2)
    expect(again.code).toBe(2);
  }, 120_000);

  it("of a restore that replaced a context folder that was a symbolic link: exit 2 naming it, nothing changed", async () => {
    // the context folder moved elsewhere and a link took its place; the operator restores over it
    const elsewhere = join(sb.dir, "elsewhere");
    mkdirSync(elsewhere);
    renameSync(live, join(elsewhere, CTX));
    symlinkSync(join(elsewhere, CTX), live);
    const r = await cli(["restore", "--context", CTX, "--ticket", "INC-8", "--yes"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(lstatSync(live).isDirectory()).toBe(true);
    const vault = lstatSync(join(live, "vault")).ino;
    const back = await cli(["rollback", "--context", CTX, "--ticket", "INC-8"]);
    expect(back.code, back.stdout + back.stderr).toBe(2);
    expect(back.json.error.code).toBe("PAAS_BACKUP_CONTEXT_NOT_A_FOLDER");
    expect(back.json.error.message).toContain("symbolic link");
    expect(back.json.error.target).toMatch(/moved-aside/);
    // the restored folder stays, its vault with it, and nothing went into the link's folder
    expect(lstatSync(live).isDirectory()).toBe(true);
    expect(lstatSync(join(live, "vault")).ino).toBe(vault);
    expect(readdirSync(join(elsewhere, CTX))).not.toContain("vault");
  }, 120_000);
});

describe("an I/O error (EIO) from the disk (documentedExitCodes)", () => {
  const PRELOAD = resolve(import.meta.dirname, "fail-preload.mjs");
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 2_000 }]);
    for (const at of ["2026-10-01T08:00:00Z", "2026-10-02T08:00:00Z"]) {
      const r = await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"], {
        env: { PAAS_BACKUP_NOW: at },
      });
      expect(r.code, r.stderr).toBe(0);
    }
  }, 60_000);
  afterAll(() => sb?.cleanup());
  /** the built CLI with every fs.promises.<op> of a path matching <text> failing with EIO */
  const failing = (failCall: string, args: string[]) =>
    new Promise<{ code: number; json: any }>((done) => {
      const child = spawn(process.execPath, ["--import", PRELOAD, CLI, ...sb.flags, "--json", ...args], {
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", PB_FAIL_CALL: failCall },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (c) => (out += c));
      child.on("close", (code) => done({ code: code ?? -1, json: JSON.parse(out || "null") }));
    });

  it("is exit 10 PAAS_BACKUP_IO_ERROR naming the file and what to do, for prune and for tick", async () => {
    const prune = await failing("lstat:EIO:\\.tar\\.gz\\.sha256$", [
      "prune",
      "--context",
      CTX,
      "--keep-daily",
      "1",
    ]);
    expect(prune.code, JSON.stringify(prune.json)).toBe(10);
    expect(prune.json.error.code).toBe("PAAS_BACKUP_IO_ERROR");
    expect(prune.json.error.message).toMatch(/\.tar\.gz\.sha256/);
    expect(prune.json.error.remediation).toMatch(/disk/);
    // tick's look for a git work tree above the roots, before any context
    const tick = await failing("lstat:EIO:/\\.git$", ["tick", "--all-contexts", "--insecure-plaintext"]);
    expect(tick.code, JSON.stringify(tick.json)).toBe(10);
    expect(tick.json.error.code).toBe("PAAS_BACKUP_IO_ERROR");
    expect(tick.json.error.message).toMatch(/\.git/);
  }, 60_000);
});
