import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import { planSnapshotContents } from "../src/snapshot/index.js";

const CTX = "internal-dogfood";

describe("planSnapshotContents names the rule that decided each path", () => {
  it("gives every included, absent, excluded and skipped path one decision with its rule id and words", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/home/op/.si/paas/state",
      contexts: [{ name: CTX, eventBytes: 2_000, releases: 1 }],
    });
    const dir = sr.contextDir(CTX);
    await fs.rm(`${dir}/bluegreen.json`, { force: true });
    fs.symlink("/etc/passwd", `${dir}/notes.txt`);
    await fs.writeFile(`${dir}/scratch.json`, "{}\n", { mode: 0o600 });

    const plan = await planSnapshotContents(fs, dir, ["releases"]);
    const by = new Map(plan.decisions.map((d) => [d.path, d]));

    expect(by.get("config.json")).toMatchObject({ action: "include", rule: "protected" });
    expect(by.get("config.json")!.size).toBe(plan.files.find((f) => f.path === "config.json")!.stat.size);
    expect(by.get("bluegreen.json")).toMatchObject({ action: "absent", rule: "protected", size: null });
    const release = plan.decisions.find((d) => d.path.startsWith("releases/"))!;
    expect(release).toMatchObject({ action: "include", rule: "optional:releases" });
    expect(release.reason).toBe("optional folder asked for (--include releases)");
    expect(by.get("cache/")).toMatchObject({ action: "exclude", rule: "excluded:not-requested:cache" });
    expect(by.get("vault/")).toMatchObject({
      action: "exclude",
      rule: "excluded:vault",
      reason: "vault material (policy §3.1)",
    });
    expect(by.get("alerts/telegram.json")).toMatchObject({
      action: "exclude",
      rule: "excluded:alert-credentials",
    });
    expect(by.get("scratch.json")).toMatchObject({ action: "exclude", rule: "excluded:not-protected" });
    expect(by.get("notes.txt")).toMatchObject({ action: "skip", rule: "skipped:symlink" });

    // one decision per path the other lists hold, with the same words the manifest records
    expect(plan.decisions).toHaveLength(
      plan.files.length + plan.absent.length + plan.excluded.length + plan.skipped.length,
    );
    for (const e of plan.excluded)
      expect(by.get(e.path)).toMatchObject({ action: "exclude", reason: e.reason });
    for (const e of plan.skipped) expect(by.get(e.path)).toMatchObject({ action: "skip", reason: e.reason });
  });

  it("says when a protected file is reached through a link", async () => {
    const fs = new MemoryFileSystem();
    const sr = await createStateRoot({
      fs,
      root: "/srv/state",
      contexts: [{ name: CTX, eventBytes: 1_000 }],
    });
    const dir = sr.contextDir(CTX);
    await fs.rm(`${dir}/events`, { recursive: true, force: true });
    fs.symlink("/tmp/elsewhere", `${dir}/events`);
    const plan = await planSnapshotContents(fs, dir, []);
    const audit = plan.decisions.find((d) => d.path === "events/audit.jsonl")!;
    expect(audit).toMatchObject({ action: "skip", rule: "skipped:under-link" });
    expect(audit.reason).toContain("never followed");
  });
});
