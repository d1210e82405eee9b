import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, runCli, makeSandbox, sh, untilArchiving, type Sandbox } from "./helpers.js";
import { humanBytes } from "../src/render/text.js";

/** Issue 25 §2: what a new operator reads, as the built CLI prints it. */
const CTX = "internal-dogfood";

function underPty(args: string[], env: Record<string, string> = {}): { status: number | null; out: string } {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");
  const r = spawnSync("script", ["-qec", cmd, "/dev/null"], {
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: "xterm", ...env },
  });
  return { status: r.status, out: r.stdout };
}

describe("messages an operator reads", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 20_000 }]);
  });
  afterAll(() => sb.cleanup());

  it("tick says 'an incremental' and an hour is '60 min old'", async () => {
    const first = await runCli([...sb.flags, "tick", "--context", CTX, "--insecure-plaintext"], {
      env: { PAAS_BACKUP_NOW: "2026-11-24T10:00:00Z" },
    });
    expect(first.stdout).toContain(`${CTX}: took a full snapshot`);
    const second = await runCli([...sb.flags, "tick", "--context", CTX, "--insecure-plaintext"], {
      env: { PAAS_BACKUP_NOW: "2026-11-24T11:00:00Z" },
    });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`${CTX}: took an incremental snapshot: newest snapshot is 60 min old`);
  });

  it("keygen's refusal to overwrite names --force", async () => {
    const out = join(sb.dir, "identity.txt");
    expect((await runCli([...sb.flags, "keygen", "--out", out])).code).toBe(0);
    const again = await runCli([...sb.flags, "keygen", "--out", out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/never overwrites a key unless given --force/);
    expect(again.stderr).toMatch(/pass --force/);
    expect((await runCli([...sb.flags, "keygen", "--out", out, "--force"])).code).toBe(0);
  });

  it("rates are rounded: whole bytes, one decimal for larger units", () => {
    expect(humanBytes(662.7906976744187)).toBe("663 B");
    expect(humanBytes(1536)).toBe("1.5 KiB");
    const snap = underPty([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.status, snap.out).toBe(0);
    const bar = snap.out.split(/\r|\n/).filter((l) => l.includes(`snapshot ${CTX} [`));
    expect(bar.length).toBeGreaterThan(0);
    for (const line of bar) expect(line).not.toMatch(/\d\.\d{2,}/);
  });
});

/** `cli args | reader` in bash: the CLI's exit status and what it printed on stderr. */
function piped(args: string[], reader: string, env: Record<string, string> = {}) {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");
  const r = spawnSync("bash", ["-c", `${cmd} 2>"$ERR" | ${reader} >/dev/null; echo "\${PIPESTATUS[0]}"`], {
    encoding: "utf8",
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ERR: join(env.TMPDIR ?? tmpdir(), "stderr"),
      ...env,
    },
  });
  return {
    status: Number(r.stdout.trim()),
    stderr: spawnSync("cat", [join(env.TMPDIR ?? tmpdir(), "stderr")], { encoding: "utf8" }).stdout,
  };
}

describe("a closed pipe, Ctrl-C and scratch folders", () => {
  let sb: Sandbox;
  let tmp: string;
  beforeAll(async () => {
    sb = await makeSandbox([{ name: CTX, eventBytes: 3 * 1024 * 1024 }]);
    tmp = mkdtempSync(join(tmpdir(), "pb-tmpdir-"));
  });
  afterAll(() => {
    sb.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("piping into head (or a reader that is gone) ends quietly: exit 0, no stack, no PAAS_BACKUP_UNEXPECTED", async () => {
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code, snap.stderr).toBe(0);
    const offsite = join(sb.dir, "offsite");
    const push = await runCli([
      ...sb.flags,
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      `file://${offsite}`,
      "--allow-plaintext",
    ]);
    expect(push.code, push.stderr).toBe(0);
    const env = { TMPDIR: tmp };
    const runs = [
      piped([...sb.flags, "offsite", "list", "--context", CTX, "--to", `file://${offsite}`], "true", env),
      piped([...sb.flags, "offsite", "list", "--context", CTX, "--to", `file://${offsite}`], "head -1", env),
      piped([...sb.flags, "dump", "--context", CTX, "events/audit.jsonl"], "head -1", env),
      piped([...sb.flags, "dump", "--context", CTX, "events/audit.jsonl"], "true", env),
      piped([...sb.flags, "list", "--context", CTX], "true", env),
      piped([...sb.flags, "--json", "list", "--context", CTX], "true", env),
      piped([...sb.flags, "ls", "--context", CTX, "--long"], "true", env),
    ];
    for (const r of runs) {
      expect(r.stderr).not.toMatch(/EPIPE|UNEXPECTED|at .*\.js:\d+/);
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it("ls, dump and diff leave no paas-backup-inspect-* folder in the temporary directory", async () => {
    const env = { TMPDIR: tmp };
    const before = readdirSync(tmp).filter((n) => n.startsWith("paas-backup-inspect-"));
    expect((await runCli([...sb.flags, "ls", "--context", CTX], { env })).code).toBe(0);
    const dump = await runCli([...sb.flags, "dump", "--context", CTX, "config.json"], { env });
    expect(dump.code, dump.stderr).toBe(0);
    const diff = await runCli([...sb.flags, "diff", "--context", CTX, "latest", "--live"], { env });
    expect(diff.code, diff.stderr).toBe(0);
    expect(readdirSync(tmp).filter((n) => n.startsWith("paas-backup-inspect-"))).toEqual(before);
  });

  it("Ctrl-C mid-snapshot on a terminal: exit 130, 'interrupted: nothing was kept', no .lock or .partial left", async () => {
    // large enough that the snapshot is still archiving when the key is pressed
    const big = await makeSandbox([{ name: CTX, eventBytes: 60 * 1024 * 1024 }]);
    try {
      await interruptSnapshot(big);
    } finally {
      big.cleanup();
    }
  }, 120_000);
});

async function interruptSnapshot(sb: Sandbox): Promise<void> {
  await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
  const dir = join(sb.backupRoot, CTX);
  const listing = () => readdirSync(dir).sort();
  const before = listing();
  const cmd = [process.execPath, CLI, ...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]
    .map((a) => `'${a}'`)
    .join(" ");
  // Ctrl-C typed at the terminal: the pty's line discipline turns it into SIGINT for the run.
  const child = spawn("script", ["-qec", cmd, "/dev/null"], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: "xterm" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (c) => (out += c));
  const ended = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  expect(await untilArchiving(child, dir)).toBe(true);
  expect(readdirSync(dir)).toContain(".lock");
  child.stdin.write("\x03");
  expect(await ended, out).toBe(130);
  expect(out).toContain("paas-backup snapshot: interrupted: nothing was kept");
  expect(listing()).toEqual(before);
  expect(listing().filter((n) => n === ".lock" || n.endsWith(".partial") || n.endsWith(".tmp"))).toEqual([]);
  // and the next run is not held up by what the interrupted one left
  const next = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  expect(next.code, next.stderr).toBe(0);
}

describe("tables, dry runs and fleet messages name everything in full", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await makeSandbox([
      { name: CTX, eventBytes: 200_000 },
      { name: "acme-prod", eventBytes: 10_000 },
    ]);
  });
  afterAll(() => sb.cleanup());

  it("status shows whole ids on a 220-column terminal; verify and offsite push print cut problems and ids in full below", async () => {
    for (const at of ["2027-01-15T09:00:00Z", "2027-01-15T10:00:00Z"])
      expect(
        (
          await runCli([...sb.flags, "snapshot", "--context", CTX, "--insecure-plaintext"], {
            env: { PAAS_BACKUP_NOW: at },
          })
        ).code,
      ).toBe(0);
    const inc = await runCli(
      [...sb.flags, "--json", "snapshot", "--context", CTX, "--kind", "incremental", "--insecure-plaintext"],
      { env: { PAAS_BACKUP_NOW: "2027-01-15T11:00:00Z" } },
    );
    const ids = (await runCli([...sb.flags, "--json", "list", "--context", CTX])).json.data.map(
      (d: any) => d.id,
    );
    expect(ids).toContain(inc.json.data[0].id);
    const cmd = [process.execPath, CLI, ...sb.flags, "status"].map((a) => `'${a}'`).join(" ");
    const status = spawnSync("script", ["-qec", `stty cols 220; ${cmd}`, "/dev/null"], {
      encoding: "utf8",
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        TERM: "xterm",
        PAAS_BACKUP_NOW: "2027-01-15T11:05:00Z",
      },
    });
    expect(status.stdout).toContain("20270115T100000Z");
    expect(status.stdout).toContain(inc.json.data[0].id);
    expect(status.stdout).not.toMatch(/2027011\d*…/);

    // list and verify at 100 columns: ids whole; the failure's full text below the table
    const list = await runCli([...sb.flags, "list", "--context", CTX]);
    for (const id of ids) expect(list.stdout).toContain(id);
    const newest = join(sb.backupRoot, CTX, "20270115T100000Z.tar.gz");
    const bytes = readFileSync(newest);
    bytes.fill(0, 200, 260);
    chmodSync(newest, 0o600);
    writeFileSync(newest, bytes);
    // a checksum rewritten to match: the long "is corrupt" text is what the table has to cut
    chmodSync(`${newest}.sha256`, 0o600);
    writeFileSync(`${newest}.sha256`, sh("sha256sum", ["20270115T100000Z.tar.gz"], join(sb.backupRoot, CTX)));
    const verify = await runCli([...sb.flags, "verify", "--context", CTX, "--all", "--deep"]);
    expect(verify.code).toBe(3);
    const text = verify.stdout.replace(/\n {2}/g, " ");
    expect(text).toContain(
      `20270115T100000Z deep: FAILED: archive ${newest} is corrupt: gzip member 1 does not inflate`,
    );
    expect(verify.stdout).toMatch(/FAILED: arc.*…/); // cut in the table, whole below it
    for (const line of verify.stdout.split("\n")) expect(line.length, line).toBeLessThanOrEqual(100);

    const offsite = join(sb.dir, "an-offsite-target-with-a-rather-long-folder-name");
    const push = await runCli([
      ...sb.flags,
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      `file://${offsite}`,
      "--allow-plaintext",
    ]);
    const pushed = push.stdout.replace(/\n {2}/g, " ");
    expect(pushed).toContain(`${CTX} pushed: 20270115T090000Z`);
    expect(pushed).toContain(`${CTX} target: file://${offsite}`);
  });

  it("restore --dry-run names every file it would add, change, move aside and keep", async () => {
    const ctx = sb.state.contextDir("acme-prod");
    expect(
      (await runCli([...sb.flags, "snapshot", "--context", "acme-prod", "--insecure-plaintext"])).code,
    ).toBe(0);
    writeFileSync(join(ctx, "deployments.json"), '{"changed": true}\n');
    rmSync(join(ctx, "config.json"));
    const dry = await runCli([
      ...sb.flags,
      "restore",
      "--context",
      "acme-prod",
      "--ticket",
      "INC-D",
      "--dry-run",
    ]);
    const json = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      "acme-prod",
      "--ticket",
      "INC-D",
      "--dry-run",
    ]);
    const changes = json.json.data[0].changes;
    expect(changes.added).toContain("config.json");
    expect(changes.changed).toContain("deployments.json");
    expect(dry.stdout).toMatch(new RegExp(`^added: +${changes.added.length}: .*config\\.json`, "m"));
    expect(dry.stdout).toMatch(new RegExp(`^changed: +${changes.changed.length}: .*deployments\\.json`, "m"));
    for (const path of [...changes.added, ...changes.changed, ...changes.removed, ...changes.kept])
      expect(dry.stdout).toContain(path);
  });

  it("tick --all-contexts names the context of a redaction, and --json does not blame entries that are ok", async () => {
    const token = "ghp_R4nd0mF4k3T0k3nF0rT3st1ngPurp0s3s123";
    appendFileSync(
      join(sb.state.contextDir("acme-prod"), "events", "deployments.jsonl"),
      `${JSON.stringify({ timestamp: "2027-01-16T09:00:00Z", context: "acme-prod", source: "si paas", command: "deploy", status: "failed", error_message: `git clone https://${token}@github.com/acme/web.git` })}\n`,
    );
    const env = { PAAS_BACKUP_NOW: "2027-01-16T10:00:00Z" };
    const human = await runCli([...sb.flags, "tick", "--all-contexts", "--insecure-plaintext"], { env });
    expect(human.code, human.stderr).toBe(9);
    expect(human.stderr).toContain("snapshot of acme-prod taken with redactions");
    expect(human.stderr).not.toContain(`snapshot of ${CTX} taken`);
    expect(human.stdout + human.stderr).not.toContain(token);
    const json = await runCli([...sb.flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"], {
      env: { PAAS_BACKUP_NOW: "2027-01-17T10:00:00Z" },
    });
    expect(json.code).toBe(9);
    expect(json.json.data.every((d: any) => d.ok)).toBe(true);
    expect(json.json.error.code).toBe("PAAS_BACKUP_REDACTED");
    expect(json.json.error.message).toContain("acme-prod");
    expect(json.json.error.remediation).not.toMatch(/not ok/);
  });

  it("bash completion offers context names after --context and snapshot ids after --snapshot and for diff", async () => {
    const bin = mkdtempSync(join(tmpdir(), "pb-bin-"));
    try {
      // `paas-backup` on PATH, as installed: the script calls it for the words
      writeFileSync(join(bin, "paas-backup"), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`, {
        mode: 0o755,
      });
      const script = join(bin, "completion.bash");
      writeFileSync(script, (await runCli(["completion", "bash"])).stdout);
      const ids = (await runCli([...sb.flags, "--json", "list", "--context", CTX])).json.data
        .map((d: any) => d.id)
        .reverse();
      const complete = (words: string[]) =>
        spawnSync(
          "bash",
          [
            "-c",
            `source ${script}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _paas_backup; echo "\${COMPREPLY[*]}"`,
          ],
          { encoding: "utf8", env: { PATH: `${bin}:${process.env.PATH}`, HOME: process.env.HOME } },
        ).stdout.trim();
      expect(complete(["paas-backup", ...sb.flags, "list", "--context", ""])).toBe(`acme-prod ${CTX}`);
      expect(complete(["paas-backup", ...sb.flags, "list", "--context", "ac"])).toBe("acme-prod");
      expect(complete(["paas-backup", ...sb.flags, "restore", "--context", CTX, "--snapshot", ""])).toBe(
        [...ids, "latest"].join(" "),
      );
      expect(complete(["paas-backup", ...sb.flags, "diff", "--context", CTX, ids[1]!, ""])).toBe(
        [...ids, "latest"].join(" "),
      );
      expect(complete(["paas-backup", ...sb.flags, "list", "--con"]).split(" ")).toContain("--context");
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it("drill status --context <typo> is the unknown-context error, not an overdue row", async () => {
    const typo = await runCli([...sb.flags, "drill", "status", "--context", "acme-prdo"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("PAAS_BACKUP_CONTEXT_NOT_FOUND");
    expect(typo.stdout).not.toMatch(/overdue/i);
    const known = await runCli([...sb.flags, "drill", "status", "--context", "acme-prod"]);
    expect([0, 8]).toContain(known.code);
  });
});
