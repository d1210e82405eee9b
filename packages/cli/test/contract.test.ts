import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFileSync } from "node:child_process";
import { appendFileSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { runCli, makeSandbox, type Sandbox, type CliResult } from "./helpers.js";
import { COMMANDS, commandName } from "../dist/spec.js";
import { exitTable } from "../dist/exit-codes.js";
import { renderReference } from "../dist/reference.js";

/**
 * Issue 13 §1-§3: the CLI as a contract. Every command of the table runs succeeding and failing
 * through the built CLI, and each run must print exactly one JSON document in the envelope.
 */
const CTX = "internal-dogfood";

function checkEnvelope(r: CliResult, command: string) {
  // exactly one JSON document: the whole of stdout parses as one value
  expect(r.json, `${command}: stdout is one JSON document (got ${r.stdout.slice(0, 200)})`).not.toBeNull();
  expect(r.json.command).toBe(command);
  expect(typeof r.json.ok).toBe("boolean");
  expect(typeof r.json.context).toBe("string");
  expect(typeof r.json.mode).toBe("string");
  if (r.json.ok) {
    expect(r.code).toBe(0);
    const list = r.json.checks ?? r.json.data;
    expect(Array.isArray(list)).toBe(true);
    expect(r.json.count).toBe(list.length);
  } else {
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(1); // a failure we provoke is never "a bug"
    expect(Object.keys(r.json.error).sort()).toEqual(["code", "message", "remediation", "stage", "target"]);
    expect(r.json.error.code).toMatch(/^PAAS_BACKUP_[A-Z_]+$/);
    expect(r.json.error.message.length).toBeGreaterThan(0);
    expect(r.json.error.remediation.length).toBeGreaterThan(0);
  }
}

describe("one envelope, every command, every outcome", () => {
  let sb: Sandbox;
  let ids: string[] = [];
  let identity = "";
  beforeAll(async () => {
    sb = await makeSandbox();
    identity = join(sb.dir, "keys", "id.txt");
    await runCli([...sb.flags, "keygen", "--out", identity]);
    const full = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    appendFileSync(
      join(sb.state.contextDir(CTX), "events", "audit.jsonl"),
      '{"ts":"2026-11-24T10:00:00Z","kind":"audit","msg":"one"}\n{"ts":"2026-11-24T10:00:01Z","kind":"audit","msg":"two"}\n',
    );
    const inc = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--kind",
      "incremental",
      "--insecure-plaintext",
    ]);
    ids = [full.json.data[0].id, inc.json.data[0].id];
  }, 60_000);
  afterAll(() => sb.cleanup());

  it("names the command itself, also when parsing fails", async () => {
    const r = await runCli(["--json", "snapshot", "--recipent", "x"]);
    checkEnvelope(r, "snapshot");
    expect(r.code).toBe(2);
    const g = await runCli(["--json", "offsite", "push", "--bogus"]);
    checkEnvelope(g, "offsite push");
    const d = await runCli(["--json", "drill", "status", "--nope"]);
    checkEnvelope(d, "drill status");
    // no command at all: still exactly one document, a usage error
    for (const args of [["--json"], ["--json", "--state-root", "/nonexistent"], ["--json", "frobnicate"]]) {
      const n = await runCli(args);
      checkEnvelope(n, "");
      expect(n.code).toBe(2);
    }
  });

  it("succeeds and fails with the envelope for every command of the table", async () => {
    const off = `file://${join(sb.dir, "offsite")}`;
    const F = sb.flags;
    // [command, arguments that succeed, arguments that fail]; every command of the table appears.
    const runs: Record<string, [string[] | null, string[]]> = {
      snapshot: [
        ["snapshot", "--context", CTX, "--insecure-plaintext"],
        ["snapshot", "--context", "no-such", "--insecure-plaintext"],
      ],
      list: [
        ["list", "--context", CTX],
        ["list", "--context", "no-such"],
      ],
      verify: [
        ["verify", "--context", CTX, "--all"],
        ["verify", "--context", CTX, "--snapshot", "19990101T000000Z"],
      ],
      restore: [
        ["restore", "--context", CTX, "--ticket", "T-1", "--dry-run"],
        ["restore", "--context", CTX],
      ],
      ls: [
        ["ls", "--context", CTX, "--snapshot", ids[1]!],
        ["ls", "--context", CTX, "--snapshot", "nope"],
      ],
      dump: [null, ["dump", "--context", CTX, "config.json"]],
      diff: [
        ["diff", "--context", CTX, ids[0]!, ids[1]!],
        ["diff", "--context", CTX, ids[0]!, ids[1]!, "--live"],
      ],
      find: [
        ["find", "--context", CTX, "config.json"],
        ["find", "--context", "no-such", "config.json"],
      ],
      prune: [
        ["prune", "--context", CTX, "--dry-run"],
        ["prune", "--context", CTX, "--keep-daily", "abc"],
      ],
      tick: [["tick", "--context", CTX, "--insecure-plaintext"], ["tick"]],
      "offsite push": [
        ["offsite", "push", "--context", CTX, "--to", off, "--allow-plaintext"],
        ["offsite", "push", "--context", CTX, "--to", off, "--lock-days", "-1"],
      ],
      "offsite list": [
        ["offsite", "list", "--context", CTX, "--to", off],
        ["offsite", "list", "--context", CTX, "--to", off, "--lock-days", "3"],
      ],
      "offsite verify": [
        ["offsite", "verify", "--context", CTX, "--to", off],
        ["offsite", "verify", "--context", CTX],
      ],
      "offsite extend-locks": [
        ["offsite", "extend-locks", "--context", CTX, "--to", off],
        ["offsite", "extend-locks", "--context", CTX, "--to", off, "--lock-days", "x"],
      ],
      status: [null, ["status", "--context", "../x"]],
      "offsite prune": [
        ["offsite", "prune", "--context", CTX, "--to", off, "--dry-run"],
        ["offsite", "prune", "--context", CTX, "--to", "ftp://x"],
      ],
      drill: [
        ["drill", "--context", CTX],
        ["drill", "--context", CTX, "--identity", join(sb.dir, "missing-identity.txt")],
      ],
      "drill status": [
        ["drill", "status", "--context", CTX],
        ["drill", "status", "--context", "../x"],
      ],
      doctor: [null, ["doctor", "--context", "no-such"]],
      unblock: [
        ["unblock", "--context", CTX, "--ticket", "T-2"],
        ["unblock", "--context", CTX],
      ],
      rollback: [null, ["rollback", "--context", CTX]],
      keygen: [
        ["keygen", "--out", join(sb.dir, "keys", "second.txt")],
        ["keygen", "--out", identity],
      ],
      report: [
        ["report", "--context", CTX, "--period", "2026-Q4"],
        ["report", "--context", CTX, "--period", "2026-Q5"],
      ],
      "keys audit": [
        ["keys", "audit", "--context", CTX, "--identity", identity],
        ["keys", "audit", "--context", CTX],
      ],
      "keys rotate": [
        [
          "keys",
          "rotate",
          "--context",
          CTX,
          "--add-recipient",
          "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
          "--identity",
          identity,
        ],
        ["keys", "rotate", "--context", CTX, "--identity", identity],
      ],
      "schedule install": [
        ["schedule", "install", "--cron", "--cron-file", join(sb.dir, "crontab")],
        ["schedule", "install", "--cron", "--systemd"],
      ],
      "schedule status": [
        ["schedule", "status", "--cron", "--cron-file", join(sb.dir, "crontab")],
        ["schedule", "status"],
      ],
      "schedule remove": [
        ["schedule", "remove", "--cron", "--cron-file", join(sb.dir, "crontab")],
        ["schedule", "remove", "--system", "--user", "--cron"],
      ],
      demo: [null, ["demo", "--nope"]],
      completion: [null, ["completion", "tcsh"]],
    };
    expect(Object.keys(runs).sort()).toEqual(COMMANDS.map(commandName).sort());
    for (const [name, [good, bad]] of Object.entries(runs)) {
      if (good) {
        const r = await runCli([...F, "--json", ...good]);
        checkEnvelope(r, name);
        expect(r.json.ok, `${name} should succeed: ${r.stdout.slice(0, 400)}`).toBe(true);
      }
      const f = await runCli([...F, "--json", ...bad]);
      checkEnvelope(f, name);
      expect(f.json.ok, `${name} should fail`).toBe(false);
    }
  }, 240_000);

  it("fulls have parent null; drill status names the record of the last drill; prune's count is its data's length", async () => {
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.data[0].parent).toBeNull();
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.json.data[0]).toHaveProperty("parent", null);
    await runCli([...sb.flags, "drill", "--context", CTX]);
    const status = await runCli([...sb.flags, "--json", "drill", "status", "--context", CTX]);
    const record = status.json.data.find((s: { context: string }) => s.context === CTX).lastDrill.record;
    expect(record).toMatch(/drills\/.+\.json$/);
    expect(JSON.parse(readFileSync(record, "utf8")).kind).toBe("drill");
    const prune = await runCli([...sb.flags, "--json", "prune", "--context", CTX, "--dry-run"]);
    expect(prune.json.count).toBe(prune.json.data.length);
  }, 60_000);

  it("the same condition has the same exit code: a missing or wrong identity is 4 in drill as in restore", async () => {
    const enc = await makeSandbox();
    try {
      const key = join(enc.dir, "k", "id.txt");
      const other = join(enc.dir, "k", "other.txt");
      const k = await runCli([...enc.flags, "--json", "keygen", "--out", key]);
      await runCli([...enc.flags, "keygen", "--out", other]);
      expect(
        (await runCli([...enc.flags, "snapshot", "--context", CTX, "--recipient", k.json.data[0].recipient]))
          .code,
      ).toBe(0);
      for (const id of [other, join(enc.dir, "k", "absent.txt")]) {
        const restore = await runCli([
          ...enc.flags,
          "--json",
          "restore",
          "--context",
          CTX,
          "--ticket",
          "T",
          "--yes",
          "--identity",
          id,
        ]);
        const drill = await runCli([...enc.flags, "--json", "drill", "--context", CTX, "--identity", id]);
        expect(restore.code).toBe(4);
        expect(drill.code).toBe(4);
        expect(drill.json.error.code).toBe(restore.json.error.code);
      }
      const none = await runCli([...enc.flags, "--json", "drill", "--context", CTX]);
      expect(none.code).toBe(4);
      expect(none.json.error.code).toBe("PAAS_BACKUP_IDENTITY_REQUIRED");
    } finally {
      enc.cleanup();
    }
  }, 90_000);
});

describe("help, version, completion and the README", () => {
  it("--version prints the version; no arguments prints the usage", async () => {
    const v = await runCli(["--version"]);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const u = await runCli([]);
    expect(u.code).toBe(0);
    expect(u.stdout).toContain("Usage: paas-backup");
    for (const spec of COMMANDS) if (spec.path.length === 1) expect(u.stdout).toContain(spec.path[0]);
    const g = await runCli(["offsite"]);
    expect(g.stdout).toContain("push");
  });

  it("each command's help describes every flag, marks required ones, shows global flags and ends with examples and exit codes", async () => {
    for (const spec of COMMANDS) {
      const r = await runCli([...spec.path, "--help"]);
      expect(r.code).toBe(0);
      const help = r.stdout;
      for (const flag of spec.flags) {
        const name = flag.flags.split(" ")[0]!;
        const line = help.split("\n").find((l) => l.trimStart().startsWith(name));
        expect(line, `${commandName(spec)} help lists ${name}`).toBeDefined();
        expect(line!.trim().length).toBeGreaterThan(flag.flags.length + 3); // a description follows
        if (flag.required)
          expect(help.slice(help.indexOf(line!), help.indexOf(line!) + 400)).toContain("(required)");
      }
      for (const global of ["--state-root", "--backup-root", "--config", "--json"])
        expect(help).toContain(global);
      const tail = help.slice(help.lastIndexOf("Examples:"));
      expect(tail).toContain(`$ ${spec.examples[0]}`);
      expect(tail).toContain("Exit codes:");
      // the help's exit codes are the table's (README and help come from the same table)
      for (const [code] of exitTable(["ok", ...spec.exitCodes]))
        expect(tail).toMatch(new RegExp(`^ +${code}  `, "m"));
    }
    const offsiteList = await runCli(["offsite", "list", "--help"]);
    expect(offsiteList.stdout).not.toContain("--lock-days");
    expect((await runCli(["offsite", "push", "--help"])).stdout).toContain("--lock-days");
  }, 60_000);

  it("completion bash is a script bash can source: complete -p paas-backup, and it completes commands and flags", async () => {
    const r = await runCli(["completion", "bash"]);
    expect(r.code).toBe(0);
    const dir = resolve(process.env.TMPDIR ?? "/tmp");
    const file = join(dir, `pb-completion-${process.pid}.bash`);
    writeFileSync(file, r.stdout);
    const out = execFileSync(
      "bash",
      [
        "-c",
        `source ${file}; complete -p paas-backup; COMP_WORDS=(paas-backup off); COMP_CWORD=1; _paas_backup; echo "\${COMPREPLY[*]}"; COMP_WORDS=(paas-backup offsite list --lo); COMP_CWORD=3; _paas_backup; echo "[\${COMPREPLY[*]}]"; COMP_WORDS=(paas-backup offsite push --lock); COMP_CWORD=3; _paas_backup; echo "\${COMPREPLY[*]}"`,
      ],
      { encoding: "utf8" },
    );
    const [complete, top, listFlags, pushFlags] = out.trim().split("\n");
    expect(complete).toContain("-F _paas_backup paas-backup");
    expect(top).toBe("offsite");
    expect(listFlags).toBe("[]"); // --lock-days is not a flag of offsite list
    expect(pushFlags).toContain("--lock-days");
    for (const shell of ["zsh", "fish"]) {
      const s = await runCli(["completion", shell]);
      expect(s.code).toBe(0);
      expect(s.stdout).toContain("paas-backup");
    }
    // zsh: the script registers paas-backup with compinit (through bashcompinit)
    const zfile = join(dir, `pb-completion-${process.pid}.zsh`);
    writeFileSync(zfile, (await runCli(["completion", "zsh"])).stdout);
    const registered = execFileSync(
      "zsh",
      ["-c", `autoload -U compinit && compinit -u; source ${zfile}; print -r -- "\${_comps[paas-backup]}"`],
      { encoding: "utf8" },
    );
    expect(registered).toContain("_paas_backup");
  });

  it("the README's CLI reference is the one generated from the command table", () => {
    const readme = readFileSync(resolve(import.meta.dirname, "../../../README.md"), "utf8");
    expect(readme).toContain(renderReference());
  });
});

describe("strict input (issue 10 §5)", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await makeSandbox();
  });
  afterAll(() => sb.cleanup());

  it("a typo at any level of the config file is exit 2 naming the key path", async () => {
    const cases: [unknown, string][] = [
      [{ retention: { dayly: 3 } }, "retention.dayly"],
      [{ offsite: { concurency: 2 } }, "offsite.concurency"],
      [
        {
          offsite: {
            targets: [{ name: "a", url: "file:///tmp/x", objectlock: { mode: "COMPLIANCE", days: 1 } }],
          },
        },
        "offsite.targets[0].objectlock",
      ],
      [
        { offsite: { targets: [{ name: "a", url: "file:///tmp/x", pathstyle: true }] } },
        "offsite.targets[0].pathstyle",
      ],
      [
        {
          offsite: {
            targets: [{ name: "a", url: "file:///tmp/x", objectLock: { mode: "COMPLIANCE", dayz: 1 } }],
          },
        },
        "offsite.targets[0].objectLock.dayz",
      ],
    ];
    mkdirSync(join(sb.dir, "cfg"), { recursive: true });
    for (const [config, path] of cases) {
      const file = join(sb.dir, "cfg", "config.json");
      writeFileSync(file, JSON.stringify(config));
      const r = await runCli([...sb.flags, "--config", file, "--json", "list", "--context", CTX]);
      expect(r.code).toBe(2);
      expect(r.json.error.code).toBe("PAAS_BACKUP_CONFIG_INVALID");
      expect(r.json.error.message).toContain(path);
    }
    // a syntax error is reported by position only, never with the bytes around it
    const file = join(sb.dir, "cfg", "config.json");
    writeFileSync(file, '{\n  "recipients": [AKIAIOSFODNN7EXAMPLE]\n}\n');
    const r = await runCli([...sb.flags, "--config", file, "--json", "list", "--context", CTX]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).not.toContain("AKIAIOSFODNN7EXAMPLE");
  });

  it("numeric flags take whole numbers in range only", async () => {
    for (const bad of ["-1", "abc", "1.5", ""]) {
      for (const args of [
        ["prune", "--context", CTX, "--keep-daily", bad],
        ["verify", "--context", CTX, "--max-expansion", bad],
        ["offsite", "push", "--context", CTX, "--to", `file://${sb.dir}/o`, "--lock-days", bad],
      ]) {
        const r = await runCli([...sb.flags, "--json", ...args]);
        expect(r.code, `${args.join(" ")}`).toBe(2);
        expect(r.json.error.code).toBe("PAAS_BACKUP_INVALID_ARGUMENT");
      }
    }
    mkdirSync(join(sb.dir, "cfg2"), { recursive: true });
    writeFileSync(join(sb.dir, "cfg2", "c.json"), JSON.stringify({ offsite: { concurrency: 0 } }));
    expect(
      (await runCli([...sb.flags, "--config", join(sb.dir, "cfg2", "c.json"), "list", "--context", CTX]))
        .code,
    ).toBe(2);
  });

  it("--recipient with --insecure-plaintext is a usage error", async () => {
    const r = await runCli([
      ...sb.flags,
      "--json",
      "snapshot",
      "--context",
      CTX,
      "--insecure-plaintext",
      "--recipient",
      "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
    ]);
    expect(r.code).toBe(2);
    expect(r.json.error.message).toContain("--insecure-plaintext");
    expect((await runCli([...sb.flags, "--json", "list", "--context", CTX])).json.count).toBe(0);
  });

  it("a context with neither state nor snapshots is exit 2 for list, doctor, verify and restore", async () => {
    for (const args of [["list"], ["doctor"], ["verify"], ["restore", "--ticket", "T", "--yes"]]) {
      const r = await runCli([
        ...sb.flags,
        "--json",
        args[0]!,
        "--context",
        "customer-typo",
        ...args.slice(1),
      ]);
      expect(r.code, args[0]).toBe(2);
      expect(r.json.error.code).toBe("PAAS_BACKUP_CONTEXT_NOT_FOUND");
    }
  });

  it("a state file that is not valid JSON is still backed up, and list and the restore plan show the warning", async () => {
    writeFileSync(join(sb.state.contextDir(CTX), "config.json"), '{"name": "internal-dogfood",');
    const snap = await runCli([...sb.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
    expect(snap.code).toBe(0);
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    expect(list.json.data.at(-1).warnings.join(" ")).toContain("config.json: not valid JSON");
    const human = await runCli([...sb.flags, "list", "--context", CTX]);
    expect(human.stdout).toContain("config.json: not valid JSON");
    const plan = await runCli([
      ...sb.flags,
      "--json",
      "restore",
      "--context",
      CTX,
      "--ticket",
      "T",
      "--dry-run",
    ]);
    expect(plan.json.data[0].warnings.join(" ")).toContain("config.json: not valid JSON");
  });

  it("a malformed checksum file (empty, truncated) is named as such, not as a mismatch", async () => {
    const list = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
    const last = list.json.data.at(-1);
    const sumFile = `${last.artifact}.sha256`;
    for (const content of ["", readFileSync(sumFile, "utf8").slice(0, 20)]) {
      writeFileSync(sumFile, content);
      const l = await runCli([...sb.flags, "--json", "list", "--context", CTX]);
      expect(l.json.data.at(-1).checksum).toBe("malformed-checksum");
      const v = await runCli([...sb.flags, "--json", "verify", "--context", CTX, "--snapshot", last.id]);
      expect(v.code).toBe(3);
      expect(v.json.error.code).toBe("PAAS_BACKUP_CHECKSUM_MALFORMED");
      const r = await runCli([
        ...sb.flags,
        "--json",
        "restore",
        "--context",
        CTX,
        "--ticket",
        "T",
        "--yes",
        "--snapshot",
        last.id,
      ]);
      expect(r.code).toBe(3);
      expect(r.json.error.code).toBe("PAAS_BACKUP_CHECKSUM_MALFORMED");
      expect(r.json.error.message).toContain("malformed");
    }
  });
});
