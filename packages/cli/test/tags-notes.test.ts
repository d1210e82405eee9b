import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { planRetention } from "@paas-backup/core/retention";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

// Issue 25 §4: snapshot --tag/--note recorded in the manifest, shown by list, chosen by
// restore --snapshot tag:NAME, kept by retention.keepTags and prune --keep-tag.

const CTX = "acme-prod";

describe("snapshot tags and notes", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 10_000 }]);
  });
  afterEach(() => sb.cleanup());

  const snap = (at: string, extra: string[] = []) =>
    runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext", ...extra], {
      env: { PAAS_BACKUP_NOW: at },
    });

  it("records tags and the note in the manifest, list shows them, restore tag:NAME picks the newest tagged", async () => {
    const first = await snap("2026-11-01T10:00:00Z", ["--tag", "pre-upgrade", "--note", "before 1.4"]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.json.data[0]).toMatchObject({ tags: ["pre-upgrade"], note: "before 1.4" });
    const manifest = JSON.parse(readFileSync(first.json.data[0].manifestFile, "utf8"));
    expect(manifest).toMatchObject({ tags: ["pre-upgrade"], note: "before 1.4" });
    await snap("2026-11-02T10:00:00Z");
    const tagged = await snap("2026-11-03T10:00:00Z", ["--tag", "pre-upgrade", "--tag", "q4"]);
    await snap("2026-11-04T10:00:00Z");

    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.data.map((d: any) => [d.id, d.tags, d.note])).toEqual([
      ["20261101T100000Z", ["pre-upgrade"], "before 1.4"],
      ["20261102T100000Z", [], null],
      ["20261103T100000Z", ["pre-upgrade", "q4"], null],
      ["20261104T100000Z", [], null],
    ]);
    const human = await runCli([...sb.flags, "list", "--context", CTX]);
    expect(human.stdout).toMatch(/^20261103T100000Z .* pre-upgrade,q4 /m);
    expect(human.stdout).toContain("note: 20261101T100000Z: before 1.4");

    const restore = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "INC-T",
      "--yes",
      "--snapshot",
      "tag:pre-upgrade",
    ]);
    expect(restore.code, restore.stdout).toBe(0);
    expect(restore.json.data[0].snapshot.id).toBe(tagged.json.data[0].id);
    const none = await runCli([
      ...sb.flags,
      "restore",
      "--context",
      CTX,
      "--ticket",
      "I",
      "--snapshot",
      "tag:nope",
    ]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("PAAS_BACKUP_SNAPSHOT_NOT_FOUND");
    const bad = await runCli([
      ...sb.flags,
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
      "--tag",
      "a b",
    ]);
    expect(bad.code).toBe(2);
  });

  it("retention.keepTags and prune --keep-tag keep tagged snapshots beyond the policy's slots", async () => {
    await snap("2026-11-01T10:00:00Z", ["--tag", "pre-upgrade"]);
    await snap("2026-11-02T10:00:00Z", ["--tag", "audit"]);
    await snap("2026-11-03T10:00:00Z");
    await snap("2026-11-04T10:00:00Z");
    const only = ["--keep-hourly", "0", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0"];
    const env = { PAAS_BACKUP_NOW: "2026-11-04T12:00:00Z" };
    const plain = await runCli([...sb.flags, "--json", "prune", "--context", CTX, "--dry-run", ...only], {
      env,
    });
    expect(plain.json.data[0].plan.keep.map((k: any) => k.id)).toEqual(["20261104T100000Z"]);

    const config = join(sb.dir, "config.json");
    writeFileSync(config, JSON.stringify({ retention: { keepTags: ["pre-upgrade"] } }));
    const pruned = await runCli(
      [...sb.flags, "--config", config, "--json", "prune", "--context", CTX, ...only, "--keep-tag", "audit"],
      { env },
    );
    expect(pruned.code, pruned.stdout).toBe(0);
    expect(pruned.json.data[0].removed).toEqual(["20261103T100000Z"]);
    const kept = pruned.json.data[0].plan.keep;
    expect(kept).toContainEqual({ id: "20261101T100000Z", reasons: ["tag pre-upgrade"] });
    expect(kept).toContainEqual({ id: "20261102T100000Z", reasons: ["tag audit"] });
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.data.map((d: any) => d.id)).toEqual([
      "20261101T100000Z",
      "20261102T100000Z",
      "20261104T100000Z",
    ]);
  });

  it("planRetention keeps a tagged incremental with its chain", () => {
    const plan = planRetention({
      snapshots: [
        { id: "a", time: "2026-01-01T00:00:00Z", kind: "full" },
        { id: "b", time: "2026-01-01T01:00:00Z", kind: "incremental", parent: "a", tags: ["x"] },
        { id: "c", time: "2026-03-01T00:00:00Z", kind: "full" },
      ],
      policy: { hourly: 0, daily: 1, weekly: 0, monthly: 0 },
      keepTags: ["x"],
    });
    expect(plan.keep.map((k) => k.id).sort()).toEqual(["a", "b", "c"]);
    expect(plan.remove).toEqual([]);
  });
});
