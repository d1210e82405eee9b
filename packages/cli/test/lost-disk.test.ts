import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRgw, type Rgw } from "@paas-backup/testing";
import { makeSandbox, openUp, runCli, sha256File, type Sandbox } from "./helpers.js";

// Issue 20 §2, "After a lost disk, offsite copies are hard to find", through the built CLI: a
// host's backup root is lost, a fresh one (a new identity) is made, and restore --from-offsite
// --snapshot <id> finds the copy the lost root pushed: used when one root holds it (and named),
// refused with the roots and --offsite-root when several do. A directory target and S3 (RGW).

const CTX = "internal-dogfood";
let rgw: Rgw;

beforeAll(async () => {
  rgw = await startRgw();
});

afterAll(async () => {
  await rgw?.stop();
});

function rootOf(backupRoot: string): string {
  return JSON.parse(readFileSync(join(backupRoot, "paas-backup.repository.json"), "utf8")).id;
}

/** A host that took a full at `now` and pushed it; then its backup root's disk is lost. */
async function hostThatLostItsDisk(to: string[], env: Record<string, string>, now: string, note: string) {
  const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
  writeFileSync(
    join(sb.state.contextDir(CTX), "deployments.json"),
    `${JSON.stringify({ deployments: [], note })}\n`,
  );
  const at = { ...env, PAAS_BACKUP_NOW: now };
  const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
    env: at,
  });
  expect(snap.code, snap.stdout + snap.stderr).toBe(0);
  const push = await runCli(
    [...sb.flags, "--json", "offsite", "push", "--context", CTX, ...to, "--allow-plaintext"],
    { env: at },
  );
  expect(push.code, push.stdout + push.stderr).toBe(0);
  const root = rootOf(sb.backupRoot);
  const deployments = sha256File(join(sb.state.contextDir(CTX), "deployments.json"));
  rmSync(sb.backupRoot, { recursive: true, force: true }); // the disk is gone
  return { sb, id: snap.json.data[0].id as string, root, deployments };
}

/** The same host after the new disk: a fresh backup root (new identity), its state changed since. */
async function freshRoot(sb: Sandbox, to: string[], env: Record<string, string>) {
  writeFileSync(join(sb.state.contextDir(CTX), "deployments.json"), '{"deployments":[],"note":"since"}\n');
  // a fresh root gets its identity as soon as it is used: an empty push makes one
  const push = await runCli(
    [...sb.flags, "--json", "offsite", "push", "--context", CTX, ...to, "--allow-plaintext"],
    { env },
  );
  expect(push.code, push.stdout + push.stderr).toBe(0);
  expect(rootOf(sb.backupRoot)).toMatch(/^[0-9a-f]{16}$/);
}

const restore = (sb: Sandbox, to: string[], env: Record<string, string>, extra: string[], json = false) =>
  runCli(
    [
      ...sb.flags,
      ...(json ? ["--json"] : []),
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-LOSTDISK",
      "--yes",
      "--from-offsite",
      to[1]!,
      ...to.slice(2),
      ...extra,
    ],
    { env },
  );

for (const kind of ["file", "s3"] as const) {
  describe(`after a lost disk, restore --from-offsite finds the lost root's copy (${kind} target)`, () => {
    let dir: string;
    let to: string[];
    let env: Record<string, string>;
    const sandboxes: Sandbox[] = [];

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "pb-lostdisk-"));
      if (kind === "file") {
        to = ["--to", `file://${join(dir, "nfs")}`];
        env = {};
      } else {
        const bucket = await rgw.createBucket({ prefix: "lostdisk" });
        to = ["--to", `s3://${bucket}/si-paas`, "--endpoint", rgw.endpoint, "--path-style"];
        env = rgw.env;
      }
    });

    afterAll(() => {
      for (const sb of sandboxes) sb.cleanup();
      openUp(join(dir, "nfs"));
      rmSync(dir, { recursive: true, force: true });
    });

    it("one root holds the snapshot: restored from it, with a message naming that root", async () => {
      const lost = await hostThatLostItsDisk(to, env, "2026-11-24T00:30:00Z", `${kind}: one root`);
      sandboxes.push(lost.sb);
      await freshRoot(lost.sb, to, env);
      expect(rootOf(lost.sb.backupRoot)).not.toBe(lost.root);

      // offsite list on the fresh root: no copies of its own, and the root that has them named
      const list = await runCli([...lost.sb.flags, "offsite", "list", "--context", CTX, ...to], { env });
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain(`this backup root has no copies of ${CTX} here; other backup roots do:`);
      expect(list.stdout).toMatch(new RegExp(`${lost.root} \\(host [^)]+\\): 1 copy, newest ${lost.id}`));
      const one = await runCli(
        [...lost.sb.flags, "--json", "offsite", "list", "--context", CTX, "--offsite-root", lost.root, ...to],
        { env },
      );
      expect(one.json.data[0].entries.map((e: { id: string; root: string }) => [e.id, e.root])).toEqual([
        [lost.id, lost.root],
      ]);

      const r = await restore(lost.sb, to, env, ["--snapshot", lost.id]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stderr).toContain(`offsite: using the copies of backup root ${lost.root} (host `);
      expect(r.stderr).toContain(
        `this backup root has no copy of it; ${lost.root} is the only backup root at the target that holds it`,
      );
      expect(r.stderr).toMatch(new RegExp(`offsite: restoring ${lost.id}; fetched ${lost.id} from `));
      // the live state is the snapshot's again, and the fetched copy is in the fresh root with its checksum
      expect(sha256File(join(lost.sb.state.contextDir(CTX), "deployments.json"))).toBe(lost.deployments);
      const listed = await runCli([...lost.sb.flags, "--json", "list", "--context", CTX], { env });
      expect(listed.json.data.map((s: { id: string; checksum: string }) => [s.id, s.checksum])).toEqual([
        [lost.id, "verified"],
      ]);
      // the incident record of the restore, as for any offsite restore
      const incident = /^incident:\s+(\S+)$/m.exec(r.stdout)?.[1];
      expect(incident && existsSync(incident), r.stdout).toBe(true);
      expect(readFileSync(incident!, "utf8")).toContain("INC-LOSTDISK");
    });

    it("two roots hold the same id: exit 2 naming both and --offsite-root; --offsite-root picks one", async () => {
      // two hosts' roots at one target, each with a full of the same second (the same id)
      const a = await hostThatLostItsDisk(to, env, "2026-11-25T00:30:00Z", `${kind}: host a`);
      const b = await hostThatLostItsDisk(to, env, "2026-11-25T00:30:00Z", `${kind}: host b`);
      sandboxes.push(a.sb, b.sb);
      expect(b.id).toBe(a.id);
      expect(b.deployments).not.toBe(a.deployments);
      const fresh = a.sb;
      await freshRoot(fresh, to, env);
      const refused = await restore(fresh, to, env, ["--snapshot", a.id]);
      expect(refused.code, refused.stdout + refused.stderr).toBe(2);
      expect(refused.stderr).toContain("PAAS_BACKUP_OFFSITE_ROOT_AMBIGUOUS");
      expect(refused.stderr).toContain(a.root);
      expect(refused.stderr).toContain(b.root);
      expect(refused.stderr).toContain("--offsite-root <root id>");
      // nothing was fetched or restored
      const none = await runCli([...fresh.flags, "--json", "list", "--context", CTX], { env });
      expect(none.json.data).toEqual([]);
      expect(readFileSync(join(fresh.state.contextDir(CTX), "deployments.json"), "utf8")).toContain("since");

      const picked = await restore(fresh, to, env, ["--snapshot", a.id, "--offsite-root", b.root], true);
      expect(picked.code, picked.stdout + picked.stderr).toBe(0);
      expect(picked.json.offsite).toMatchObject({
        chosen: a.id,
        fetched: [a.id],
        root: { id: b.root, why: "named by --offsite-root" },
      });
      expect(sha256File(join(fresh.state.contextDir(CTX), "deployments.json"))).toBe(b.deployments);
    });
  });
}
