import { describe, it, expect, afterAll, beforeAll } from "vitest";
import { readFileSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox, runCli, type Sandbox, openUp } from "./helpers.js";

/**
 * Issue 24 §3, keys audit: what an age identity still opens among retained snapshots, at home
 * and at the offsite target, read from the age headers alone. The artifacts are the age CLI's
 * format (our writer), and a key that was never a recipient opens nothing (exit 0, count 0).
 */
const CTX = "internal-dogfood";
const at = (iso: string) => ({ PAAS_BACKUP_NOW: iso });

describe("keys audit", () => {
  let sb: Sandbox;
  let config: string;
  const keys: Record<string, { file: string; recipient: string }> = {};
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli([...sb.flags, "--config", config, ...args], { env });

  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    config = join(sb.dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        mandatoryDrillContexts: [],
        offsite: { targets: [{ name: "nfs", url: `file://${join(sb.dir, "nfs")}` }] },
      }),
    );
    for (const name of ["old", "new", "never"]) {
      const file = join(sb.dir, "keys", `${name}.txt`);
      const r = await cli(["--json", "keygen", "--out", file]);
      expect(r.code, r.stderr).toBe(0);
      keys[name] = { file, recipient: r.json.data[0].recipient };
    }
    // day 1: encrypted to the old key; day 2: to both (a rotation in progress)
    const day1 = await cli(
      ["--json", "tick", "--context", CTX, "--recipient", keys.old!.recipient],
      at("2026-11-01T01:00:00Z"),
    );
    expect(day1.code, day1.stdout).toBe(0);
    const day2 = await cli(
      [
        "--json",
        "tick",
        "--context",
        CTX,
        "--recipient",
        keys.old!.recipient,
        "--recipient",
        keys.new!.recipient,
      ],
      at("2026-11-02T01:00:00Z"),
    );
    expect(day2.code, day2.stdout).toBe(0);
  }, 120_000);
  afterAll(() => {
    openUp(join(sb.dir, "nfs"));
    sb.cleanup();
  });

  it("lists every retained snapshot the key opens, at home and offsite, with when each goes", async () => {
    const r = await cli(
      ["--json", "keys", "audit", "--context", CTX, "--identity", keys.old!.file],
      at("2026-11-03T00:00:00Z"),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const list = await cli(["--json", "list", "--context", CTX]);
    const local = list.json.data.map((s: any) => s.id).sort();
    expect(local.length).toBe(2);
    const opened = r.json.data;
    expect(
      opened
        .filter((o: any) => o.where === "local")
        .map((o: any) => o.id)
        .sort(),
    ).toEqual(local);
    // both daily fulls were pushed by tick: the copies are exposures too
    expect(
      opened
        .filter((o: any) => o.where === "nfs")
        .map((o: any) => o.id)
        .sort(),
    ).toEqual(local);
    for (const o of opened) expect(Date.parse(o.expires)).toBeGreaterThan(Date.parse("2026-11-03T00:00:00Z"));
    expect(r.json.count).toBe(4);
    expect(r.json.checked).toBe(4);
    expect(r.json.exposedUntil).toBe(opened.at(-1).expires);
    const newKey = await cli(["--json", "keys", "audit", "--context", CTX, "--identity", keys.new!.file]);
    expect(newKey.json.data.map((o: any) => o.id)).toEqual(expect.arrayContaining([local[1]]));
    expect(newKey.json.data.some((o: any) => o.id === local[0])).toBe(false);
  });

  it("a key that was never a recipient opens nothing: exit 0, count 0", async () => {
    const r = await cli(["--json", "keys", "audit", "--all-contexts", "--identity", keys.never!.file]);
    expect(r.code, r.stdout).toBe(0);
    expect(r.json.count).toBe(0);
    const human = await cli(["keys", "audit", "--all-contexts", "--identity", keys.never!.file]);
    expect(human.stdout).toMatch(/opens none of the 4 encrypted snapshot\(s\) retained/);
  });

  it("reads only the age header: an artifact cut right after its header still counts", async () => {
    const dir = join(sb.backupRoot, CTX);
    const name = readdirSync(dir).find((n) => n.endsWith(".tar.gz.age"))!;
    const bytes = readFileSync(join(dir, name));
    const headerEnd = bytes.indexOf("\n---") + 4 + 44 + 1; // "--- " + base64 MAC + "\n"
    writeFileSync(join(dir, name), bytes.subarray(0, headerEnd + 16));
    const r = await cli(["--json", "keys", "audit", "--context", CTX, "--identity", keys.old!.file]);
    expect(r.code).toBe(0);
    expect(r.json.data.some((o: any) => o.where === "local" && `${o.id}.tar.gz.age` === name)).toBe(true);
    writeFileSync(join(dir, name), bytes);
  });
});
