import { allowRepoStateFrom } from "@paas-backup/core/policy";
import { runTick, type SharedTick, type TickResult } from "@paas-backup/core/tick";
import type { TickOffsiteResult } from "@paas-backup/core/offsite";
import { ExitCode, UsageError } from "@paas-backup/core/errors";
import { resolveSigner } from "../options/signing.js";
import type { Runtime } from "../runtime.js";
import { contextsOf } from "../options/context-list.js";
import { REDACTION_REMEDIATION, redactionNotice, redactionSummary } from "../render/redactions.js";
import { printEnvelope } from "../envelope.js";
import { table } from "../render/text.js";
import { lockOptions, lockOwner } from "../options/lock.js";
import { parseInclude } from "../options/include.js";
import { resolveEncryptor, type KeyFlags } from "../options/keys.js";
import { retentionPolicy } from "../options/retention.js";
import { ping, type PingResult } from "../host/ping.js";
import { fleetStatus, writeStatusMetrics } from "../ops/fleet.js";
import { resolveTargets } from "../options/targets.js";
import { pushForContext, tickOffsiteForContext } from "../ops/offsite.js";

/** tick as the CLI runs it: with an offsite push after each context when targets are configured. */
export async function tickAction(rt: Runtime, flags: TickFlags): Promise<number> {
  return tickCommand(
    rt,
    flags,
    (await resolveTargets(rt, {}, false)).length > 0
      ? rt.shared
        ? // an s3:// root: the push here; the targets' retention is the run's maintenance (below)
          (r, context) => pushForContext(r, context, flags)
        : (r, context) => tickOffsiteForContext(r, context, flags)
      : undefined,
  );
}

export type OffsiteHook = (rt: Runtime, context: string) => Promise<unknown>;

type TickFlags = KeyFlags & {
  context?: string;
  allContexts?: boolean;
  include?: string;
  pingUrl?: string;
  metricsFile?: string;
};

type SharedOps = typeof import("../ops/shared.js");

/**
 * tick: the one command for cron. Idempotent: a second run in the same hour does nothing. Its
 * steps: ping start, run core's tick (on a bucket through the shared ops), this host's status
 * object, ping the outcome, the metrics file, then the output.
 */
export async function tickCommand(rt: Runtime, flags: TickFlags, offsite?: OffsiteHook): Promise<number> {
  if (!flags.context && !flags.allContexts) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "tick needs --context <name> or --all-contexts", {
      remediation: "Name one context, or pass --all-contexts for every context of the state root.",
      stage: "arguments",
    });
  }
  const pings = pinger(rt, flags);
  await pings.once("start");
  let result: TickResult;
  // An s3:// root: each context under its lease in the bucket, its outcome in the bucket's history
  // and in this host's status object (written once, after the run), nothing in a local backup root.
  const shared = rt.shared ? await import("../ops/shared.js") : null;
  const history: PendingHistory[] = [];
  try {
    result = await runTick(tickOptions(rt, flags, offsite, shared, history));
  } catch (err) {
    // the contexts ticked before the run failed keep their history lines
    if (shared)
      await maintainThenRecord(rt, shared, history, async () => new Map<string, { removed: string[] }>());
    await pings.once("fail");
    throw err;
  }
  const { outcomes, contexts } = result;
  // An s3:// root: retention and the offsite targets' retention run after the snapshots, as
  // maintenance under the bucket's maintenance lease (the folder root's tick prunes per context).
  // Whichever host takes the lease does the whole fleet's (the contexts it ticked, and every
  // context the hosts report); the others do not wait for it. So every context is pruned each
  // hour while any host ticks, whichever host retires.
  const maintenance = shared
    ? await maintainThenRecord(rt, shared, history, async () => {
        const { sharedFleetContexts } = await import("../ops/fleet.js");
        const reported = await sharedFleetContexts(rt).catch(() => [] as string[]);
        return shared.tickMaintenance(
          rt,
          [...new Set([...outcomes.filter((o) => o.ok).map((o) => o.context), ...reported])].sort(),
          { policy: retentionPolicy(rt, {}), keepTags: rt.config.retention.keepTags ?? [] },
        );
      })
    : null;
  const warned = new Set<string>();
  for (const o of outcomes) {
    const m = maintenance?.get(o.context);
    if (!m) continue;
    o.pruned = m.removed;
    (o as typeof o & { maintenance: unknown }).maintenance = m;
    const warning = m.error ? (m.ran ? `${o.context}: ${m.error.message}` : m.error.message) : null;
    if (warning && !warned.has(warning)) process.stderr.write(`warning: ${warning}\n`);
    if (warning) warned.add(warning);
  }
  if (shared)
    await shared.writeTickStatus(rt, outcomes).catch((err: unknown) => {
      process.stderr.write(
        `warning: could not write this host's status object to ${rt.shared!.url}: ${(err as Error).message}\n`,
      );
    });
  const failed = outcomes.filter((o) => !o.ok);
  const ok = failed.length === 0;
  await pings.once(ok ? "success" : "fail");
  const metrics = flags.metricsFile
    ? await writeTickMetrics(rt, flags, flags.metricsFile, shared, contexts)
    : null;
  // Redactions are named per context: a fleet tick's warning says which context leaked what.
  const redacted = outcomes
    .map((o) => ({ context: o.context, redactions: o.redactions.filter((r) => !r.acknowledged) }))
    .filter((o) => o.redactions.length > 0);
  if (rt.json) {
    printEnvelope(rt, {
      ok,
      ...(ok && result.exitCode === ExitCode.redacted
        ? {
            // every entry is ok: the exit code is about the redactions, and the error says so
            error: {
              code: "PAAS_BACKUP_REDACTED",
              stage: "result",
              target: redacted.map((o) => o.context).join(", "),
              message: redacted.map((o) => redactionSummary(o.redactions, o.context)).join("; "),
              remediation: REDACTION_REMEDIATION,
            },
          }
        : {}),
      command: "tick",
      context: flags.allContexts ? "" : contexts[0]!,
      mode: "live",
      count: outcomes.length,
      failed: failed.length,
      ...(pings.url ? { pings: pings.sent } : {}),
      ...(metrics ? { metrics } : {}),
      data: outcomes,
    });
  } else printTickTable(rt, outcomes);
  if (!rt.json) for (const o of redacted) process.stderr.write(redactionNotice(o.redactions, o.context));
  return result.exitCode;
}

/** The healthcheck pings of one run (start, then success or fail); a failed ping warns and never fails the backup. */
function pinger(rt: Runtime, flags: TickFlags) {
  const url = flags.pingUrl ?? rt.config.pingUrl;
  const sent: PingResult[] = [];
  const once = async (event: PingResult["event"]) => {
    if (!url) return;
    const r = await ping(url, event);
    sent.push(r);
    // The URL is the check's credential at healthchecks.io: never printed.
    if (!r.ok)
      process.stderr.write(`warning: ping (${event}) failed: ${r.detail}; the backup is not affected\n`);
  };
  return { url, sent, once };
}

/** A context's tick line for the bucket's history, kept until the run's maintenance is done. */
interface PendingHistory {
  context: string;
  line: { at: string } & Record<string, unknown>;
}

/**
 * The run's maintenance, then each context's tick line written to the bucket's history with what
 * maintenance removed of that context (`pruned`): written before it, every line said nothing was
 * pruned. The lines are written however maintenance ended.
 */
async function maintainThenRecord<T extends Map<string, { removed: string[] }>>(
  rt: Runtime,
  shared: SharedOps,
  history: PendingHistory[],
  maintain: () => Promise<T>,
): Promise<T> {
  let done: T | null = null;
  try {
    done = await maintain();
    return done;
  } finally {
    for (const { context, line } of history)
      await shared
        .appendSharedHistory(rt, context, "ticks", { ...line, pruned: done?.get(context)?.removed ?? [] })
        .catch((err: unknown) =>
          process.stderr.write(
            `warning: could not record the tick outcome of ${context} in ${rt.shared!.url}: ${(err as Error).message}\n`,
          ),
        );
  }
}

/** Core's tick options from the flags and the config; on an s3:// root, the bucket's lease, commit and history. */
function tickOptions(
  rt: Runtime,
  flags: TickFlags,
  offsite: OffsiteHook | undefined,
  shared: SharedOps | null,
  history: PendingHistory[],
): Parameters<typeof runTick>[0] {
  const sharedTick: SharedTick | undefined = shared
    ? {
        repository: (context) => shared.committedView(rt.shared!, context),
        exclusive: (context, work) =>
          shared.withLease(rt, `context/${context}`, "tick", (lease) =>
            work((snapshot) => shared.commitSnapshot(rt, lease, snapshot)),
          ),
        // written after the run's maintenance (maintainThenRecord), with what it pruned
        record: async (o, durationSeconds) => {
          history.push({
            context: o.context,
            line: {
              schema: "paas-backup/history-tick@1",
              at: rt.clock().toISOString(),
              context: o.context,
              ok: o.ok,
              action: o.action,
              reason: o.reason,
              snapshot: o.snapshot ? { id: o.snapshot.id, kind: o.snapshot.kind } : null,
              error: o.error ? { code: o.error.code, message: o.error.message } : null,
              durationSeconds,
            },
          });
        },
      }
    : undefined;
  return {
    ...(sharedTick ? { shared: sharedTick } : {}),
    fs: rt.fs,
    stateRoot: rt.stateRoot,
    backupRoot: rt.backupRoot,
    ...(flags.allContexts ? { allContexts: true } : { contexts: [flags.context!] }),
    clock: rt.clock,
    owner: lockOwner("tick"),
    lockTimeoutMs: rt.config.lockTimeoutSeconds * 1000,
    // resolved per context, as each context's own failure (a bad --include only when a snapshot is due)
    include: () => parseInclude(flags.include, rt.config.include),
    encryptor: () => resolveEncryptor(rt, flags),
    signer: () => resolveSigner(rt),
    insecurePlaintext: flags.insecurePlaintext === true,
    secretAllow: rt.config.secretAllow,
    secretAcknowledged: rt.config.secretAcknowledged,
    allowRepoState: allowRepoStateFrom(rt.env),
    memberCache: true,
    // an s3:// root keeps the verified-chain cache in the host's cache, not the bucket
    ...(shared ? { chainCache: shared.hostChainCache(rt) } : {}),
    retention: retentionPolicy(rt, {}),
    keepTags: rt.config.retention.keepTags ?? [],
    ...(offsite ? { afterEach: (context: string) => offsite(rt, context) } : {}),
    onLockWait: (context) => lockOptions(rt, context, "tick").onWait,
    onRecovered: (r) =>
      process.stderr.write(
        `paas-backup: recovery: ${r.message}${r.incidentFile ? ` (recorded in ${r.incidentFile})` : ""}\n`,
      ),
    onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
  };
}

/**
 * The metrics cover every context of the fleet, not only the ticked one: the file is the whole
 * picture. A metrics file that cannot be written warns; the tick's outcome stands.
 */
async function writeTickMetrics(
  rt: Runtime,
  flags: TickFlags,
  file: string,
  shared: SharedOps | null,
  contexts: string[],
): Promise<{ file: string; written: boolean; error?: string }> {
  try {
    if (shared) await (await import("../ops/fleet.js")).writeFleetMetrics(rt, file);
    else
      await writeStatusMetrics(
        rt,
        file,
        await fleetStatus(
          rt,
          flags.allContexts
            ? contexts
            : [...new Set([...(await contextsOf(rt).catch(() => [])), ...contexts])].sort(),
        ),
      );
    return { file, written: true };
  } catch (err) {
    process.stderr.write(`warning: could not write the metrics file ${file}: ${(err as Error).message}\n`);
    return { file, written: false, error: (err as Error).message };
  }
}

/** The human output: one row per context, then why each did what it did and the long texts below. */
function printTickTable(rt: Runtime, outcomes: TickResult["outcomes"]): void {
  rt.write(
    table([
      ["CONTEXT", "ACTION", "SNAPSHOT", "PRUNED", "RESULT"],
      ...outcomes.map((o) => [
        o.context,
        o.action,
        o.snapshot?.id ?? "-",
        String(o.pruned.length),
        o.ok ? (o.vanished ? "ok (vanished)" : "ok") : `FAILED (${o.error?.code})`,
      ]),
    ]),
  );
  // Why each context did what it did, and the long texts, below the table.
  for (const o of outcomes) {
    if (o.vanished) {
      // A context the backup root holds with no folder in the state root: say so, and what its
      // copies offsite did (they age out by each target's retention, as every context's).
      rt.write(`${o.context}: vanished: ${o.reason}${offsiteRetentionNote(o.offsite)}\n`);
      if (o.error) rt.write(`  ${o.error.message}\n  what to do: ${o.error.remediation}\n`);
      continue;
    }
    rt.write(
      `${o.context}: ${
        !o.ok
          ? o.action === "none"
            ? "failed"
            : `failed to take ${o.action === "incremental" ? "an" : "a"} ${o.action} snapshot`
          : o.action === "none"
            ? "nothing to do"
            : `took ${o.action === "incremental" ? "an" : "a"} ${o.action} snapshot`
      }: ${o.reason || "-"}${o.pruned.length ? `; pruned ${o.pruned.join(", ")}` : ""}\n`,
    );
    if (o.error) rt.write(`  ${o.error.message}\n  what to do: ${o.error.remediation}\n`);
  }
}

/** What each target's retention did in tick's offsite step, for one line of human output. */
function offsiteRetentionNote(offsite: unknown): string {
  if (!Array.isArray(offsite) || offsite.length === 0) return "";
  return `; ${(offsite as TickOffsiteResult[])
    .map(
      (r) =>
        `offsite ${r.target}: ${r.prune.keep.length} kept, ${r.prune.remove.length ? `removed ${r.prune.remove.join(", ")}` : "none removed"}`,
    )
    .join("; ")}`;
}
