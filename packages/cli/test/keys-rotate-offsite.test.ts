import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CLI, makeSandbox, openUp, runCli, type Sandbox } from "./helpers.js";

/**
 * Issue 24 §3 for copies encrypted on push (issue 21 §5), through the built CLI: a snapshot that is
 * plaintext at home goes offsite encrypted to the configured recipients, and the offsite record
 * names them. keys rotate encrypts such a copy again to the new set (there is no artifact at home
 * to rotate), so `keys audit --identity OLD` is 0 afterwards, killed half-way or not; and a push
 * whose configured recipients differ from a copy's encrypts it again too.
 */
const CTX = "internal-dogfood";
const PRELOAD = resolve(import.meta.dirname, "kill-preload.mjs");
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });

describe("keys rotate: copies encrypted on push", () => {
  let sb: Sandbox;
  let config: string;
  let home: string;
  let nfs: string;
  let template: string;
  const keys: Record<string, { file: string; recipient: string }> = {};
  const env = (extra: Record<string, string> = {}) => ({ HOME: home, ...extra });
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    runCli([...sb.flags, "--config", config, ...args], { env: env(extra) });
  const writeConfig = (recipients: string[]) =>
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        recipients,
        offsite: { targets: [{ name: "nfs", url: `file://${nfs}` }] },
      }),
    );
  const rotateArgs = () => [
    "keys",
    "rotate",
    "--context",
    CTX,
    "--add-recipient",
    keys.new!.recipient,
    "--remove-recipient",
    keys.old!.recipient,
    "--identity",
    keys.keep!.file,
  ];
  const audit = async (who: string) => {
    const r = await cli(["--json", "keys", "audit", "--context", CTX, "--identity", keys[who]!.file]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return r.json;
  };
  const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  /** the copy at the target: the one .tar.gz.age below the root's prefix */
  const copyAtTarget = () => {
    const roots = readdirSync(join(nfs, "roots"), { withFileTypes: true }).filter((e) => e.isDirectory());
    expect(roots).toHaveLength(1);
    const dir = join(nfs, "roots", roots[0]!.name, CTX);
    const names = readdirSync(dir).filter((n) => n.endsWith(".tar.gz.age"));
    expect(names).toHaveLength(1);
    return { dir, name: names[0]! };
  };
  const homeArtifact = () => {
    const name = readdirSync(join(sb.backupRoot, CTX)).find((n) => n.endsWith(".tar.gz"))!;
    return join(sb.backupRoot, CTX, name);
  };
  const offsiteRecord = () =>
    JSON.parse(readFileSync(join(sb.backupRoot, CTX, "offsite", "nfs.json"), "utf8")) as {
      copies: Record<string, { recipients?: string[]; encryptedOnPush?: boolean; rotatedBy?: string }>;
      pending?: Record<string, unknown>;
    };
  const reset = () => {
    openUp(nfs);
    rmSync(sb.backupRoot, { recursive: true, force: true });
    rmSync(nfs, { recursive: true, force: true });
    cpSync(join(template, "backups"), sb.backupRoot, { recursive: true, preserveTimestamps: true });
    cpSync(join(template, "nfs"), nfs, { recursive: true, preserveTimestamps: true });
    writeConfig([keys.old!.recipient, keys.keep!.recipient]);
  };

  /** what must hold once a rotation finished: the copy opens with the new key, not the old, and checks out */
  const expectRotated = async (label: string) => {
    expect((await audit("old")).count, label).toBe(0);
    const byNew = await audit("new");
    expect(byNew.count, label).toBe(1);
    expect(byNew.data[0]).toMatchObject({ where: "nfs", context: CTX });
    const { dir, name } = copyAtTarget();
    const opened = spawnSync("age", ["-d", "-i", keys.new!.file, join(dir, name)], { maxBuffer: 1 << 30 });
    expect(opened.status, `${label}: ${opened.stderr}`).toBe(0);
    // the plaintext .tar.gz at home, byte for byte
    expect(sha256(opened.stdout), label).toBe(sha256(readFileSync(homeArtifact())));
    const sum = spawnSync("sha256sum", ["-c", `${name}.sha256`], { cwd: dir, encoding: "utf8" });
    expect(sum.status, `${label}: ${sum.stdout}`).toBe(0);
    const copy = Object.values(offsiteRecord().copies)[0]!;
    expect(copy.recipients?.sort(), label).toEqual([keys.keep!.recipient, keys.new!.recipient].sort());
    expect(offsiteRecord().pending ?? {}, label).toEqual({});
    // no encrypted bytes left in flight in the backup root
    expect(
      readdirSync(join(sb.backupRoot, CTX, "offsite")).filter((n) => n.endsWith(".partial")),
      label,
    ).toEqual([]);
  };

  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    home = join(sb.dir, "home");
    nfs = join(sb.dir, "nfs");
    config = join(sb.dir, "config.json");
    for (const name of ["old", "keep", "new"]) {
      const file = join(sb.dir, "keys", `${name}.txt`);
      const r = await runCli(["--json", "keygen", "--out", file], { env: { HOME: join(sb.dir, "home") } });
      expect(r.code, r.stderr).toBe(0);
      keys[name] = { file, recipient: r.json.data[0].recipient };
    }
    writeConfig([keys.old!.recipient, keys.keep!.recipient]);
    // plaintext at home; pushed, it is encrypted to the configured recipients
    const snap = await cli(
      ["--json", "snapshot", "--context", CTX, "--insecure-plaintext"],
      at("2026-11-01T01:00:00Z"),
    );
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const push = await cli(["--json", "offsite", "push", "--context", CTX], at("2026-11-01T01:05:00Z"));
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data[0].pushed).toEqual([expect.objectContaining({ encryptedOnPush: true })]);
    template = join(sb.dir, "template");
    cpSync(sb.backupRoot, join(template, "backups"), { recursive: true, preserveTimestamps: true });
    cpSync(nfs, join(template, "nfs"), { recursive: true, preserveTimestamps: true });
  }, 120_000);
  afterAll(() => sb?.cleanup());

  it("the offsite record names the copy's recipients; rotate encrypts it again, and audit of the removed key is 0", async () => {
    reset();
    const copy = Object.values(offsiteRecord().copies)[0]!;
    expect(copy.encryptedOnPush).toBe(true);
    expect(copy.recipients?.sort()).toEqual([keys.old!.recipient, keys.keep!.recipient].sort());
    // before: the old key opens the copy offsite (nothing at home is encrypted)
    const before = await audit("old");
    expect(before.count).toBe(1);
    expect(before.data[0]).toMatchObject({ where: "nfs", lockedUntil: null });

    const r = await cli(["--json", ...rotateArgs()], at("2026-11-01T03:00:00Z"));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0]).toMatchObject({ context: CTX, rotated: [], skipped: [] });
    expect(r.json.data[0].offsite).toEqual([
      {
        target: "nfs",
        id: Object.keys(offsiteRecord().copies)[0],
        action: "replaced",
        encryptedOnPush: true,
        recipients: [keys.keep!.recipient, keys.new!.recipient],
      },
    ]);
    // the config still names the removed key: said, since the next push would encrypt to it again
    expect(r.json.warnings).toEqual([expect.stringContaining(keys.old!.recipient)]);
    expect(r.stderr).toContain("still name");
    await expectRotated("after rotate");
    expect(Object.values(offsiteRecord().copies)[0]!.rotatedBy).toBe(
      JSON.parse(readFileSync(r.json.data[0].record, "utf8")).id,
    );
    // the old key cannot open it, says age itself
    const { dir, name } = copyAtTarget();
    const refused = spawnSync("age", ["-d", "-i", keys.old!.file, join(dir, name)]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr.toString()).toMatch(/no identity matched/);

    // the config follows the rotation: the next push finds the copy as configured and leaves it
    writeConfig([keys.keep!.recipient, keys.new!.recipient]);
    const same = await cli(["--json", "offsite", "push", "--context", CTX], at("2026-11-01T04:00:00Z"));
    expect(same.code, same.stdout + same.stderr).toBe(0);
    expect(same.json.data[0]).toMatchObject({ pushed: [], alreadyThere: [expect.any(String)] });

    // a key dropped from the config without keys rotate: the next push encrypts the copy again
    writeConfig([keys.new!.recipient]);
    const push = await cli(["--json", "offsite", "push", "--context", CTX], at("2026-11-01T05:00:00Z"));
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data[0].repaired).toEqual([
      expect.objectContaining({ reason: expect.stringMatching(/other recipients than the configured/) }),
    ]);
    expect((await audit("keep")).count).toBe(0);
    expect((await audit("new")).count).toBe(1);
    expect(Object.values(offsiteRecord().copies)[0]!.recipients).toEqual([keys.new!.recipient]);
  }, 180_000);

  it("a copy in the layout before root identities (<context>/… at the target) is encrypted again under the root's prefix, the old one removed", async () => {
    reset();
    const id = Object.keys(offsiteRecord().copies)[0]!;
    // the copy as a push before roots had identities left it: <context>/<id>… at the target's top,
    // and the offsite record naming it there
    const { dir, name } = copyAtTarget();
    openUp(nfs);
    const legacyDir = join(nfs, CTX);
    mkdirSync(legacyDir, { recursive: true });
    for (const n of readdirSync(dir).filter((n) => n.startsWith(`${id}.`)))
      renameSync(join(dir, n), join(legacyDir, n));
    const recordFile = join(sb.backupRoot, CTX, "offsite", "nfs.json");
    const record = JSON.parse(readFileSync(recordFile, "utf8"));
    record.copies[id].artifact = `${CTX}/${name}`;
    writeFileSync(recordFile, JSON.stringify(record, null, 2));
    // audit finds it there, outside every root
    const before = await audit("old");
    expect(before.data).toEqual([expect.objectContaining({ where: "nfs", id, root: null })]);

    const r = await cli(["--json", ...rotateArgs()], at("2026-11-01T03:00:00Z"));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0].offsite).toEqual([
      expect.objectContaining({ target: "nfs", id, action: "replaced", encryptedOnPush: true }),
    ]);
    // now under the root's prefix, opened by the new key and checked by sha256sum (expectRotated);
    // the old-layout artifact and its checksum are gone, so the removed key opens nothing there
    await expectRotated("after rotating an old-layout copy");
    expect(offsiteRecord().copies[id]).toMatchObject({
      artifact: expect.stringMatching(/^roots\/[0-9a-f]{16}\//),
    });
    expect(
      readdirSync(legacyDir).filter((n) => n.endsWith(".tar.gz.age") || n.endsWith(".tar.gz.age.sha256")),
    ).toEqual([]);
  }, 120_000);

  it("a copy whose snapshot is gone at home cannot be encrypted again: rotate says so, audit still lists it", async () => {
    reset();
    const id = Object.keys(offsiteRecord().copies)[0]!;
    // pruned at home (by hand here): the copy offsite is all that is left
    for (const name of readdirSync(join(sb.backupRoot, CTX)).filter((n) => n.startsWith(`${id}.`)))
      rmSync(join(sb.backupRoot, CTX, name));
    const r = await cli(["--json", ...rotateArgs()], at("2026-11-01T03:00:00Z"));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0].offsite).toEqual([
      expect.objectContaining({
        target: "nfs",
        id,
        action: "failed",
        encryptedOnPush: true,
        problem: expect.stringContaining("gone at home"),
      }),
    ]);
    expect(r.stdout + r.stderr).not.toContain("AGE-SECRET-KEY");
    const audit = await cli(["--json", "keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(audit.json.data).toEqual([expect.objectContaining({ where: "nfs", id })]);
  }, 120_000);

  it("killed after each rename of the rotation, the next run finishes it: audit of the removed key is 0", async () => {
    reset();
    const listed = spawnSync(
      process.execPath,
      ["--import", PRELOAD, CLI, ...sb.flags, "--config", config, ...rotateArgs()],
      {
        env: { PATH: process.env.PATH ?? "", HOME: home, PB_LIST_RENAMES: "1" },
        cwd: tmpdir(),
        encoding: "utf8",
      },
    );
    expect(listed.status, listed.stderr).toBe(0);
    const renames = [...listed.stderr.matchAll(/^rename (\d+): (.*)$/gm)].map((m) => ({
      n: Number(m[1]),
      to: m[2]!,
    }));
    // the offsite record (pending, then confirmed), the copy's sidecars and artifact at the target,
    // and the rotation record before and after
    expect(renames.some((r) => r.to.endsWith("/offsite/nfs.json"))).toBe(true);
    expect(renames.some((r) => r.to.startsWith(nfs) && r.to.endsWith(".tar.gz.age"))).toBe(true);
    // the last rename saves the finished record: a run after it is a rotation of its own
    for (const { n, to } of renames.slice(0, -1)) {
      reset();
      const killed = await new Promise<NodeJS.Signals | null>((done) => {
        const child = spawn(
          process.execPath,
          ["--import", PRELOAD, CLI, ...sb.flags, "--config", config, ...rotateArgs()],
          {
            env: { PATH: process.env.PATH ?? "", HOME: home, PB_KILL_AFTER_RENAME: String(n) },
            cwd: tmpdir(),
            stdio: "ignore",
          },
        );
        child.on("close", (_code, signal) => done(signal));
      });
      expect(killed, `rename ${n} (${to})`).toBe("SIGKILL");
      const again = await cli(["--json", ...rotateArgs()]);
      expect(again.code, `after rename ${n} (${to}): ${again.stdout}${again.stderr}`).toBe(0);
      await expectRotated(`after rename ${n} (${to})`);
      const rotations = join(sb.backupRoot, CTX, "rotations");
      const records = readdirSync(rotations).filter((f) => f.endsWith(".json") && !f.startsWith("."));
      expect(records, `after rename ${n}`).toHaveLength(1);
      expect(JSON.parse(readFileSync(join(rotations, records[0]!), "utf8")).finishedAt).not.toBeNull();
      expect(existsSync(join(sb.backupRoot, CTX))).toBe(true);
    }
  }, 600_000);
});
