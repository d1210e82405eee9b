#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import { ExitCode, TOOL_VERSION, UsageError, validateContextName, redactText } from "@paas-backup/core";
import { createRuntime, type GlobalFlags, type Runtime } from "./runtime.js";
import { printFailure } from "./output.js";
import { snapshotCommand } from "./commands/snapshot.js";
import { listCommand } from "./commands/list.js";
import { verifyCommand } from "./commands/verify.js";
import { restoreCommand } from "./commands/restore.js";
import { doctorCommand, rollbackCommand, unblockCommand } from "./commands/doctor.js";
import { demoCommand } from "./commands/demo.js";
import { keygenCommand } from "./commands/keygen.js";
import { pruneCommand } from "./commands/prune.js";
import { drillCommand, drillStatusCommand } from "./commands/drill.js";
import { statusCommand } from "./commands/status.js";
import { offsitePushCommand, offsiteListCommand, offsiteVerifyCommand, offsitePruneCommand, offsiteExtendLocksCommand, offsiteFetcher, pushForContext } from "./commands/offsite.js";
import { resolveTargets } from "./targets.js";
import { tickCommand } from "./commands/tick.js";
import { collect, recoverFirst } from "./commands/common.js";

/** the commands that touch a context: each first finishes or undoes a swap a crash interrupted */
const RECOVERING = new Set(["restore", "rollback", "unblock", "snapshot", "tick", "doctor", "drill"]);

type Handler = (rt: Runtime, flags: Record<string, unknown>) => Promise<number>;

let exitCode: number = ExitCode.ok;

// The AWS SDK warns on every run that its 2027 releases will need Node 22; operators cannot act
// on that from a cron log, so that one warning is dropped and every other is kept.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === "string" ? warning : `${warning.name} ${warning.message}`;
  const type = typeof rest[0] === "string" ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
  if (type === "NodeVersionSupportWarning" || /NodeVersionSupportWarning/.test(text)) return;
  (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

/** Wrap a command: build the runtime from global flags, run, map every failure to its exit code and envelope. */
function action(name: string, handler: Handler) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const flags = cmd.optsWithGlobals() as GlobalFlags & Record<string, unknown>;
    let rt: Runtime | null = null;
    try {
      rt = createRuntime(flags);
      if (RECOVERING.has(name) && typeof flags.context === "string") await recoverFirst(rt, validateContextName(flags.context));
      exitCode = await handler(rt, flags);
    } catch (err) {
      exitCode = printFailure(rt, name, typeof flags.context === "string" ? flags.context : "", err, flags.json === true);
    }
  };
}

const targetOptions = (cmd: Command) =>
  cmd
    .option("--to <url>", "target URL: s3://<bucket>/<prefix> or file:///<path> (default: the config file's offsite.targets)")
    .option("--target <name>", "one configured target by name")
    .option("--endpoint <url>", "S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    .option("--region <region>", "S3 region (default us-east-1)")
    .option("--path-style", "path-style S3 addressing (MinIO, Ceph and most S3-compatible servers)")
    .option("--lock-mode <mode>", "Object Lock mode for new copies: COMPLIANCE or GOVERNANCE")
    .option("--lock-days <n>", "Object Lock retention in days for new copies");

const keyOptions = (cmd: Command) =>
  cmd
    .option("--recipient <age1...>", "encrypt to this age recipient (repeatable)", collect)
    .option("--recipients-file <file>", "encrypt to the recipients listed in this file")
    .option("--insecure-plaintext", "write an unencrypted snapshot (recorded in the manifest and shown by list)");

export function buildProgram(): Command {
  const program = new Command("paas-backup")
    .description("Back up, verify and restore the private state of si paas (policy: PaaS backup and restore policy).")
    .version(TOOL_VERSION)
    .option("--state-root <path>", "si paas state root (default $SI_PAAS_STATE_ROOT or ~/.si/paas)")
    .option("--backup-root <path>", "where snapshots live (default $PAAS_BACKUP_ROOT or ~/.si/paas-backups)")
    .option("--config <file>", "config file (default $PAAS_BACKUP_CONFIG or ~/.config/paas-backup/config.json)")
    .option("--json", "print one JSON document in the si envelope on stdout")
    .showHelpAfterError()
    .exitOverride();

  keyOptions(
    program
      .command("snapshot")
      .description("take a snapshot of one context")
      .option("--context <name>", "context to back up")
      .addOption(new Option("--kind <kind>", "full or incremental").default("full"))
      .option("--include <folders>", "optional folders to add: releases,cache"),
  ).action(action("snapshot", snapshotCommand as Handler));

  program.command("list").description("list a context's snapshots with their checksum state").option("--context <name>").action(action("list", listCommand as Handler));

  program
    .command("verify")
    .description("check snapshots against their checksum files; --deep also checks every file against the manifest")
    .option("--context <name>")
    .option("--snapshot <id>", "one snapshot (default: the newest)")
    .option("--all", "every snapshot of the context")
    .option("--deep", "stream each archive and check every file and the chain")
    .option("--identity <file>", "age identity file for encrypted snapshots")
    .option("--max-expansion <n>", "hand-made archives (no manifest) may expand to n times their size (default 200)")
    .action(action("verify", verifyCommand as Handler));

  program
    .command("restore")
    .description("restore a snapshot into its context (checksum first, staged, swapped, validated)")
    .option("--context <name>")
    .option("--snapshot <id|latest>", "snapshot to restore", "latest")
    .option("--ticket <incident-id>", "incident ticket (required)")
    .option("--operator <who>", "operator identity for the incident record")
    .option("--identity <file>", "age identity file for encrypted snapshots")
    .option("--yes", "do not ask for confirmation on a terminal (checks still run)")
    .option("--fallback", "restore the newest older verified snapshot when the asked one fails its checksum")
    .option("--dry-run", "show what would change and the staged validation; touch nothing")
    .option("--doctor-cmd <command>", "also run this doctor (e.g. 'si paas doctor --json'); its stdout must be JSON with ok: true; with --dry-run it judges the staged state")
    .option("--exact", "replace the whole context as the snapshot has it (only vault/ stays); default: only what the snapshot covers")
    .option("--path <file>", "restore only this file, or a folder of an included optional folder (repeatable); nothing else changes", collect)
    .option("--max-expansion <n>", "hand-made archives (no manifest) may expand to n times their size (default 200)")
    .option("--from-offsite <target>", "fetch what the snapshot's chain needs from this offsite target (URL or configured name) when the local copy is gone or corrupt; --fallback allows an older snapshot")
    .option("--offsite-root <id>", "with --from-offsite: restore another backup root's copies (its id from offsite list --all-roots)")
    .option("--endpoint <url>", "S3-compatible endpoint for --from-offsite")
    .option("--region <region>")
    .option("--path-style", "path-style S3 addressing for --from-offsite")
    .action(action("restore", ((rt: Runtime, flags: Record<string, unknown>) => restoreCommand(rt, flags, offsiteFetcher(rt, flags))) as Handler));

  program
    .command("prune")
    .description("apply the retention policy (default 24 hourly + 7 daily + 4 weekly + 3 monthly)")
    .option("--context <name>")
    .option("--dry-run", "print the plan, remove nothing")
    .option("--keep-hourly <n>")
    .option("--keep-daily <n>")
    .option("--keep-weekly <n>")
    .option("--keep-monthly <n>")
    .action(action("prune", pruneCommand as Handler));

  keyOptions(
    program
      .command("tick")
      .description("for cron: a daily full, else an hourly incremental, then prune (idempotent)")
      .option("--context <name>")
      .option("--all-contexts", "every context of the state root; one failing does not stop the others")
      .option("--include <folders>", "optional folders to add: releases,cache")
      .option("--ping-url <url>", "GET <url>/start before, <url> on success, <url>/fail on failure (healthchecks.io); never fails or delays the backup more than a few seconds")
      .option("--metrics-file <file>", "write Prometheus metrics of the fleet here, atomically (node_exporter textfile collector)"),
  ).action(
    action("tick", (async (rt: Runtime, flags: Record<string, unknown>) =>
      tickCommand(rt, flags, (await resolveTargets(rt, {}, false)).length > 0 ? (r, context) => pushForContext(r, context, {}) : undefined)) as Handler),
  );

  const offsite = program.command("offsite").description("immutable offsite copies of daily fulls (policy §4.4)");
  targetOptions(offsite.command("push").description("copy every full snapshot not yet at each target, put back copies found missing or damaged, extend Object Lock retention").option("--context <name>").option("--all-contexts").option("--require-immutable", "exit 4 when a copy is not immutable")).action(action("offsite push", offsitePushCommand as Handler));
  targetOptions(offsite.command("list").description("what is at each target: confirmed, immutable until when").option("--context <name>").option("--all-roots", "also the copies of other backup roots (other hosts) at the target")).action(action("offsite list", offsiteListCommand as Handler));
  targetOptions(offsite.command("verify").description("check the copies at each target; --deep re-reads and hashes every artifact").option("--context <name>").option("--deep").option("--read-data-subset <n%|size>", "read and hash a rotating share of the copies per run (e.g. 10%); a full cycle covers every copy").option("--require-immutable", "exit 4 when a copy is not immutable")).action(action("offsite verify", offsiteVerifyCommand as Handler));
  targetOptions(offsite.command("extend-locks").description("move the Object Lock retention of every copy offsite retention still keeps (push runs it too)").option("--context <name>").option("--all-contexts")).action(action("offsite extend-locks", offsiteExtendLocksCommand as Handler));
  targetOptions(offsite.command("prune").description("apply the offsite retention (default 7 daily + 4 weekly + 3 monthly); never deletes what is under retention").option("--context <name>").option("--dry-run")).action(action("offsite prune", offsitePruneCommand as Handler));

  const drill = program
    .command("drill")
    .description("quarterly restore drill: restore the newest verified snapshot into a scratch root and validate it")
    .option("--context <name>")
    .option("--identity <file>", "age identity file for encrypted snapshots")
    .option("--operator <who>")
    .option("--doctor-cmd <command>", "also run this doctor against the scratch root")
    .action(action("drill", drillCommand as Handler));
  drill
    .command("status")
    .description("last drill per context and when the next is due; exit 8 when a mandatory one is overdue")
    .option("--context <name>", "a context to report (repeatable; default: every context in the backup root)", collect)
    .option("--metrics-file <file>", "write the drill gauges in Prometheus text format here, atomically")
    .action(action("drill status", drillStatusCommand as Handler));

  program
    .command("status")
    .description("the fleet at a glance: newest full and incremental, chain, drill, offsite copies, block, last tick; exit 11 when a context needs attention")
    .option("--context <name>", "one context")
    .option("--all-contexts", "every context of the state root and the backup root (the default)")
    .option("--metrics-file <file>", "also write Prometheus metrics here, atomically (node_exporter textfile collector)")
    .action(action("status", statusCommand as Handler));

  program.command("doctor").description("post-restore validation of a context (si's doctor envelope)").option("--context <name>").action(action("doctor", doctorCommand as Handler));
  program.command("unblock").description("clear a post-restore block once doctor (and the external doctor that blocked) passes").option("--context <name>").option("--ticket <incident-id>").option("--operator <who>").option("--doctor-cmd <command>", "the external doctor to pass (default: the one recorded in the block marker)").action(action("unblock", unblockCommand as Handler));
  program.command("rollback").description("put back the contents the last restore moved aside").option("--context <name>").option("--ticket <incident-id>").option("--operator <who>").action(action("rollback", rollbackCommand as Handler));
  program.command("keygen").description("write a new age identity (0600) and print its recipient").option("--out <file>", "where to write the identity").option("--force", "overwrite an existing file").action(action("keygen", keygenCommand as Handler));
  program.command("demo").description("round trip on a throwaway sample state root").option("--keep", "keep the demo's folders").action(action("demo", demoCommand as Handler));
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes("--json");
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return 0;
      const usage = new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", err.message.replace(/^error: /, ""), {
        remediation: "See `paas-backup --help` or `paas-backup <command> --help`.",
        stage: "arguments",
      });
      // commander already printed its message on stderr; under --json, stdout still gets the envelope.
      return json ? printFailure(null, argv[2] ?? "", "", usage, true) : usage.exitCode;
    }
    return printFailure(null, argv[2] ?? "", "", err, json);
  }
  return exitCode;
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(redactText(`paas-backup: ${(err as Error).message}\n`));
    process.exitCode = ExitCode.unexpected;
  },
);
