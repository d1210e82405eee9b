import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { appendFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { makeSandbox, runCli, type Sandbox } from "./helpers.js";

const CTX = "internal-dogfood";
const PRELOAD = resolve(import.meta.dirname, "stall-preload.mjs");
const TOKEN = "ghp_R4nd0mF4k3T0k3nF0rT3st1ngPurp0s3s123";

/**
 * Node ends a process whose event loop ran dry with exit 0, even while the command still awaits:
 * a snapshot once ended that way, exit 0 and not a byte of output, in a full test run. Here a
 * preload makes opening the event log a promise nothing settles, the same dry loop on demand.
 */
describe("a run that can never finish", () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 100_000, releases: 1 }]);
  });
  afterEach(() => sb.cleanup());

  const stalled = { NODE_OPTIONS: `--import=${PRELOAD}`, PB_STALL_OPEN: "events/deployments.jsonl" };

  it("is a failure (exit 1, one envelope under --json), never a quiet exit 0, and leaves nothing behind", async () => {
    appendFileSync(
      join(sb.state.contextDir(CTX), "events", "deployments.jsonl"),
      `${JSON.stringify({ error_message: `git clone https://${TOKEN}@github.com/acme/web.git` })}\n`,
    );
    const r = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"], {
      env: stalled,
    });
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.json, r.stdout).toMatchObject({
      ok: false,
      command: "snapshot",
      context: CTX,
      error: { code: "PAAS_BACKUP_UNEXPECTED", message: expect.stringMatching(/stopped before it finished/) },
    });
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
    // No staged artifact, sidecar or lock of the run is left; nothing was committed.
    expect(readdirSync(join(sb.backupRoot, CTX))).toEqual([]);

    const human = await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"], {
      env: stalled,
    });
    expect(human.code).toBe(1);
    expect(human.stderr).toMatch(/snapshot: unexpected failure: the command stopped before it finished/);
    expect(human.stderr).toContain("code: PAAS_BACKUP_UNEXPECTED (exit 1)");

    // The same snapshot without the stall runs as usual: the lock was released.
    const ok = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(9);
  });
});
