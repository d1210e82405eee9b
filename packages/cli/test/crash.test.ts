import { describe, it, expect } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tmpdir } from "node:os";
import { BLOCK_FILE } from "@paas-backup/core/records";
import { CLI, makeSandbox, runCli, treeHashes, type CliResult, type Sandbox } from "./helpers.js";

/**
 * Issue 9 §1 through the built CLI: SIGKILL right after each rename a restore or a rollback
 * makes (journal writes included), then the next command recovers. The kill point comes from a
 * test-only preload that wraps fs.promises.rename; the product has no test knob.
 */
const CTX = "internal-dogfood";
const PRELOAD = resolve(import.meta.dirname, "kill-preload.mjs");

function runKillable(
  args: string[],
  env: Record<string, string>,
): Promise<CliResult & { signal: NodeJS.Signals | null }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ["--import", PRELOAD, CLI, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env },
      cwd: tmpdir(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("close", (code, signal) => {
      let json: any = null;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = null;
      }
      done({ code: code ?? -1, signal, stdout, stderr, json });
    });
  });
}

function inode(path: string): number {
  return statSync(path).ino;
}

/** the state a user compares: every file of the context, its vault's inodes */
function observe(sb: Sandbox) {
  const ctx = sb.state.contextDir(CTX);
  return {
    files: existsSync(ctx) ? treeHashes(ctx) : new Map<string, string>(),
    vaultDir: existsSync(join(ctx, "vault")) ? inode(join(ctx, "vault")) : -1,
    vaultFile: existsSync(join(ctx, "vault", "secrets.env")) ? inode(join(ctx, "vault", "secrets.env")) : -1,
  };
}

function withoutAudit(files: Map<string, string>): Map<string, string> {
  return new Map([...files].filter(([k]) => k !== "events/audit.jsonl" && k !== BLOCK_FILE));
}

function leftovers(sb: Sandbox): string[] {
  const work = join(sb.stateRoot, ".paas-backup");
  const out: string[] = [];
  for (const sub of ["staging", "journal"]) {
    const dir = join(work, sub);
    if (existsSync(dir)) out.push(...readdirSync(dir).map((n) => `${sub}/${n}`));
  }
  return out;
}

async function prepared(): Promise<{ sb: Sandbox; snapshotId: string; snapshotTargets: string }> {
  const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000, releases: 1 }]);
  const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  expect(snap.code, snap.stderr).toBe(0);
  const ctx = sb.state.contextDir(CTX);
  const snapshotTargets = treeHashes(ctx).get("targets.json")!;
  // damage the live context after the snapshot, and add a file the snapshot does not cover
  writeFileSync(
    join(ctx, "targets.json"),
    `${JSON.stringify({ current_target: "broken", targets: [] }, null, 2)}\n`,
  );
  writeFileSync(join(ctx, "operator-notes.txt"), "kept by every restore\n", { mode: 0o600 });
  return { sb, snapshotId: snap.json.data[0].id, snapshotTargets };
}

describe("a kill at any rename of restore or rollback is recovered by the next command", () => {
  it("restore: killed after each rename, then `doctor` undoes or completes the swap, vault in place by inode", async () => {
    // The reference run: how many renames a restore makes, and what it leaves.
    const ref = await prepared();
    const counted = await runKillable(
      [...ref.sb.flags, "--json", "restore", "--context", CTX, "--ticket", "INC-REF", "--yes"],
      { PB_COUNT_RENAMES: "1" },
    );
    expect(counted.code, counted.stderr).toBe(0);
    const total = Number(/renames: (\d+)/.exec(counted.stderr)![1]);
    ref.sb.cleanup();
    expect(total).toBeGreaterThanOrEqual(5);

    const seen = new Set<string>();
    for (let k = 1; k <= total; k++) {
      const { sb, snapshotTargets } = await prepared();
      try {
        const before = observe(sb);
        // what the restore makes of this context: the snapshot's targets.json, everything else as it is
        const restoredState = withoutAudit(new Map([...before.files, ["targets.json", snapshotTargets]]));
        const killed = await runKillable(
          [...sb.flags, "--json", "restore", "--context", CTX, "--ticket", `INC-K${k}`, "--yes"],
          { PB_KILL_AFTER_RENAME: String(k) },
        );
        expect(killed.signal, `kill after rename ${k}: ${killed.stderr}`).toBe("SIGKILL");

        // the next command that touches the context finishes or undoes the swap, and says which
        const next = await runCli([...sb.flags, "--json", "doctor", "--context", CTX]);
        const after = observe(sb);
        expect(leftovers(sb), `k=${k}`).toEqual([]);
        expect(after.vaultDir, `k=${k}: vault folder is the same inode`).toBe(before.vaultDir);
        expect(after.vaultFile, `k=${k}: vault file is the same inode`).toBe(before.vaultFile);
        expect(after.files.get("vault/secrets.env")).toBe(before.files.get("vault/secrets.env"));
        expect(after.files.get("operator-notes.txt"), `k=${k}: uncovered file kept`).toBe(
          before.files.get("operator-notes.txt"),
        );
        expect(after.files.get("alerts/telegram.json"), `k=${k}`).toBe(
          before.files.get("alerts/telegram.json"),
        );
        const recovered = /recovery: an interrupted restore of \S+ \(([^)]*)\) was (undone|completed)/.exec(
          next.stderr,
        );
        if (
          recovered?.[2] === "undone" ||
          (!recovered && after.files.get("targets.json") === before.files.get("targets.json"))
        ) {
          // old state, byte for byte, and nothing blocks it
          expect(after.files, `k=${k}`).toEqual(before.files);
          expect(next.code, `k=${k}: ${next.stdout}`).toBe(0);
          seen.add("undone");
        } else {
          // new state; validation did not (all) run, so unless it finished the context is blocked
          expect(withoutAudit(after.files), `k=${k}`).toEqual(restoredState);
          if (after.files.has(BLOCK_FILE)) {
            expect(next.code, `k=${k}: a context whose validation never ran is blocked`).toBe(5);
            expect(next.json.checks.find((c: any) => c.name === "not_blocked").ok).toBe(false);
            seen.add("completed-blocked");
          } else seen.add("completed-validated");
          if (recovered) {
            const incidents = readdirSync(join(sb.backupRoot, CTX, "incidents")).filter((n) =>
              n.includes("-recovery-"),
            );
            expect(incidents.length, `k=${k}`).toBe(1);
            const record = JSON.parse(
              readFileSync(join(sb.backupRoot, CTX, "incidents", incidents[0]!), "utf8"),
            );
            expect(record).toMatchObject({
              kind: "recovery",
              ticket: `INC-K${k}`,
              recovery: { operation: "restore", action: "completed" },
            });
          }
          // and the operator can always go back
          const rb = await runCli([
            ...sb.flags,
            "--json",
            "rollback",
            "--context",
            CTX,
            "--ticket",
            `INC-K${k}`,
          ]);
          expect(rb.code, `k=${k}: ${rb.stdout}${rb.stderr}`).toBe(0);
          const back = observe(sb);
          expect(withoutAudit(back.files), `k=${k}`).toEqual(withoutAudit(before.files));
          expect(back.vaultFile).toBe(before.vaultFile);
        }
        // and a restore afterwards works (every few kill points: each run costs seconds)
        if (k % 4 !== 0 && k !== total) continue;
        const again = await runCli([
          ...sb.flags,
          "--json",
          "restore",
          "--context",
          CTX,
          "--ticket",
          `INC-A${k}`,
          "--yes",
        ]);
        expect(again.code, `k=${k}: ${again.stdout}${again.stderr}`).toBe(0);
        expect(observe(sb).vaultFile).toBe(before.vaultFile);
      } finally {
        sb.cleanup();
      }
    }
    expect(seen.has("undone")).toBe(true);
    expect(seen.has("completed-blocked")).toBe(true);
  }, 900_000);

  it("rollback: killed after each rename, then the next command completes or undoes it", async () => {
    const setup = async () => {
      const { sb } = await prepared();
      const before = observe(sb);
      const r = await runCli([
        ...sb.flags,
        "--json",
        "restore",
        "--context",
        CTX,
        "--ticket",
        "INC-R",
        "--yes",
      ]);
      expect(r.code, r.stdout).toBe(0);
      return { sb, before, restored: observe(sb) };
    };
    const ref = await setup();
    const counted = await runKillable(
      [...ref.sb.flags, "--json", "rollback", "--context", CTX, "--ticket", "INC-R"],
      { PB_COUNT_RENAMES: "1" },
    );
    expect(counted.code, counted.stderr).toBe(0);
    const total = Number(/renames: (\d+)/.exec(counted.stderr)![1]);
    ref.sb.cleanup();
    expect(total).toBeGreaterThanOrEqual(4);
    for (let k = 1; k <= total; k++) {
      const { sb, before, restored } = await setup();
      try {
        const killed = await runKillable(
          [...sb.flags, "--json", "rollback", "--context", CTX, "--ticket", "INC-R"],
          { PB_KILL_AFTER_RENAME: String(k) },
        );
        expect(killed.signal, `k=${k}`).toBe("SIGKILL");
        // tick is a command that touches the context too: it recovers first, then snapshots
        const tick = await runCli([...sb.flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"]);
        expect(tick.code, `k=${k}: ${tick.stdout}`).toBe(0);
        expect(tick.json.data.map((o: any) => o.context)).toEqual([CTX]);
        const after = observe(sb);
        expect(leftovers(sb), `k=${k}`).toEqual([]);
        expect(after.vaultDir, `k=${k}`).toBe(before.vaultDir);
        expect(after.vaultFile, `k=${k}`).toBe(before.vaultFile);
        const rolledBack = after.files.get("targets.json") === before.files.get("targets.json");
        if (rolledBack) expect(withoutAudit(after.files), `k=${k}`).toEqual(withoutAudit(before.files));
        else expect(withoutAudit(after.files), `k=${k}`).toEqual(withoutAudit(restored.files));
      } finally {
        sb.cleanup();
      }
    }
  }, 900_000);

  it("tick --all-contexts never reports ok over a context a killed restore left missing", async () => {
    const { sb } = await prepared();
    try {
      // kill right after the live context was renamed aside (the journal write is rename 1, the move aside rename 2)
      let k = 1;
      for (; k < 10; k++) {
        const probe = await prepared();
        const killed = await runKillable(
          [...probe.sb.flags, "restore", "--context", CTX, "--ticket", "INC-P", "--yes"],
          { PB_KILL_AFTER_RENAME: String(k) },
        );
        const missing = killed.signal === "SIGKILL" && !existsSync(probe.sb.state.contextDir(CTX));
        probe.sb.cleanup();
        if (missing) break;
      }
      expect(k).toBeLessThan(10);
      const killed = await runKillable(
        [...sb.flags, "restore", "--context", CTX, "--ticket", "INC-M", "--yes"],
        { PB_KILL_AFTER_RENAME: String(k) },
      );
      expect(killed.signal).toBe("SIGKILL");
      expect(existsSync(sb.state.contextDir(CTX))).toBe(false);
      const tick = await runCli([...sb.flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"]);
      expect(tick.code, tick.stdout).toBe(0);
      expect(tick.json.count).toBe(1);
      expect(tick.json.data[0]).toMatchObject({
        context: CTX,
        ok: true,
        action: expect.stringMatching(/full|incremental|none/),
      });
      expect(tick.stderr).toMatch(/recovery: an interrupted restore of internal-dogfood .* was undone/);
      expect(existsSync(join(sb.state.contextDir(CTX), "vault", "secrets.env"))).toBe(true);
    } finally {
      sb.cleanup();
    }
  });
});

describe("hostile snapshots are refused before anything changes", () => {
  it("an artifact replaced after its checksum file was written is refused (exit 3), nothing changes", async () => {
    const sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
    try {
      const a = (await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]))
        .json.data[0];
      writeFileSync(
        join(sb.state.contextDir(CTX), "deployments.json"),
        `${JSON.stringify({ apps: {} }, null, 2)}\n`,
      );
      const b = (await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]))
        .json.data[0];
      // B's artifact swapped for A's bytes: a well-formed archive, just not the one B's checksum names
      writeFileSync(b.artifact, readFileSync(a.artifact));
      const before = treeHashes(sb.stateRoot);
      const r = await runCli([
        ...sb.flags,
        "--json",
        "restore",
        "--context",
        CTX,
        "--snapshot",
        b.id,
        "--ticket",
        "INC-SW",
        "--yes",
      ]);
      expect(r.code, r.stdout).toBe(3);
      expect(r.json.error.code).toBe("PAAS_BACKUP_CHECKSUM_MISMATCH");
      expect(r.json.error.remediation).toContain(a.id);
      expect(treeHashes(sb.stateRoot, (rel) => rel.startsWith(".paas-backup"))).toEqual(
        new Map([...before].filter(([k]) => !k.startsWith(".paas-backup"))),
      );
      expect(leftovers(sb)).toEqual([]);
    } finally {
      sb.cleanup();
    }
  });
});
