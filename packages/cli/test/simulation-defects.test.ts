import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

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
