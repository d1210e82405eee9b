#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import { TOOL_VERSION } from "@paas-backup/core/version";
import { UsageError } from "@paas-backup/core/errors";
import { redactText } from "@paas-backup/core/redact";
import {
  COMMANDS,
  GLOBAL_FLAGS,
  GROUPS,
  collect,
  commandName,
  type CommandSpec,
  type FlagSpec,
} from "./spec.js";
import { exitTable } from "./exit-codes.js";
import { finishRun, printFailure, type RunState } from "./run.js";
import { endQuietlyOnClosedPipe, isClosedPipe } from "./host/closed-pipe.js";
import { cleanUpUnfinishedRun, keptText } from "./host/interrupt.js";

// The AWS SDK warns on every run that its 2027 releases will need Node 22; operators cannot act
// on that from a cron log, so that one warning is dropped and every other is kept.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === "string" ? warning : `${warning.name} ${warning.message}`;
  const type = typeof rest[0] === "string" ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
  if (type === "NodeVersionSupportWarning" || /NodeVersionSupportWarning/.test(text)) return;
  (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

function option(flag: FlagSpec): Option {
  const o = new Option(flag.flags, flag.required ? `${flag.description} (required)` : flag.description);
  if (flag.defaultValue !== undefined) o.default(flag.defaultValue);
  if (flag.repeatable)
    o.argParser(flag.parse ? (v: string, prev: unknown) => collect(flag.parse!(v) as string, prev) : collect);
  else if (flag.parse) o.argParser(flag.parse);
  return o;
}

/** "  NN  meaning", wrapped under itself to stay within 100 columns. */
function exitRows(rows: [number, string][]): string {
  const wrap = (text: string, width: number) =>
    text.split(" ").reduce<string[]>((lines, word) => {
      const last = lines[lines.length - 1];
      if (last !== undefined && `${last} ${word}`.length <= width)
        lines[lines.length - 1] = `${last} ${word}`;
      else lines.push(word);
      return lines;
    }, []);
  return rows
    .map(([code, meaning]) => `  ${String(code).padStart(2)}  ${wrap(meaning, 94).join("\n      ")}`)
    .join("\n");
}

function exitCodesText(spec: CommandSpec): string {
  return exitRows(exitTable(["ok", ...spec.exitCodes]));
}

export function helpFooter(spec: CommandSpec): string {
  return `\nExamples:\n${spec.examples.map((e) => `  $ ${e}`).join("\n")}\n\nExit codes:\n${exitCodesText(spec)}\n`;
}

/** The parser, built from the command table (spec.ts): help, completion and the README come from the same data. */
export function buildProgram(state: RunState): Command {
  const program = new Command("paas-backup")
    .description(
      "Back up, verify and restore the private state of si paas (policy: PaaS backup and restore policy).",
    )
    .version(TOOL_VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help for the command")
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  for (const flag of GLOBAL_FLAGS) program.addOption(option(flag));
  program.addHelpText(
    "after",
    `\nExit codes (every command):\n${exitRows(exitTable())}\n\nRun \`paas-backup <command> --help\` for a command's flags, examples and exit codes.\n`,
  );

  const groups = new Map<string, Command>();
  for (const spec of COMMANDS) {
    let parent = program;
    for (const part of spec.path.slice(0, -1)) {
      let group = groups.get(part) ?? (parent.commands.find((c) => c.name() === part) as Command | undefined);
      if (!group) {
        group = parent
          .command(part)
          .description(GROUPS[part] ?? "")
          .helpOption("-h, --help", "show help for the command");
        groups.set(part, group);
      }
      parent = group;
    }
    const leaf = spec.path[spec.path.length - 1]!;
    const existing = parent.commands.find((c) => c.name() === leaf);
    const cmd = existing ?? parent.command(leaf);
    cmd.description(spec.summary).helpOption("-h, --help", "show help for the command");
    for (const arg of spec.args ?? [])
      cmd.argument(arg.required ? `<${arg.name}>` : `[${arg.name}]`, arg.description);
    for (const flag of spec.flags) cmd.addOption(option(flag));
    cmd.addHelpText("after", helpFooter(spec));
    cmd.action(async (...args: unknown[]) => {
      const self = args[args.length - 1] as Command;
      const positional = (args.slice(0, -2) as (string | undefined)[]).filter(
        (a): a is string => typeof a === "string",
      );
      await state.run(spec, self.optsWithGlobals() as Record<string, unknown>, positional);
    });
  }
  return program;
}

/**
 * The command a (possibly malformed) argument list names, walking only words that are command
 * names: `--json snapshot --recipent x` is "snapshot", never "--json".
 */
export function commandFromArgv(args: readonly string[]): string {
  const path: string[] = [];
  const valued = new Set(
    GLOBAL_FLAGS.filter((f) => f.flags.includes("<")).map((f) => f.flags.split(" ")[0]!),
  );
  for (let i = 0; i < args.length; i++) {
    const word = args[i]!;
    if (word.startsWith("-")) {
      if (valued.has(word)) i++;
      continue;
    }
    const next = [...path, word];
    if (COMMANDS.some((c) => next.every((p, j) => c.path[j] === p))) path.push(word);
    else if (path.length) break;
  }
  return path.join(" ");
}

/** True when the arguments are global flags (and their values) and nothing else. */
function onlyGlobalFlags(args: readonly string[]): boolean {
  const valued = new Set(
    GLOBAL_FLAGS.filter((f) => f.flags.includes("<")).map((f) => f.flags.split(" ")[0]!),
  );
  for (let i = 0; i < args.length; i++) {
    const word = args[i]!;
    if (!word.startsWith("-")) return false;
    if (valued.has(word)) i++;
  }
  return true;
}

function contextFromArgv(args: readonly string[]): string {
  const i = args.findIndex((a) => a === "--context" || a.startsWith("--context="));
  if (i < 0) return "";
  return args[i]!.includes("=") ? args[i]!.slice("--context=".length) : (args[i + 1] ?? "");
}

export async function main(argv: string[]): Promise<number> {
  const args = argv.slice(2);
  const json = args.includes("--json");
  const state: RunState = { exitCode: 0, ran: false, run: async () => undefined };
  state.run = async (spec, flags, positional) => {
    state.ran = true;
    state.exitCode = await finishRun(commandName(spec), spec, flags, positional);
  };
  const program = buildProgram(state);
  // No arguments (or only a group, like `paas-backup offsite`): the usage, not an error.
  const named = commandFromArgv(args);
  const asksHelpOrVersion = args.some((a) => ["-h", "--help", "-V", "--version"].includes(a));
  if (!named && args.length > 0 && !asksHelpOrVersion && onlyGlobalFlags(args)) {
    // Only global flags: the usage, and under --json still one envelope.
    const usage = new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "no command given", {
      remediation:
        "Name a command, e.g. `paas-backup list --context <name>`; `paas-backup --help` lists them.",
      stage: "arguments",
    });
    if (json) return printFailure("", "", usage, true);
    process.stdout.write(program.helpInformation());
    return 0;
  }
  if (
    args.length === 0 ||
    (named &&
      !COMMANDS.some((c) => commandName(c) === named) &&
      args.filter((a) => !a.startsWith("-")).length === named.split(" ").length &&
      !args.some((a) => a === "-h" || a === "--help"))
  ) {
    const target = named ? (program.commands.find((c) => c.name() === named) ?? program) : program;
    process.stdout.write(target.helpInformation());
    return 0;
  }
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === "commander.helpDisplayed" ||
        err.code === "commander.version" ||
        err.code === "commander.help"
      )
        return 0;
      const usage = new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", err.message.replace(/^error: /, ""), {
        remediation: `See \`paas-backup ${named ? `${named} ` : ""}--help\`.`,
        stage: "arguments",
      });
      // commander already printed its message on stderr; under --json, stdout still gets the envelope.
      return json ? printFailure(named, contextFromArgv(args), usage, true) : usage.exitCode;
    }
    return printFailure(named, contextFromArgv(args), err, json);
  }
  return state.exitCode;
}

/**
 * Node ends a process whose event loop ran dry with exit code 0, even while the command still
 * awaits a promise nothing can settle any more (a stream that closed without an error, a worker
 * that was unreferenced): a snapshot ended that way with exit 0 and not a byte of output in a full
 * test run. Such a run is a bug in paas-backup, and says so: the failure (one envelope under
 * --json), exit 1, and what it left behind removed as for Ctrl-C.
 */
function failUnfinishedRun(): void {
  const args = process.argv.slice(2);
  const kept = cleanUpUnfinishedRun();
  const stalled = new Error(
    `the command stopped before it finished: it was waiting for work that could no longer complete; ${keptText(kept)}`,
  );
  process.exitCode = printFailure(
    commandFromArgv(args),
    contextFromArgv(args),
    stalled,
    args.includes("--json"),
  );
}

let settled = false;
endQuietlyOnClosedPipe();
process.once("beforeExit", () => {
  if (!settled) failUnfinishedRun();
});
main(process.argv).then(
  (code) => {
    settled = true;
    process.exitCode = code;
  },
  (err) => {
    settled = true;
    if (isClosedPipe(err)) return;
    process.stderr.write(redactText(`paas-backup: ${(err as Error).message}\n`));
    process.exitCode = 1;
  },
);
