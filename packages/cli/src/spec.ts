import { InvalidArgumentError } from "commander";

/**
 * Every command, flag, example and exit code of the CLI, as data. The parser (main.ts), --help,
 * the shell completions and the README's CLI reference are all built from this one table, so a
 * command added here gets the envelope, the exit-code table, help and completion by construction.
 * Command modules are imported only when their command runs: `--version` and `list` do not load
 * the S3 SDK, archiver or age.
 */
export type { ArgSpec, CommandSpec, FlagSpec, Handler } from "./spec-types.js";
import type { CommandSpec, FlagSpec, Handler } from "./spec-types.js";

export const GROUPS: Record<string, string> = {
  schedule: "systemd timers or cron lines for tick (hourly), maintenance (daily) and the drill (quarterly)",
  keys: "age identities and the snapshots they open (issue 24 §3)",
  offsite: "immutable offsite copies of daily fulls (policy §4.4)",
};

export const GLOBAL_FLAGS: FlagSpec[] = [
  {
    flags: "--state-root <path>",
    description:
      "si paas state root (default $SI_PAAS_STATE_ROOT, the config file's stateRoot, or ~/.si/paas)",
  },
  {
    flags: "--backup-root <path>",
    description:
      "where snapshots live: a folder, or s3://<bucket>/<prefix> for one bucket shared by a fleet (default $PAAS_BACKUP_ROOT, the config file's backupRoot, or ~/.si/paas-backups)",
  },
  {
    flags: "--root-endpoint <url>",
    description:
      "S3-compatible endpoint of an s3:// backup root (default $PAAS_BACKUP_ROOT_ENDPOINT or the config file's rootEndpoint); offsite commands keep --endpoint for their target",
  },
  {
    flags: "--root-region <region>",
    description:
      "S3 region of an s3:// backup root (default $PAAS_BACKUP_ROOT_REGION, the config file's rootRegion, or us-east-1)",
  },
  {
    flags: "--root-path-style",
    description:
      "path-style addressing for an s3:// backup root (default $PAAS_BACKUP_ROOT_PATH_STYLE=1 or the config file's rootPathStyle)",
  },
  {
    flags: "--config <file>",
    description: "config file (default $PAAS_BACKUP_CONFIG or ~/.config/paas-backup/config.json)",
  },
  { flags: "--json", description: "print exactly one JSON document (si's envelope) on stdout" },
];

/** A whole number in [min, max]; "-1", "abc", "1.5" and "" are refused as a usage error. */
export function wholeNumber(min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return n;
  };
}

const collect = (value: string, previous: unknown) => [...((previous as string[] | undefined) ?? []), value];

const context: FlagSpec = {
  flags: "--context <name>",
  description: "the context (a folder under <state-root>/contexts/)",
  required: true,
};
const identity: FlagSpec = {
  flags: "--identity <file>",
  description:
    "age identity file for encrypted snapshots (default: $PAAS_BACKUP_IDENTITY, else the config file's identityFile)",
};
const maxExpansion: FlagSpec = {
  flags: "--max-expansion <n>",
  description: "hand-made archives (no manifest) may expand to n times their size (default 200)",
  parse: wholeNumber(1, 1_000_000),
};
const operator: FlagSpec = {
  flags: "--operator <who>",
  description:
    "who acts, for the incident record (default $PAAS_BACKUP_OPERATOR, git user.email, the OS user)",
};
const ticket: FlagSpec = {
  flags: "--ticket <incident-id>",
  description: "incident ticket the action is recorded under",
  required: true,
};
const keyFlags: FlagSpec[] = [
  {
    flags: "--recipient <age1...>",
    description: "encrypt to this age recipient (repeatable; default: the config file's recipients)",
    repeatable: true,
  },
  { flags: "--recipients-file <file>", description: "encrypt to the recipients listed in this file" },
  {
    flags: "--insecure-plaintext",
    description:
      "write an unencrypted snapshot (recorded in the manifest, shown by list); refused together with recipients",
  },
];
const include: FlagSpec = {
  flags: "--include <folders>",
  description:
    "optional folders to add: releases, cache or releases,cache (default: the config file's include)",
};
const connection: FlagSpec[] = [
  {
    flags: "--to <url>",
    description:
      "target URL: s3://<bucket>/<prefix> or file:///<path> (default: the config file's offsite.targets)",
  },
  { flags: "--target <name>", description: "one configured target, by name" },
  { flags: "--endpoint <url>", description: "S3-compatible endpoint, e.g. http://127.0.0.1:9000" },
  { flags: "--region <region>", description: "S3 region (default us-east-1)" },
  {
    flags: "--path-style",
    description: "path-style S3 addressing (MinIO, Ceph and most S3-compatible servers)",
  },
];
const lockFlags: FlagSpec[] = [
  {
    flags: "--lock-mode <mode>",
    description:
      "Object Lock mode for new copies: COMPLIANCE or GOVERNANCE (default COMPLIANCE with --lock-days)",
  },
  {
    flags: "--lock-days <n>",
    description: "Object Lock retention in days for new copies",
    parse: wholeNumber(1, 36_500),
  },
];
const keep = (unit: string, dflt: number): FlagSpec => ({
  flags: `--keep-${unit} <n>`,
  description: `keep the newest snapshot of each of the last n ${unit === "daily" ? "days" : unit.replace("ly", "s")} (default ${dflt}, or the config file's retention)`,
  parse: wholeNumber(0, 100_000),
});

const L =
  <M, K extends keyof M>(load: () => Promise<M>, name: K) =>
  async () =>
    (await load())[name] as unknown as Handler;

export const COMMANDS: CommandSpec[] = [
  {
    path: ["snapshot"],
    sharedRoot: "write",
    summary: "take a snapshot of one context (encrypted unless --insecure-plaintext)",
    flags: [
      context,
      { flags: "--kind <kind>", description: "full or incremental", defaultValue: "full" },
      include,
      ...keyFlags,
      {
        flags: "--dry-run",
        description:
          "print what would be included, excluded and skipped, and the rule for each; write nothing",
      },
      {
        flags: "--tag <tag>",
        description:
          "record this tag in the manifest (repeatable): restore --snapshot tag:<tag>, retention keepTags / prune --keep-tag",
        repeatable: true,
      },
      { flags: "--note <text>", description: "record this note in the manifest (list shows it)" },
    ],
    examples: [
      "paas-backup snapshot --context internal-dogfood --recipient age1...",
      "paas-backup snapshot --context internal-dogfood --kind incremental",
      "paas-backup snapshot --context internal-dogfood --dry-run",
    ],
    exitCodes: ["usage", "safety", "busy", "redacted", "environment", "unexpected"],
    recover: true,
    // An incremental, and a full that finds a member cache (the daily full), scan only the
    // appended lines (small: inline); the worker cost 0.1-0.15 s of CPU, a sixth of an
    // incremental's, and the lane still starts one for a large range.
    prestartScanner: async (flags, rt) =>
      flags.kind !== "incremental" &&
      !(
        typeof flags.context === "string" &&
        (await (
          await import("@paas-backup/core/snapshot")
        ).hasMemberCache(rt.fs, rt.stateRoot, flags.context))
      ),
    writesSnapshots: true,
    json: "`data[0]`: `id`, `kind`, `parent` (null for a full), `artifact`, `checksumFile`, `manifestFile`, `sha256`, `files`, `bytes` (artifact size), `sourceBytes`, `storedBytes` (bytes put in the archive), `reusedBytes` (of those, log bytes whose gzip members were copied from the member cache: a full after a log only grew), `encrypted`, `absent`, `excluded`, `skipped`, `warnings`, `tags`, `note`, `redactions[]` (`path`, `line`, `rule`, `acknowledged`; never the value; exit 9 while any is unacknowledged, with `ok: false` and `error`, the snapshot taken). With `--dry-run`: `data` is one entry per path: `path`, `action` (`include`/`exclude`/`skip`/`absent`), `rule` (in words), `ruleId` (the rule as a stable id from core's plan: `protected`, `optional:releases`, `excluded:vault`, `excluded:not-protected`, `excluded:not-requested:cache`, `skipped:symlink`, ...), `size`",
    load: L(() => import("./commands/snapshot.js"), "snapshotCommand"),
  },
  {
    path: ["list"],
    sharedRoot: "read",
    summary: "list a context's snapshots with their checksum state",
    flags: [context],
    examples: [
      "paas-backup list --context internal-dogfood",
      "paas-backup --json list --context internal-dogfood",
    ],
    exitCodes: ["usage", "environment", "unexpected"],
    json: "`data[]`: `id`, `kind`, `time`, `parent`, `bytes`, `files`, `checksum` (`verified`/`missing-checksum`/`malformed-checksum`/`mismatch`), `sha256`, `encrypted`, `plaintext`, `madeBy` (`paas-backup`/`reference-flow`/`unknown`), `artifact`, `warnings` (what the snapshot recorded, e.g. a state file that was not valid JSON), `tags`, `note` (null when none), `parentMissing` (an incremental whose parent is not in the backup root: `(MISSING)` in the table, and a line in the envelope's top-level `warnings[]`); `error` is null, or for a snapshot whose sidecar manifest is damaged `{code, message, remediation}` (then `kind` is null and the text output says `DAMAGED`)",
    load: L(() => import("./commands/list.js"), "listCommand"),
  },
  {
    path: ["verify"],
    sharedRoot: "read",
    summary:
      "check snapshots against their checksum files; --deep also checks every file against the manifest",
    flags: [
      context,
      { flags: "--snapshot <id>", description: "one snapshot (default: the newest)" },
      { flags: "--all", description: "every snapshot of the context" },
      { flags: "--deep", description: "stream each archive and check every file and the chain" },
      identity,
      maxExpansion,
    ],
    examples: [
      "paas-backup verify --context internal-dogfood --all",
      "paas-backup verify --context internal-dogfood --deep --identity ~/.config/paas-backup/identity.txt",
    ],
    exitCodes: ["usage", "integrity", "safety", "environment", "unexpected"],
    json: '`data[]`: `id`, `kind`, `checksum`, `chainOk`, `chainProblem`, `deep`, `access`, `ok`; a snapshot with a damaged manifest has `kind: "unknown"` and `manifestError: {code, message}` (exit 3); `warnings` (only when `latest` passed over snapshots from the future, also on stderr)',
    load: L(() => import("./commands/verify.js"), "verifyCommand"),
  },
  {
    path: ["restore"],
    sharedRoot: "read",
    summary: "restore a snapshot into its context (checksum first, staged, swapped, validated)",
    flags: [
      context,
      ticket,
      {
        flags: "--snapshot <id|latest>",
        description: "snapshot to restore; tag:<tag> is the newest snapshot with that tag (snapshot --tag)",
        defaultValue: "latest",
      },
      operator,
      identity,
      { flags: "--yes", description: "do not ask for confirmation on a terminal (checks still run)" },
      {
        flags: "--fallback",
        description: "restore the newest older verified snapshot when the asked one fails its checksum",
      },
      {
        flags: "--allow-unsigned",
        description:
          "accept a snapshot without a signature although it is dated after the repository began signing (the incident record says so)",
      },
      { flags: "--dry-run", description: "show what would change and the staged validation; touch nothing" },
      {
        flags: "--doctor-cmd <command>",
        description:
          "also run this doctor (e.g. 'si paas doctor --json'); its stdout must be JSON with ok: true; with --dry-run it judges the staged state",
      },
      {
        flags: "--exact",
        description:
          "replace the whole context as the snapshot has it (only vault/ stays); default: only what the snapshot covers",
      },
      {
        flags: "--path <file>",
        description:
          "restore only this file, or a folder of an included optional folder; nothing else changes",
        repeatable: true,
      },
      maxExpansion,
      {
        flags: "--from-offsite <target>",
        description:
          "fetch what the snapshot's chain needs from this offsite target (URL or configured name) when the local copy is gone or corrupt; --fallback allows an older snapshot",
      },
      {
        flags: "--offsite-root <id>",
        description:
          "with --from-offsite: restore another backup root's copies (its id from offsite list --all-roots); without it, when this root has no copy of the snapshot, the one other root that holds it is used (exit 2 naming them when several do)",
      },
      { flags: "--endpoint <url>", description: "S3-compatible endpoint for --from-offsite" },
      { flags: "--region <region>", description: "S3 region for --from-offsite" },
      { flags: "--path-style", description: "path-style S3 addressing for --from-offsite" },
    ],
    examples: [
      "paas-backup restore --context internal-dogfood --ticket INC-1234 --dry-run",
      "paas-backup restore --context internal-dogfood --ticket INC-1234 --identity ~/.config/paas-backup/identity.txt --doctor-cmd 'si paas doctor --json'",
      "paas-backup restore --context internal-dogfood --ticket INC-1234 --from-offsite nfs --snapshot 20261124T000000Z",
    ],
    exitCodes: ["usage", "integrity", "safety", "validation", "busy", "environment", "unexpected"],
    recover: true,
    json: "`data[0]`: `outcome`, `contextDir`, `snapshot`, `fallback`, `changes`, `movedAsideTo`, `doctor`, `externalDoctor`, `vault`, `blockFile`, `incidentFile`, `scope`, `warnings`, `eventLines`; with --from-offsite, `offsite`: `asked`, `chosen`, `fetched`, `local`, `fallback`, `root` (the other backup root whose copies were used, `{id, host, why}`, or null for this root's own), `warnings`",
    load: L(() => import("./commands/restore.js"), "restoreAction"),
  },
  {
    path: ["ls"],
    sharedRoot: "read",
    summary: "list the files of a snapshot (read through its chain) with size, mode and sha256",
    flags: [
      context,
      { flags: "--snapshot <id|latest>", description: "the snapshot", defaultValue: "latest" },
      { flags: "--long", description: "also print mode, sha256 and how the snapshot stores each file" },
      identity,
      maxExpansion,
    ],
    examples: [
      "paas-backup ls --context internal-dogfood --snapshot latest",
      "paas-backup ls --context internal-dogfood --snapshot 20261124T100000Z-1 --long",
    ],
    exitCodes: ["usage", "integrity", "safety", "environment", "unexpected"],
    json: "`data[]`: `path`, `size`, `mode` (null for hand-made archives), `sha256`, `stored` (`whole`/`append`/`unchanged`/`hand-made`); `snapshot` names the snapshot; `warnings` (only when `latest` passed over snapshots from the future, also on stderr)",
    load: L(() => import("./commands/inspect.js"), "lsCommand"),
  },
  {
    path: ["dump"],
    sharedRoot: "read",
    summary: "write one file of a snapshot to stdout, byte-identical to what was backed up",
    args: [
      {
        name: "path",
        description: "the file, relative to the context folder (as ls prints it)",
        required: true,
      },
    ],
    flags: [
      context,
      { flags: "--snapshot <id|latest>", description: "the snapshot", defaultValue: "latest" },
      identity,
      maxExpansion,
    ],
    examples: [
      "paas-backup dump --context internal-dogfood --snapshot latest deployments.json > deployments.json",
      "paas-backup dump --context internal-dogfood events/audit.jsonl | tail -n 5",
    ],
    exitCodes: ["usage", "integrity", "safety", "environment", "unexpected"],
    json: "(--json is refused: stdout carries the file's bytes) ",
    load: L(() => import("./commands/inspect.js"), "dumpCommand"),
  },
  {
    path: ["diff"],
    sharedRoot: "read",
    summary:
      "what changed between two snapshots, or a snapshot and the live context: added, changed, removed; lines appended to event logs",
    args: [
      { name: "id1", description: "the older snapshot (or latest)", required: true },
      { name: "id2", description: "the newer snapshot (default: the newest)", required: false },
    ],
    flags: [
      context,
      { flags: "--live", description: "compare with the live context instead of a second snapshot" },
      identity,
      maxExpansion,
    ],
    examples: [
      "paas-backup diff --context internal-dogfood 20261124T100000Z 20261124T110000Z-1",
      "paas-backup diff --context internal-dogfood latest --live",
    ],
    exitCodes: ["usage", "integrity", "safety", "environment", "unexpected"],
    json: "`data[]`: `path`, `change` (`added`/`changed`/`removed`), `before`, `after` (`{size, sha256}` or null), `appendedLines` (event logs that only grew); `from`, `to`, `unchanged`; `warnings` (only when `latest` passed over snapshots from the future, also on stderr)",
    load: L(() => import("./commands/inspect.js"), "diffCommand"),
  },
  {
    path: ["find"],
    sharedRoot: "read",
    summary: "which snapshots hold a path, with its size and sha256 in each",
    args: [{ name: "path", description: "the file, relative to the context folder", required: true }],
    flags: [context],
    examples: ["paas-backup find --context internal-dogfood deployments.json"],
    exitCodes: ["usage", "environment", "unexpected"],
    json: "`data[]`: `snapshot`, `kind`, `time`, `size`, `sha256`",
    load: L(() => import("./commands/inspect.js"), "findCommand"),
  },
  {
    path: ["prune"],
    sharedRoot: "write",
    summary: "apply the retention policy (default 24 hourly + 7 daily + 4 weekly + 3 monthly)",
    flags: [
      { flags: "--context <name>", description: "the context (or --all-contexts)" },
      {
        flags: "--all-contexts",
        description:
          "every context of the state root and backup root (with an s3:// root: every context the fleet's hosts report, under one maintenance lease)",
      },
      { flags: "--dry-run", description: "print the plan, remove nothing" },
      keep("hourly", 24),
      keep("daily", 7),
      keep("weekly", 4),
      keep("monthly", 3),
      {
        flags: "--keep-tag <tag>",
        description:
          "also keep every snapshot with this tag, beyond the slots (repeatable; adds to the config file's retention.keepTags)",
        repeatable: true,
      },
    ],
    examples: [
      "paas-backup prune --context internal-dogfood --dry-run",
      "paas-backup prune --context internal-dogfood --keep-daily 14",
      "paas-backup prune --all-contexts",
    ],
    exitCodes: ["usage", "busy", "partial", "environment", "unexpected"],
    json: "`data[0]`: `plan` (`keep[]` with `reasons`, `remove[]` with `reason`), `removed`, `policy`; with an s3:// root also `marked`, `waiting` (`id`, `dueAt`), `unmarked`, `swept`; with --all-contexts one entry per context, each with `context`, `ok` and `error` (null, or `{code, message, remediation}`: exit 7)",
    load: L(() => import("./commands/prune.js"), "pruneCommand"),
  },
  {
    path: ["tick"],
    sharedRoot: "write",
    summary:
      "for cron: a daily full, else an hourly incremental, then prune, then offsite push and the target's retention (idempotent); says why",
    flags: [
      { flags: "--context <name>", description: "the context (or --all-contexts)" },
      {
        flags: "--all-contexts",
        description:
          "every context of the state root; one failing does not stop the others; the backup root's contexts whose folder vanished get their offsite retention",
      },
      include,
      ...keyFlags,
      {
        flags: "--ping-url <url>",
        description:
          "GET <url>/start before, <url> on success, <url>/fail on failure (healthchecks.io); never fails or delays the backup more than a few seconds (default: the config file's pingUrl)",
      },
      {
        flags: "--metrics-file <file>",
        description:
          "write Prometheus metrics of the fleet here, atomically (node_exporter textfile collector)",
      },
    ],
    examples: [
      "paas-backup tick --all-contexts",
      "paas-backup --json tick --context internal-dogfood",
      "paas-backup tick --all-contexts --metrics-file /var/lib/node_exporter/textfile/paas_backup.prom",
    ],
    exitCodes: ["usage", "safety", "busy", "partial", "redacted", "environment", "unexpected"],
    recover: true,
    prestartScanner: true,
    writesSnapshots: true,
    json: "`data[]`: `context`, `ok`, `action` (`full`/`incremental`/`none`), `reason` (why: e.g. a full instead of an incremental when the chain no longer verifies), `snapshot`, `pruned`, `offsite` (per configured target: the push result and `prune`, what the target's retention kept and removed), `error`, `vanished`; with an s3:// root also `maintenance` (`ran`, `marked`, `removed`, `waiting`, `swept`, `offsite[]` (`target`, `removed`, `heldByLock`), `error`: the run's prune and the targets' retention under the bucket's maintenance lease); `failed` counts failed contexts. A context folder that is a symbolic link is ticked and fails (`PAAS_BACKUP_CONTEXT_NOT_A_FOLDER`, exit 7 with --all-contexts): it is never read through, and never skipped in silence; its copies offsite still age out by each target's retention. With --all-contexts on a folder root, a context the backup root holds whose folder is gone from the state root gets an entry with `vanished: true` (`action` `none`, ok; the reason names the missing folder; human output: `<context>: vanished: …`): nothing is snapshotted and its local snapshots are kept, but the offsite step runs for it, so its copies age out by each target's retention like every context's and none is deleted because its live folder is gone",
    load: L(() => import("./commands/tick.js"), "tickAction"),
  },
  {
    path: ["offsite", "push"],
    sharedRoot: "write",
    summary:
      "copy every full snapshot not yet at each target, put back copies found missing or damaged, extend Object Lock retention",
    flags: [
      { flags: "--context <name>", description: "the context (or --all-contexts)" },
      { flags: "--all-contexts", description: "every context of the state root" },
      ...connection,
      ...lockFlags,
      { flags: "--require-immutable", description: "exit 4 when a copy is not immutable" },
      {
        flags: "--allow-plaintext",
        description:
          "the --to target may hold plaintext: snapshots not encrypted at home are copied as they are (a configured target's allowPlaintext); without it they are encrypted to the configured recipients on the way out",
      },
    ],
    examples: [
      "paas-backup offsite push --context internal-dogfood --to s3://backups/si --endpoint http://127.0.0.1:9000 --path-style --lock-days 35",
      "paas-backup offsite push --all-contexts",
    ],
    exitCodes: ["usage", "integrity", "safety", "busy", "unexpected"],
    json: "`data[]`: one per context and target: `context`, `target`, `pushed` (each copy with `encryptedOnPush`: plaintext at home, encrypted on the way out), `alreadyThere`, `removedByRetention` (local fulls not sent again: the target's retention removed their copies), `immutability`, `problems`, `refused` (plaintext snapshots not pushed for want of a recipient: exit 4, `error.code` `PAAS_BACKUP_OFFSITE_NO_RECIPIENT`)",
    load: L(() => import("./commands/offsite.js"), "offsitePushCommand"),
  },
  {
    path: ["offsite", "list"],
    sharedRoot: "read",
    summary: "what is at each target: confirmed, immutable until when",
    flags: [
      context,
      ...connection,
      {
        flags: "--all-roots",
        description: "also the copies of other backup roots (other hosts) at the target",
      },
      {
        flags: "--offsite-root <id>",
        description:
          "only the copies of this backup root (another host's, or a lost disk's), as restore --offsite-root reads them",
      },
    ],
    examples: [
      "paas-backup offsite list --context internal-dogfood --target b2",
      "paas-backup offsite list --context internal-dogfood --target b2 --offsite-root 3f9c2a7d51e04b86",
    ],
    exitCodes: ["usage", "unexpected"],
    json: "`data[]`: one per target: `target`, `immutability`, `root` (this backup root's id), `roots` (with --all-roots or --offsite-root: `id`, `host`), `otherRoots` (when this backup root has no copy of the context there, e.g. a fresh root after a lost disk: the roots that do, `id`, `host`, `copies`, `newest`), `entries[]` (`id`, `root`, `own`, `confirmed`, `immutable`, `immutableUntil`, `artifact`, `kind`, `encrypted`, `encryptedOnPush` (plaintext at home, encrypted on its way out: ENCRYPTION `age (on push)`), `location`)",
    load: L(() => import("./commands/offsite.js"), "offsiteListCommand"),
  },
  {
    path: ["offsite", "verify"],
    sharedRoot: "read",
    summary: "check the copies at each target; --deep re-reads and hashes every artifact",
    flags: [
      context,
      ...connection,
      { flags: "--deep", description: "re-read and hash every artifact" },
      {
        flags: "--read-data-subset <n%|size>",
        description:
          "read and hash a rotating share of the copies per run (e.g. 10%); a full cycle covers every copy",
      },
      { flags: "--require-immutable", description: "exit 4 when a copy is not immutable" },
    ],
    examples: ["paas-backup offsite verify --context internal-dogfood --deep"],
    exitCodes: ["usage", "integrity", "safety", "unexpected"],
    json: "`data[]`: one per target: `target`, `immutability`, `warnings`, `results[]` (`id`, `ok`, `immutable`, `immutableUntil`, `problems`)",
    load: L(() => import("./commands/offsite.js"), "offsiteVerifyCommand"),
  },
  {
    path: ["offsite", "extend-locks"],
    sharedRoot: "read",
    summary: "move the Object Lock retention of every copy offsite retention still keeps (push runs it too)",
    flags: [
      { flags: "--context <name>", description: "the context (or --all-contexts)" },
      { flags: "--all-contexts", description: "every context of the state root" },
      ...connection,
      ...lockFlags,
    ],
    examples: ["paas-backup offsite extend-locks --all-contexts --target b2"],
    exitCodes: ["usage", "unexpected"],
    json: "`data[]`: one per context and target: `context`, `target`, `extended[]` (`id`, `retainUntil`), `skipped`",
    load: L(() => import("./commands/offsite.js"), "offsiteExtendLocksCommand"),
  },
  {
    path: ["offsite", "prune"],
    sharedRoot: "write",
    summary:
      "apply the offsite retention (default 7 daily + 4 weekly + 3 monthly); never deletes what is under retention",
    flags: [
      { flags: "--context <name>", description: "the context (or --all-contexts)" },
      {
        flags: "--all-contexts",
        description:
          "every context of the state root and backup root, and every context any backup root left at the target",
      },
      ...connection,
      { flags: "--dry-run", description: "print the plan, remove nothing" },
    ],
    examples: [
      "paas-backup offsite prune --context internal-dogfood --dry-run",
      "paas-backup offsite prune --all-contexts",
    ],
    exitCodes: ["usage", "busy", "environment", "unexpected"],
    json: "`data[]`: one per context and target: `context`, `target`, `keep`, `remove`, `heldByLock` (this backup root's copies), `otherRoots[]` (`root`, `keep`, `remove`, `heldByLock`: copies other backup roots left there, judged by the same rule)",
    load: L(() => import("./commands/offsite.js"), "offsitePruneCommand"),
  },
  {
    path: ["drill"],
    sharedRoot: "read",
    summary:
      "quarterly restore drill: restore the newest verified snapshot into a scratch root and validate it",
    flags: [
      context,
      identity,
      operator,
      { flags: "--doctor-cmd <command>", description: "also run this doctor against the scratch root" },
    ],
    examples: ["paas-backup drill --context internal-dogfood --identity ~/.config/paas-backup/identity.txt"],
    exitCodes: ["usage", "integrity", "safety", "validation", "unexpected"],
    recover: true,
    json: "`data[0]`: `context`, `snapshot`, `ok`, `recordFile`, `restore`, `error`",
    load: L(() => import("./commands/drill.js"), "drillCommand"),
  },
  {
    path: ["drill", "status"],
    summary: "last drill per context and when the next is due; exit 8 when a mandatory one is overdue",
    flags: [
      {
        flags: "--context <name>",
        description:
          "a context to report (repeatable; default: every context in the backup root; with an s3:// root, every context the fleet's hosts report or that has records in the bucket)",
        repeatable: true,
      },
      {
        flags: "--metrics-file <file>",
        description: "write the drill gauges in Prometheus text format here, atomically",
      },
    ],
    examples: ["paas-backup drill status", "paas-backup --json drill status --context internal-dogfood"],
    exitCodes: ["usage", "overdue", "unexpected"],
    sharedRoot: "read",
    json: "`data[]`: `context`, `mandatory`, `lastDrill` (`at`, `ok`, `snapshot`, `record`) or null, `lastPassed`, `nextDue`, `overdue`",
    load: L(() => import("./commands/drill.js"), "drillStatusCommand"),
  },
  {
    path: ["report"],
    sharedRoot: "read",
    summary:
      "governance report for auditors (policy §7): coverage, retention, offsite copies, restores, drills, exceptions and keys over a period, as JSON, HTML or CSV",
    flags: [
      {
        flags: "--context <name>",
        description: "a context to report (repeatable; or --all-contexts)",
        repeatable: true,
      },
      { flags: "--all-contexts", description: "every context with a folder in the backup root" },
      { flags: "--period <period>", description: "a quarter (2026-Q4), a month (2026-11) or a year (2026)" },
      { flags: "--from <date>", description: "first day of the period (2026-10-01), with --to" },
      { flags: "--to <date>", description: "last day of the period, inclusive (2026-12-31), with --from" },
      { flags: "--format <format>", description: "json (default), html or csv" },
      {
        flags: "--out <file>",
        description:
          "write the report here (atomically, 0600) and print a summary; default: the report on stdout",
      },
    ],
    examples: [
      "paas-backup report --all-contexts --period 2026-Q4 --format html --out q4.html",
      "paas-backup report --context internal-dogfood --from 2026-10-01 --to 2026-10-31 --format csv --out oct.csv",
    ],
    exitCodes: ["usage", "environment", "unexpected"],
    json: "with `--out`: `data[0]`: `out`, `format`, `schema`, `period`, `contexts[]` (`context`, `evidenceFrom`, `shareOfHours`, `shareOfDays`, `largestGapHours`, `restores`, `quartersWithPassedDrill`, `quarters`, `exceptions`, `openExceptions`); without: `data[0]` is the report (schema `paas-backup/report@1`, see *The governance report*)",
    load: L(() => import("./commands/report.js"), "reportCommand"),
  },
  {
    path: ["status"],
    sharedRoot: "read",
    summary:
      "the fleet at a glance: newest full and incremental, chain (read, not assumed), drill, offsite copies, block, last tick, snapshots from the future, a context folder missing or a link; exit 11 when a context needs attention",
    flags: [
      { flags: "--context <name>", description: "one context" },
      {
        flags: "--all-contexts",
        description: "every context of the state root and the backup root (the default)",
      },
      {
        flags: "--metrics-file <file>",
        description: "also write Prometheus metrics here, atomically (node_exporter textfile collector)",
      },
    ],
    examples: [
      "paas-backup status",
      "paas-backup --json status --context internal-dogfood",
      "paas-backup status --metrics-file /var/lib/node_exporter/textfile/paas_backup.prom",
    ],
    exitCodes: ["usage", "attention", "environment", "unexpected"],
    json: "`attention` (a count) and `data[]`, one per context: `{ context, ok, attention: [reasons], newestFull, newestIncremental: {id, time, ageSeconds, bytes, plaintext} | null, plaintext: [ids of snapshots not encrypted at home; PLAINTEXT in the table], chain: {ok, detail}, drill: {mandatory, lastDrill, lastPassed, nextDue, overdue}, blocked: {ticket, blockedAt, reason} | null, offsite: [{target, name, confirmed, immutable, immutableUntil, newestCopy, problems, newestFullMissing}], lastTick: {at, ok, action, reason, error, lastSnapshots} | null }`",
    load: L(() => import("./commands/status.js"), "statusCommand"),
  },
  {
    path: ["doctor"],
    sharedRoot: "read",
    summary: "post-restore validation of a context (si's doctor envelope)",
    flags: [context],
    examples: [
      "paas-backup doctor --context internal-dogfood",
      "paas-backup --json doctor --context internal-dogfood",
    ],
    exitCodes: ["usage", "validation", "environment", "unexpected"],
    recover: true,
    json: "`checks[]`: `name`, `ok`, `detail` (`count` is their number); `data[0]`: `contextShow`, `events`",
    load: L(() => import("./commands/doctor.js"), "doctorCommand"),
  },
  {
    path: ["unblock"],
    sharedRoot: "read",
    summary: "clear a post-restore block once doctor (and the external doctor that blocked) passes",
    flags: [
      context,
      ticket,
      operator,
      {
        flags: "--doctor-cmd <command>",
        description:
          "the external doctor to pass (default: the one recorded in the block marker; another command is refused, exit 2)",
      },
      {
        flags: "--override-doctor",
        description:
          "run --doctor-cmd although the block recorded another doctor; the incident record names both (doctorOverride)",
      },
    ],
    examples: [
      "paas-backup unblock --context internal-dogfood --ticket INC-1234",
      "paas-backup unblock --context internal-dogfood --ticket INC-1234 --doctor-cmd 'si-doctor-v2 --json' --override-doctor",
    ],
    exitCodes: ["usage", "validation", "unexpected"],
    recover: true,
    json: "`data[]`: `cleared` (the block record), `incidentFile`; empty when the context was not blocked",
    load: L(() => import("./commands/doctor.js"), "unblockCommand"),
  },
  {
    path: ["rollback"],
    sharedRoot: "read",
    summary: "put back the contents the last restore moved aside",
    flags: [context, ticket, operator],
    examples: ["paas-backup rollback --context internal-dogfood --ticket INC-1234"],
    exitCodes: ["usage", "busy", "unexpected"],
    recover: true,
    json: "`data[0]`: `restoredFrom`, `movedAsideTo`, `incidentFile`, `eventLines` (the lines si wrote since the restore: `append`ed to the log put back when the live log extends it, else `keep` in a file of the incident, `keptIn`)",
    load: L(() => import("./commands/doctor.js"), "rollbackCommand"),
  },
  ...(["install", "status", "remove"] as const).map((verb): CommandSpec => ({
    path: ["schedule", verb],
    summary: {
      install:
        "write systemd timer and service units (or cron lines) for tick hourly, maintenance (status) daily and the drill quarterly, with this run's roots and config",
      status: "show the installed paas-backup timers or cron lines and what they run",
      remove: "remove the paas-backup timers or cron lines schedule install wrote",
    }[verb],
    flags: [
      { flags: "--systemd", description: "timer and service units" },
      { flags: "--cron", description: "crontab lines" },
      {
        flags: "--system",
        description: "system-wide: /etc/systemd/system or /etc/cron.d/paas-backup (the default as root)",
      },
      {
        flags: "--user",
        description: "this user's: ~/.config/systemd/user or the user's crontab (the default otherwise)",
      },
      { flags: "--unit-dir <dir>", description: "write the systemd units here instead" },
      { flags: "--cron-file <file>", description: "write the cron lines into this file instead" },
      ...(verb === "status"
        ? []
        : [
            {
              flags: "--no-enable",
              description: "do not run systemctl (daemon-reload, enable/disable --now)",
            },
          ]),
      ...(verb === "install"
        ? [
            {
              flags: "--context <name>",
              description: "tick and check this context only (default: every context)",
            },
            { flags: "--metrics-file <file>", description: "tick writes Prometheus metrics here" },
            {
              flags: "--drill-context <name>",
              description:
                "drill this context (repeatable; default: the config file's mandatoryDrillContexts)",
              repeatable: true,
            },
            { flags: "--identity <file>", description: "the drill's age identity (for encrypted snapshots)" },
          ]
        : []),
    ],
    examples: [`paas-backup schedule ${verb} --systemd`, `paas-backup schedule ${verb} --cron --user`],
    exitCodes: verb === "status" ? ["usage", "unexpected"] : ["usage", "environment", "unexpected"],
    json:
      verb === "remove"
        ? "`data[]`: `path` of each unit file or crontab removed; `notes` (systemctl steps left to do)"
        : verb === "install"
          ? "`data[]`: `job` (`tick`/`maintenance`/`drill`), `kind`, `scope`, `schedule`, `commands`; `files` written; `notes` (systemctl steps left to do)"
          : "`data[]`: `job`, `kind`, `scope`, `installed`, `files`, `schedule`, `commands`",
    load: L(
      () => import("./commands/schedule.js"),
      verb === "install"
        ? "scheduleInstallCommand"
        : verb === "status"
          ? "scheduleStatusCommand"
          : "scheduleRemoveCommand",
    ),
  })),
  {
    path: ["keygen"],
    summary:
      "write a new age identity (0600) and print its recipient; with --signing, this host's signing key and its allowed_signers line",
    flags: [
      {
        flags: "--out <file>",
        description:
          "where to write the key (outside the backup root and any git work tree); required for an identity, default ~/.config/paas-backup/signing_key with --signing",
      },
      { flags: "--force", description: "overwrite an existing file" },
      {
        flags: "--signing",
        description:
          "make an Ed25519 signing key (unencrypted OpenSSH format, 0600, public key beside it as .pub): snapshot and tick sign with it",
      },
      {
        flags: "--principal <name>",
        description: "the name this host signs as in allowed_signers (default: the host name)",
      },
    ],
    examples: [
      "paas-backup keygen --out ~/.config/paas-backup/identity.txt",
      "paas-backup keygen --signing >> ~/.config/paas-backup/allowed_signers",
    ],
    exitCodes: ["usage", "safety", "environment", "unexpected"],
    json: "`data[0]`: `identityFile`, `recipient` (never the identity); with --signing: `signingKeyFile`, `publicKey`, `fingerprint`, `allowedSignersLine`",
    load: L(() => import("./commands/keygen.js"), "keygenCommand"),
  },
  {
    path: ["keys", "audit"],
    summary:
      "which retained snapshots an age identity still opens (home and every offsite root, age headers only), and until when",
    flags: [
      { flags: "--context <name>", description: "one context (or --all-contexts)" },
      { flags: "--all-contexts", description: "every context with a folder in the backup root" },
      {
        flags: "--identity <file>",
        description:
          "the age identity to look for (default $PAAS_BACKUP_IDENTITY, then the config file's identityFile)",
      },
    ],
    examples: ["paas-backup keys audit --all-contexts --identity old-identity.txt"],
    exitCodes: ["usage", "safety", "environment", "unexpected"],
    sharedRoot: "read",
    json: "`data[]`: one per snapshot it opens: `context`, `where` (`local` or the target's name), `root`, `id`, `artifact`, `expires`, `lockedUntil`, `versionId` (an older version on a versioned bucket, else null), `retainUntil` (its Object Lock, else null); also `checked`, `plaintext`, `exposedUntil`",
    load: L(() => import("./commands/keys.js"), "keysAuditCommand"),
  },
  {
    path: ["keys", "rotate"],
    summary:
      "re-encrypt every retained snapshot to a new recipient set (a fresh file key; the payload kept byte for byte), journaled and resumable, offsite copies included",
    flags: [
      { flags: "--context <name>", description: "one context (or --all-contexts)" },
      { flags: "--all-contexts", description: "every context with a folder in the backup root" },
      {
        flags: "--add-recipient <age1...>",
        description: "the recipient to add (repeatable)",
        repeatable: true,
      },
      {
        flags: "--remove-recipient <age1...>",
        description:
          "the recipient to remove (repeatable): its holder can open none of the rotated artifacts",
        repeatable: true,
      },
      {
        flags: "--identity <file>",
        description:
          "an age identity that opens the snapshots now (default $PAAS_BACKUP_IDENTITY, then the config file's identityFile)",
      },
    ],
    examples: [
      "paas-backup keys rotate --all-contexts --add-recipient age1new... --remove-recipient age1old... --identity old-identity.txt",
    ],
    exitCodes: ["usage", "integrity", "safety", "busy", "environment", "unexpected"],
    // an s3:// root: under each context's lease, every rotated snapshot committed by a relocation entry
    sharedRoot: "write",
    json: "`data[]`: one per context: `context`, `record` (the rotation record's path; on an s3:// root its URL in the bucket), `resumed` (an interrupted rotation finished first, or null), `rotated`, `skipped` (`id`, `reason`), `offsite` (`target`, `id`, `action`: `replaced`, `locked` or `failed`, `lockedUntil`, `encryptedOnPush`: a copy of a snapshot plaintext at home, encrypted again from it, with its `recipients` now, `problem`: why it failed); also `warnings` (a removed recipient the config still names)",
    load: L(() => import("./commands/keys.js"), "keysRotateCommand"),
  },
  {
    path: ["demo"],
    summary: "round trip on a throwaway sample state root",
    flags: [{ flags: "--keep", description: "keep the demo's folders" }],
    examples: ["paas-backup demo"],
    exitCodes: ["unexpected"],
    json: "`data[]`: `step`, `detail`",
    load: L(() => import("./commands/demo.js"), "demoCommand"),
  },
  {
    path: ["completion"],
    summary:
      "print a shell completion script: bash, zsh or fish (the scripts complete context names and snapshot ids through `completion contexts` and `completion snapshots`)",
    args: [
      {
        name: "shell",
        description:
          "bash, zsh or fish; or contexts (the context names, one a line) or snapshots (the ids of --context's snapshots, newest first, then latest)",
        required: true,
      },
    ],
    flags: [{ flags: "--context <name>", description: "with snapshots: whose ids" }],
    examples: [
      "source <(paas-backup completion bash)",
      "paas-backup completion fish > ~/.config/fish/completions/paas-backup.fish",
    ],
    exitCodes: ["usage"],
    json: "(prints a script; --json is refused)",
    // The completion scripts are generated from this table: handed to the command, so that no
    // command imports the table that loads it.
    load: async () => {
      const { completionCommand } = await import("./commands/completion.js");
      return (rt, flags, args) =>
        completionCommand({ commands: COMMANDS, globalFlags: GLOBAL_FLAGS, groups: GROUPS }, rt, flags, args);
    },
  },
];

export function commandName(spec: CommandSpec): string {
  return spec.path.join(" ");
}

export { collect };
