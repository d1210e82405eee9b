import { PaasBackupError, ExitCode } from "@paas-backup/core/errors";
import { redactText } from "@paas-backup/core/redact";
import type { Runtime } from "./runtime.js";
import type { CommandSpec } from "./spec.js";
import { EXIT_ERROR_CODE, EXIT_MEANING, exitName } from "./exit-codes.js";
import type { Envelope } from "./envelope.js";
import { environmentError } from "./host/environment.js";
import { isClosedPipe } from "./host/closed-pipe.js";

export interface RunState {
  exitCode: number;
  ran: boolean;
  run: (spec: CommandSpec, flags: Record<string, unknown>, positional: string[]) => Promise<void>;
}

/** The envelope as printed: command name and count from the runner, and an `error` on every failure. */
export function sealEnvelope(
  command: string,
  exitCode: number,
  envelope: Envelope | null,
  context: string,
): Record<string, unknown> {
  const e: Envelope = envelope ?? { ok: exitCode === 0, context, mode: "live", data: [] };
  const { ok, context: ctx, mode, data, checks, error, command: _c, count: _n, ...extra } = e;
  const list = Array.isArray(checks) ? checks : Array.isArray(data) ? data : data === undefined ? [] : [data];
  const failed = !ok || exitCode !== 0;
  const out: Record<string, unknown> = {
    ok: ok && exitCode === 0,
    command,
    context: ctx,
    mode,
    count: list.length,
  };
  if (Array.isArray(checks)) out.checks = checks;
  out.data = Array.isArray(data)
    ? data
    : data === undefined
      ? Array.isArray(checks)
        ? undefined
        : []
      : [data];
  if (out.data === undefined) delete out.data;
  if (failed) {
    const name = exitName(exitCode) ?? "unexpected";
    out.error = error ?? {
      code: EXIT_ERROR_CODE[name] || EXIT_ERROR_CODE.unexpected,
      stage: "result",
      target: ctx,
      message: `${command}: ${EXIT_MEANING[name]}`,
      remediation: `Read the entries of \`data\` that are not ok; \`paas-backup ${command} --help\` lists the exit codes.`,
    };
  }
  return { ...out, ...extra };
}

/** Run one command from the table: runtime, handler, then exactly one envelope (--json) or the human failure text. */
export async function finishRun(
  command: string,
  spec: CommandSpec,
  flags: Record<string, unknown>,
  positional: string[],
): Promise<number> {
  const json = flags.json === true;
  const context = typeof flags.context === "string" ? flags.context : "";
  let rt: Runtime | null = null;
  try {
    // First, so the worker starts while the rest loads (a snapshot's first large file waited for it).
    if (spec.prestartScanner === true && flags.dryRun !== true)
      (await import("@paas-backup/core/scan-lane")).prestartScanWorker();
    const { createRuntime } = await import("./runtime.js");
    rt = await createRuntime(flags, process.env, command);
    if (
      typeof spec.prestartScanner === "function" &&
      flags.dryRun !== true &&
      (await spec.prestartScanner(flags, rt))
    )
      (await import("@paas-backup/core/scan-lane")).prestartScanWorker();
    if (rt.remoteRoot) {
      // An s3:// root: connect before anything else, so the locks and caches below are the host's cache of it.
      const { connectSharedRoot, refuseRemoteRoot } = await import("./host/shared-root.js");
      if (!spec.sharedRoot) {
        const { COMMANDS, commandName } = await import("./spec.js");
        throw refuseRemoteRoot(
          command,
          rt.remoteRoot.url,
          COMMANDS.filter((c) => c.sharedRoot).map(commandName),
        );
      }
      // A dry run writes nothing to the bucket: no probe, no repository identity made there.
      rt.shared = await connectSharedRoot(
        rt,
        spec.sharedRoot === "write" && flags.dryRun === true ? "dry-run" : spec.sharedRoot,
      );
      rt.backupRoot = rt.shared.cacheDir;
    }
    if (spec.writesSnapshots && flags.dryRun !== true)
      (await import("./host/interrupt.js")).cleanUpOnInterrupt(command, rt.backupRoot);
    if (spec.recover && typeof flags.context === "string") {
      // Commands that touch a context first finish or undo a swap a crash interrupted.
      const [{ recoverFirst }, { validateContextName }] = await Promise.all([
        import("./options/lock.js"),
        import("@paas-backup/core/policy"),
      ]);
      await recoverFirst(rt, validateContextName(flags.context));
    }
    const handler = await spec.load();
    const exitCode = await handler(rt, flags, positional);
    // Everything printed passes the secret scanner (issue 10 §6), the envelope included.
    if (json)
      process.stdout.write(
        redactText(`${JSON.stringify(sealEnvelope(command, exitCode, rt.envelope, context), null, 2)}\n`),
      );
    return exitCode;
  } catch (err) {
    return printFailure(command, context, err, json);
  }
}

/** Print a failure as si does: the envelope with `error` under --json, a short message on stderr otherwise. */
export function printFailure(command: string, context: string, raw: unknown, json: boolean): number {
  if (isClosedPipe(raw)) return ExitCode.ok;
  const err =
    raw instanceof PaasBackupError && raw.exitCode !== ExitCode.unexpected
      ? // core names the machine's errno errors itself; the CLI adds what only the host can say
        // (the file's owner and mode, the filesystem's free space), from the errno error underneath
        raw.stage === "filesystem" && raw.data.errno !== undefined && raw.cause !== undefined
        ? (environmentError(raw.cause, raw.path ? { path: raw.path } : {}) ?? raw)
        : raw
      : (environmentError(raw) ?? raw);
  const known = err instanceof PaasBackupError;
  const code = known ? err.code : "PAAS_BACKUP_UNEXPECTED";
  const message = known ? err.message : `unexpected failure: ${(err as Error)?.message ?? String(err)}`;
  const remediation = known
    ? err.remediation
    : "This is a bug in paas-backup: rerun with PAAS_BACKUP_DEBUG=1 and report the message and stack.";
  const exitCode = known ? err.exitCode : ExitCode.unexpected;
  if (json) {
    const envelope: Record<string, unknown> = {
      ok: false,
      command,
      context,
      mode: "live",
      error: {
        code,
        stage: known ? err.stage : "run",
        target: known ? (err.path ?? context) : context,
        message,
        remediation,
      },
    };
    if (known && Object.keys(err.data).length) envelope.details = err.data;
    process.stdout.write(redactText(`${JSON.stringify(envelope, null, 2)}\n`));
  } else {
    process.stderr.write(
      redactText(
        `paas-backup ${command}: ${message}\n  code: ${code} (exit ${exitCode})\n  what to do: ${remediation}\n`,
      ),
    );
    if (!known && process.env.PAAS_BACKUP_DEBUG)
      process.stderr.write(redactText(`${(err as Error)?.stack}\n`));
  }
  return exitCode;
}
