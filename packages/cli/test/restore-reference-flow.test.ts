import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { rawTar, type RawEntry } from "@paas-backup/testing";
import { makeSandbox, runCli, sh, treeHashes, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";
const ID = "20261101T020304Z";

/** Issue 20 (Restore): restores of snapshots paas-backup did not write, through the built CLI. */
describe("restore of hand-made snapshots", () => {
  let sb: Sandbox;
  let ctx: string;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 2 }]);
    ctx = sb.state.contextDir(CTX);
  });
  afterEach(() => sb.cleanup());

  /** Policy §5, verbatim but for the variables (and a private artifact). */
  const referenceFlowSnapshot = () => {
    const out = join(sb.backupRoot, CTX, ID);
    mkdirSync(out, { recursive: true });
    sh("bash", [
      "-c",
      `set -e; SRC="${ctx}"; OUT="${out}"; rsync -a --delete --exclude 'vault/secrets.env' --exclude '*.secret' "$SRC/" "$OUT/"; tar -C "$OUT" -czf "$OUT.tar.gz" .; sha256sum "$OUT.tar.gz" > "$OUT.tar.gz.sha256"; chmod 600 "$OUT.tar.gz"`,
    ]);
  };
  const restore = (...extra: string[]) =>
    runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--snapshot",
      ID,
      "--ticket",
      "INC-20",
      "--yes",
      ...extra,
    ]);

  it("--path config.json of the reference flow's snapshot changes config.json only, leaves no journal, and rolls back", async () => {
    referenceFlowSnapshot();
    const snapshotConfig = readFileSync(join(ctx, "config.json"), "utf8");
    writeFileSync(join(ctx, "config.json"), "{}\n");
    // the audit log gains the restore's own event; everything else stays byte for byte
    const notConfig = (rel: string) => rel === "config.json" || rel === "events/audit.jsonl";
    const others = treeHashes(ctx, notConfig);
    const audit = readFileSync(join(ctx, "events", "audit.jsonl"), "utf8");
    const r = await restore("--path", "config.json");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.data[0]).toMatchObject({
      outcome: "restored",
      scope: { mode: "paths", paths: ["config.json"] },
    });
    expect(readFileSync(join(ctx, "config.json"), "utf8")).toBe(snapshotConfig);
    // targets, deployments, the alerts policy, every event log: all still there, byte for byte
    expect(treeHashes(ctx, notConfig)).toEqual(others);
    expect(readFileSync(join(ctx, "events", "audit.jsonl"), "utf8").startsWith(audit)).toBe(true);
    expect(readdirSync(join(sb.stateRoot, ".paas-backup", "journal"))).toEqual([]);
    const back = await runCli([...sb.flags, "--json", "rollback", "--context", CTX, "--ticket", "INC-20"]);
    expect(back.code, back.stdout + back.stderr).toBe(0);
    expect(readFileSync(join(ctx, "config.json"), "utf8")).toBe("{}\n");
    expect(treeHashes(ctx, notConfig)).toEqual(others);
  });

  /** The context's files as raw tar entries (no vault, no secrets), plus `extra`. */
  const handMadeSnapshot = (extra: RawEntry[]) => {
    const entries: RawEntry[] = [];
    for (const [rel] of treeHashes(ctx, (rel) => rel.startsWith("vault") || rel.endsWith(".secret")))
      if (rel !== "alerts/telegram.json" && !rel.startsWith("releases/") && !rel.startsWith("cache/"))
        entries.push({ name: rel, content: readFileSync(join(ctx, rel)) });
    const dir = join(sb.backupRoot, CTX);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, `${ID}.tar.gz`), gzipSync(rawTar([...entries, ...extra])), { mode: 0o600 });
    sh("bash", ["-c", `cd "${dir}" && sha256sum "${ID}.tar.gz" > "${ID}.tar.gz.sha256"`]);
  };

  it("alerts/./telegram.json is the telegram token to the exclusions: never restored, listed as not restored", async () => {
    const injected = JSON.stringify({ bot_token: "999999999:INJECTEDtokenINJECTEDtoken", chat_id: "1" });
    handMadeSnapshot([{ name: "alerts/./telegram.json", content: injected }]);
    const liveToken = readFileSync(join(ctx, "alerts", "telegram.json"), "utf8");
    for (const exact of [false, true]) {
      const r = await restore(...(exact ? ["--exact"] : []));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.json.data[0].notRestored).toContainEqual(
        expect.objectContaining({ path: "alerts/telegram.json" }),
      );
      const live = join(ctx, "alerts", "telegram.json");
      // the snapshot scope keeps the live token; --exact moves it aside with the rest; never the archive's
      if (exact) expect(existsSync(live)).toBe(false);
      else expect(readFileSync(live, "utf8")).toBe(liveToken);
      const everywhere = [...treeHashes(sb.stateRoot).keys()].map((rel) =>
        readFileSync(join(sb.stateRoot, rel), "utf8"),
      );
      expect(everywhere.some((text) => text.includes("INJECTEDtoken"))).toBe(false);
    }
  });
});
