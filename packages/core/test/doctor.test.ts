import { describe, it, expect } from "vitest";
import { MemoryFileSystem, createStateRoot } from "@paas-backup/testing";
import { runDoctor } from "../src/index.js";
import { writeBlock } from "../src/records/index.js";

const CTX = "internal-dogfood";

async function healthy(root = "/home/op/.si/paas/state") {
  const fs = new MemoryFileSystem();
  const sr = await createStateRoot({
    fs,
    root,
    contexts: [{ name: CTX, eventBytes: 4_000 }],
    plantSecrets: false,
  });
  return { fs, sr, root };
}
const failing = (r: Awaited<ReturnType<typeof runDoctor>>) =>
  r.checks.filter((c) => !c.ok).map((c) => c.name);

describe("runDoctor (post-restore validation, policy §6)", () => {
  it("passes a healthy context and reports si's context show and its newest events", async () => {
    const { fs, root } = await healthy();
    const r = await runDoctor({ fs, stateRoot: root, context: CTX });
    expect(failing(r)).toEqual([]);
    expect(r).toMatchObject({
      ok: true,
      command: "doctor",
      context: CTX,
      mode: "live",
      count: r.checks.length,
    });
    expect(r.contextShow?.name).toBe(CTX);
    expect(r.events.length).toBeGreaterThan(0);
    expect(r.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        "state_root_resolved",
        "state_root_outside_repo",
        "state_files_parse",
        "events_readable",
        "permissions",
        "not_blocked",
      ]),
    );
  });

  it("fails a missing context, naming its folder", async () => {
    const { fs, root } = await healthy();
    const r = await runDoctor({ fs, stateRoot: root, context: "not-there" });
    expect(r.ok).toBe(false);
    expect(r.checks.find((c) => c.name === "state_root_resolved")).toMatchObject({
      ok: false,
      detail: `context folder ${root}/contexts/not-there does not exist`,
    });
  });

  it("fails a state file that no longer parses, and a log line that is not a JSON object", async () => {
    const { fs, sr, root } = await healthy();
    await fs.writeFile(`${sr.contextDir(CTX)}/config.json`, "{ not json", { mode: 0o600 });
    await fs.appendFile(`${sr.contextDir(CTX)}/events/audit.jsonl`, "garbage\n");
    const r = await runDoctor({ fs, stateRoot: root, context: CTX });
    expect(failing(r)).toEqual(expect.arrayContaining(["context_show", "events_readable"]));
    expect(r.checks.find((c) => c.name === "events_readable")!.detail).toMatch(
      /audit\.jsonl: lines \d+ are not JSON objects/,
    );
  });

  it("a state root in a git work tree (also through a link) fails unless si's override is passed", async () => {
    const { fs, root } = await healthy("/src/tool/state");
    await fs.mkdir("/src/tool/.git", { recursive: true });
    expect(failing(await runDoctor({ fs, stateRoot: root, context: CTX }))).toContain(
      "state_root_outside_repo",
    );
    expect(
      failing(await runDoctor({ fs, stateRoot: root, context: CTX, allowRepoState: true })),
    ).not.toContain("state_root_outside_repo");
    await fs.mkdir("/home/op", { recursive: true });
    fs.symlink("/src/tool/state", "/home/op/state");
    const viaLink = await runDoctor({ fs, stateRoot: "/home/op/state", context: CTX });
    expect(viaLink.checks.find((c) => c.name === "state_root_outside_repo")).toMatchObject({ ok: false });
  });

  it("loose permissions fail; a block marker fails until ignored", async () => {
    const { fs, sr, root } = await healthy();
    await fs.chmod(`${sr.contextDir(CTX)}/config.json`, 0o644);
    expect(failing(await runDoctor({ fs, stateRoot: root, context: CTX }))).toEqual(["permissions"]);
    await fs.chmod(`${sr.contextDir(CTX)}/config.json`, 0o600);
    await writeBlock(fs, root, {
      context: CTX,
      ticket: "INC-7",
      blockedAt: "2026-11-24T10:00:00Z",
      reason: "doctor failed",
      snapshot: null,
      failingChecks: [],
    });
    const blocked = await runDoctor({ fs, stateRoot: root, context: CTX });
    expect(failing(blocked)).toEqual(["not_blocked"]);
    expect(blocked.checks.find((c) => c.name === "not_blocked")!.detail).toContain("INC-7");
    expect((await runDoctor({ fs, stateRoot: root, context: CTX, ignoreBlock: true })).ok).toBe(true);
  });
});
