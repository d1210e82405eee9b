import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStateRoot, startRgw, type Rgw } from "@paas-backup/testing";
import { nodeFs } from "@paas-backup/core/node";
import { runCli, type CliResult } from "./helpers.js";

/**
 * keys audit with an s3:// backup root (issue 24 §3 on issue 22's shared bucket), on Ceph RGW
 * through the built CLI: it reads the age header of every committed snapshot in the bucket, as it
 * does in a folder; keys rotate still refuses such a root by name (nothing in the bucket is ever
 * overwritten: a rotation there needs a commit of its own, not built yet).
 */
const CTX = "alpha";
let rgw: Rgw;
let work: string;
let root: string;
let stateRoot: string;
let env: Record<string, string>;
const keys: Record<string, { file: string; recipient: string }> = {};

function on(args: string[]): Promise<CliResult> {
  return runCli(
    [
      "--state-root",
      stateRoot,
      "--backup-root",
      root,
      "--root-endpoint",
      rgw.endpoint,
      "--root-path-style",
      "--json",
      ...args,
    ],
    { env },
  );
}

beforeAll(async () => {
  rgw = await startRgw();
  work = mkdtempSync(join(tmpdir(), "pb-keys-s3-"));
  root = `s3://${await rgw.createBucket({ prefix: "keys" })}/repo`;
  const home = join(work, "home");
  mkdirSync(home, { recursive: true });
  const state = await createStateRoot({
    fs: nodeFs,
    root: join(work, "state"),
    contexts: [{ name: CTX, eventBytes: 20_000 }],
    plantSecrets: false,
  });
  stateRoot = state.stateRoot;
  env = { HOME: home, XDG_CACHE_HOME: join(work, "cache"), PAAS_BACKUP_HOST: "host-a", ...rgw.env };
  for (const name of ["old", "keep", "never"]) {
    const file = join(work, "keys", `${name}.txt`);
    const r = await runCli(["--json", "keygen", "--out", file], { env });
    expect(r.code, r.stderr).toBe(0);
    keys[name] = { file, recipient: r.json.data[0].recipient };
  }
}, 120_000);
afterAll(async () => {
  await rgw?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("keys with an s3:// backup root (RGW, through the built CLI)", () => {
  it("keys audit lists the committed snapshots a key opens in the bucket; keys rotate refuses the root by name", async () => {
    const recipients = ["--recipient", keys.old!.recipient, "--recipient", keys.keep!.recipient];
    const full = await on(["tick", "--context", CTX, ...recipients]);
    expect(full.code, full.stdout + full.stderr).toBe(0);
    const inc = await on(["snapshot", "--context", CTX, "--kind", "incremental", ...recipients]);
    expect(inc.code, inc.stdout + inc.stderr).toBe(0);
    const ids = [full.json.data[0].snapshot.id, inc.json.data[0].id].sort();

    const audit = await on(["keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(audit.json).toMatchObject({ count: 2, checked: 2, plaintext: 0 });
    expect(audit.json.data.map((o: any) => o.id).sort()).toEqual(ids);
    for (const o of audit.json.data) {
      expect(o).toMatchObject({ context: CTX, where: "local", root: null, lockedUntil: null });
      expect(o.artifact).toMatch(new RegExp(`^${root}/${CTX}/.*\\.tar\\.gz\\.age$`));
    }
    // --all-contexts: the contexts the hosts report in the bucket
    const all = await on(["keys", "audit", "--all-contexts", "--identity", keys.keep!.file]);
    expect(all.code, all.stdout + all.stderr).toBe(0);
    expect(all.json.count).toBe(2);
    // a key that was never a recipient opens nothing: exit 0, count 0
    const never = await on(["keys", "audit", "--context", CTX, "--identity", keys.never!.file]);
    expect(never.code, never.stdout + never.stderr).toBe(0);
    expect(never.json).toMatchObject({ count: 0, checked: 2 });

    const rotate = await on([
      "keys",
      "rotate",
      "--context",
      CTX,
      "--remove-recipient",
      keys.old!.recipient,
      "--add-recipient",
      keys.never!.recipient,
      "--identity",
      keys.keep!.file,
    ]);
    expect(rotate.code, rotate.stdout + rotate.stderr).toBe(2);
    expect(rotate.json.error.code).toBe("PAAS_BACKUP_REMOTE_ROOT_UNSUPPORTED");
    expect(rotate.json.error.remediation).toContain("keys audit");
  }, 180_000);
});

describe("keys rotate of copies encrypted on push to S3 targets (RGW, through the built CLI)", () => {
  it("replaces the copy in a plain bucket (audit of the removed key: 0); under COMPLIANCE lock it stays, with its window", async () => {
    const dir = mkdtempSync(join(work, "enc-"));
    const backupRoot = join(dir, "backups");
    const config = join(dir, "config.json");
    const plain = await rgw.createBucket({ prefix: "rot" });
    const locked = await rgw.createBucket({ prefix: "rotlock", objectLock: true });
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        recipients: [keys.old!.recipient, keys.keep!.recipient],
        offsite: {
          targets: [
            { name: "plain", url: `s3://${plain}/si`, endpoint: rgw.endpoint, pathStyle: true },
            {
              name: "locked",
              url: `s3://${locked}/si`,
              endpoint: rgw.endpoint,
              pathStyle: true,
              objectLock: { mode: "COMPLIANCE", days: 1 },
            },
          ],
        },
      }),
    );
    const cli = (args: string[]) =>
      runCli(
        ["--state-root", stateRoot, "--backup-root", backupRoot, "--config", config, "--json", ...args],
        {
          // the real clock: Object Lock's retain-until must lie ahead on the server's
          env,
        },
      );
    const snap = await cli(["snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stdout + snap.stderr).toBe(0);
    const id: string = snap.json.data[0].id;
    const push = await cli(["offsite", "push", "--context", CTX]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(push.json.data.map((d: any) => d.pushed[0]?.encryptedOnPush)).toEqual([true, true]);
    const before = await cli(["keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(before.json.data.map((o: any) => o.where).sort()).toEqual(["locked", "plain"]);

    const rotate = await cli([
      "keys",
      "rotate",
      "--context",
      CTX,
      "--add-recipient",
      keys.never!.recipient,
      "--remove-recipient",
      keys.old!.recipient,
      "--identity",
      keys.keep!.file,
    ]);
    expect(rotate.code, rotate.stdout + rotate.stderr).toBe(0);
    const offsite = rotate.json.data[0].offsite;
    expect(offsite).toContainEqual(
      expect.objectContaining({ target: "plain", id, action: "replaced", encryptedOnPush: true }),
    );
    expect(offsite).toContainEqual(
      expect.objectContaining({ target: "locked", id, action: "locked", lockedUntil: expect.any(String) }),
    );
    const after = await cli(["keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(after.code, after.stdout + after.stderr).toBe(0);
    // the plain bucket's copy is the new one; the locked copy is the exposure window, until its lock ends
    expect(after.json.data).toEqual([
      expect.objectContaining({ where: "locked", id, lockedUntil: expect.any(String) }),
    ]);
    expect(after.json.exposedUntil).toBe(after.json.data[0].expires);
    const byNew = await cli(["keys", "audit", "--context", CTX, "--identity", keys.never!.file]);
    expect(byNew.json.data.map((o: any) => o.where)).toEqual(["plain"]);
  }, 180_000);
});
