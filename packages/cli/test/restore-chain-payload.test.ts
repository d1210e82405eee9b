import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { appendFileSync, cpSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox, runCli, treeHashes, type Sandbox } from "./helpers.js";

/**
 * Issue 24 §3: an incremental records the plaintext it was built on (`parent.payloadSha256`), which
 * no rotation changes. restore checks it while walking the chain: a parent replaced by another
 * valid artifact (its own checksum file and manifest, the child's parent.sha256 rewritten to match,
 * as a rotation would) is refused as a broken chain, exit 3, and nothing live is touched. Through
 * the built CLI, encrypted snapshots (their artifact and payload hashes differ).
 */
const CTX = "internal-dogfood";
const T1 = { PAAS_BACKUP_NOW: "2026-11-01T01:00:00Z" };
const T2 = { PAAS_BACKUP_NOW: "2026-11-01T02:00:00Z" };

describe("restore checks the parent's payloadSha256", () => {
  let sb: Sandbox;
  let identity: string;
  let recipient: string;
  let other: string;
  let template: string;
  let full: string;
  let inc: string;
  const dir = () => join(sb.backupRoot, CTX);
  const cli = (args: string[], env: Record<string, string> = {}, root = sb.backupRoot) =>
    runCli(["--state-root", sb.stateRoot, "--backup-root", root, ...args], {
      env: { HOME: join(sb.dir, "home"), ...env },
    });
  const snapshot = (kind: string, env: Record<string, string>, root?: string) =>
    cli(["--json", "snapshot", "--context", CTX, "--kind", kind, "--recipient", recipient], env, root);
  const restore = () =>
    cli(["--json", "restore", "--context", CTX, "--ticket", "INC-PAYLOAD", "--yes", "--identity", identity]);
  const manifestPath = (id: string) => join(dir(), `${id}.manifest.json`);
  const readManifest = (id: string) => JSON.parse(readFileSync(manifestPath(id), "utf8"));

  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    identity = join(sb.dir, "keys", "id.txt");
    const key = await cli(["--json", "keygen", "--out", identity]);
    expect(key.code, key.stderr).toBe(0);
    recipient = key.json.data[0].recipient;
    const a = await snapshot("full", T1);
    expect(a.code, a.stdout + a.stderr).toBe(0);
    full = a.json.data[0].id;
    appendFileSync(
      join(sb.state.contextDir(CTX), "events", "audit.jsonl"),
      '{"ts":"2026-11-01T01:30:00Z","kind":"audit","msg":"after the full"}\n',
    );
    const b = await snapshot("incremental", T2);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    inc = b.json.data[0].id;
    expect(readManifest(inc).parent).toMatchObject({ id: full, payloadSha256: expect.any(String) });
    // another valid full with the same id: the same second, in another backup root, other contents
    other = join(sb.dir, "other-root");
    const c = await snapshot("full", T1, other);
    expect(c.code, c.stdout + c.stderr).toBe(0);
    expect(c.json.data[0].id).toBe(full);
    template = join(sb.dir, "template");
    cpSync(sb.backupRoot, template, { recursive: true });
  }, 120_000);
  afterAll(() => sb?.cleanup());

  /** F's artifact, checksum file and manifest replaced by the other root's F; the child's parent.sha256 made to match */
  const substituteParent = () => {
    rmSync(sb.backupRoot, { recursive: true, force: true });
    cpSync(template, sb.backupRoot, { recursive: true });
    for (const name of readdirSync(join(other, CTX)).filter((n) => n.startsWith(`${full}.`)))
      cpSync(join(other, CTX, name), join(dir(), name));
    const sha256 = readFileSync(join(dir(), `${full}.tar.gz.age.sha256`), "utf8").split(" ")[0]!;
    const child = readManifest(inc);
    expect(child.parent.sha256).not.toBe(sha256);
    writeFileSync(
      manifestPath(inc),
      `${JSON.stringify({ ...child, parent: { ...child.parent, sha256 } }, null, 2)}\n`,
    );
  };

  it("the untouched chain restores", async () => {
    const r = await restore();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0].snapshot).toMatchObject({ id: inc });
  }, 120_000);

  it("a substituted parent (its own manifest says so) is refused from the records: exit 3, a broken chain", async () => {
    substituteParent();
    // the substitute verifies on its own: only the chain's record of its plaintext tells it apart
    const verify = await cli(["--json", "verify", "--context", CTX, "--snapshot", full]);
    expect(verify.json.data[0].checksum, verify.stdout).toBe("verified");
    // verify of the incremental reads the same records, and says what restore will
    const chain = await cli(["--json", "verify", "--context", CTX, "--snapshot", inc]);
    expect(chain.code, chain.stdout).toBe(3);
    expect(chain.json.data[0]).toMatchObject({
      chainOk: false,
      chainProblem: expect.stringContaining(`link ${full} is not the payload ${inc} was built on`),
    });
    const live = treeHashes(sb.state.contextDir(CTX));
    const r = await restore();
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(r.json.error.code).toBe("PAAS_BACKUP_CHAIN_BROKEN");
    expect(r.json.error.message).toContain(`link ${full} is not the payload ${inc} was built on`);
    expect(treeHashes(sb.state.contextDir(CTX))).toEqual(live);
  }, 120_000);

  it("a substituted parent whose manifest claims the expected payload is refused by its bytes", async () => {
    substituteParent();
    // payloadSha256 is the one sidecar field the inner manifest cannot vouch for: a lie there passes the records
    const m = JSON.parse(readFileSync(manifestPath(full), "utf8"));
    writeFileSync(
      manifestPath(full),
      `${JSON.stringify({ ...m, payloadSha256: readManifest(inc).parent.payloadSha256 }, null, 2)}\n`,
    );
    const live = treeHashes(sb.state.contextDir(CTX));
    const r = await restore();
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(r.json.error.code).toBe("PAAS_BACKUP_CHAIN_BROKEN");
    expect(r.json.error.message).toMatch(
      new RegExp(`link ${full} is not the payload ${inc} was built on \\(its plaintext`),
    );
    expect(treeHashes(sb.state.contextDir(CTX))).toEqual(live);
  }, 120_000);
});
