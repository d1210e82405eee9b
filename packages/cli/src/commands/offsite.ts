import { ExitCode, UsageError } from "@paas-backup/core/errors";
import {
  noRecipientRefusal,
  listOffsite,
  verifyOffsite,
  pruneOffsite,
  contextsAtTarget,
  extendLocks,
  targetWarnings,
  type DataSubset,
} from "@paas-backup/core/offsite";
import { withContext } from "@paas-backup/core/context";
import type { Runtime } from "../runtime.js";
import { humanBytes, table } from "../render/text.js";
import { printEnvelope } from "../envelope.js";
import { sessionOptions } from "../options/lock.js";
import { requireContext } from "../options/context.js";
import { contextsOf, fleetContexts } from "../options/context-list.js";
import { pushForContext, requireRootId } from "../ops/offsite.js";
import { offsiteRecordsOf } from "../ops/shared.js";
import { resolveTargets, type TargetFlags } from "../options/targets.js";

/** Run `work` over items with at most `limit` at once. */
async function pool<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i]!);
      }
    }),
  );
  return out;
}

export async function offsitePushCommand(
  rt: Runtime,
  flags: TargetFlags & { context?: string; allContexts?: boolean; requireImmutable?: boolean },
): Promise<number> {
  const contexts = flags.allContexts
    ? rt.shared
      ? await (await import("../ops/fleet.js")).sharedFleetContexts(rt)
      : await contextsOf(rt)
    : [requireContext(flags.context)];
  await resolveTargets(rt, flags); // fail on a bad target before any work
  const results = (
    await pool(contexts, rt.config.offsite.concurrency, (context) =>
      withContext(sessionOptions(rt, context, "offsite push"), (session) =>
        pushForContext(rt, context, flags, session),
      ),
    )
  ).flat();
  const problems = results.flatMap((r) =>
    r.problems.map((p) => ({ context: r.context, target: r.target, ...p })),
  );
  // --require-immutable judges every copy at the target, not only the ones this run pushed.
  const notImmutable = results.flatMap((r) =>
    r.copies.filter((c) => !c.immutable).map((c) => ({ context: r.context, target: r.target, id: c.id })),
  );
  // Plaintext snapshots with nothing to encrypt them to (issue 21 §5): everything else was pushed.
  const refusals = results
    .filter((r) => r.refused.length > 0)
    .map((r) => noRecipientRefusal(r.context, r.target, r.refused));
  const refusal = refusals[0]
    ? {
        code: refusals[0].code,
        stage: refusals[0].stage,
        target: refusals.map((e) => e.path).join(", "),
        message: refusals.map((e) => e.message).join("; "),
        remediation: refusals[0].remediation,
      }
    : null;
  const ok = problems.length === 0 && !refusal && !(flags.requireImmutable && notImmutable.length > 0);
  const warnings = [...new Set(results.flatMap((r) => r.warnings))];
  if (rt.json)
    printEnvelope(rt, {
      ok,
      ...(refusal && problems.length === 0 ? { error: refusal } : {}),
      command: "offsite push",
      context: flags.allContexts ? "" : contexts[0]!,
      mode: "live",
      count: results.length,
      warnings,
      data: results,
    });
  else {
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    rt.write(
      table([
        ["CONTEXT", "TARGET", "PUSHED", "ALREADY", "REPAIRED", "IMMUTABLE", "PROBLEMS"],
        ...results.map((r) => [
          r.context,
          r.target,
          r.pushed.map((c) => `${c.id} (${humanBytes(c.size)}, ${c.confirmedBy})`).join(", ") || "-",
          String(r.alreadyThere.length),
          r.repaired.map((x) => `${x.id}: ${x.reason}`).join("; ") || "-",
          r.immutability.enabled ? "yes" : `no: ${r.immutability.detail}`,
          r.problems.map((p) => `${p.id}: ${p.problem}`).join("; ") || "-",
        ]),
      ]),
    );
    if (flags.requireImmutable && notImmutable.length > 0)
      process.stderr.write(
        `not immutable: ${notImmutable.map((n) => `${n.context}/${n.id} at ${n.target}`).join(", ")}\n`,
      );
    if (refusal)
      process.stderr.write(
        `paas-backup offsite push: ${refusal.message}\n  code: ${refusal.code} (exit ${ExitCode.safety})\n  what to do: ${refusal.remediation}\n`,
      );
  }
  return ok ? ExitCode.ok : problems.length ? ExitCode.integrity : ExitCode.safety;
}

export async function offsiteExtendLocksCommand(
  rt: Runtime,
  flags: TargetFlags & { context?: string; allContexts?: boolean },
): Promise<number> {
  const contexts = flags.allContexts
    ? rt.shared
      ? await (await import("../ops/fleet.js")).sharedFleetContexts(rt)
      : await contextsOf(rt)
    : [requireContext(flags.context)];
  const data = [];
  for (const context of contexts)
    for (const target of await resolveTargets(rt, flags))
      data.push({
        context,
        target: target.storage.url,
        ...(await extendLocks({
          fs: rt.fs,
          backupRoot: rt.backupRoot,
          ...offsiteRecordsOf(rt),
          context,
          target,
          clock: rt.clock,
        })),
      });
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      command: "offsite extend-locks",
      context: flags.allContexts ? "" : contexts[0]!,
      mode: "live",
      count: data.length,
      data,
    });
  else
    rt.write(
      table([
        ["CONTEXT", "TARGET", "EXTENDED"],
        ...data.map((d) => [
          d.context,
          d.target,
          d.skipped
            ? `skipped: ${d.skipped}`
            : d.extended.map((e) => `${e.id} until ${e.retainUntil}`).join(", ") || "none needed",
        ]),
      ]),
    );
  return 0;
}

export async function offsiteListCommand(
  rt: Runtime,
  flags: TargetFlags & { context?: string; allRoots?: boolean; offsiteRoot?: string },
): Promise<number> {
  const context = requireContext(flags.context);
  if (flags.offsiteRoot) requireRootId(flags.offsiteRoot);
  const data = [];
  for (const target of await resolveTargets(rt, flags)) {
    const { entries, immutability, root, roots, otherRoots } = await listOffsite({
      fs: rt.fs,
      backupRoot: rt.backupRoot,
      ...offsiteRecordsOf(rt),
      context,
      target,
      clock: rt.clock,
      allRoots: flags.allRoots === true,
      ...(flags.offsiteRoot ? { root: flags.offsiteRoot } : {}),
    });
    // Plain data only: a SnapshotRef carries its storage driver (and an S3 client with it).
    const plain = entries.map(({ snapshot, ...e }) => ({
      ...e,
      kind: snapshot?.kind ?? null,
      encrypted: snapshot?.encrypted ?? null,
      location: snapshot?.artifactPath ?? null,
    }));
    data.push({
      target: target.storage.url,
      root,
      roots,
      otherRoots,
      immutability,
      warnings: targetWarnings(target),
      entries: plain,
    });
  }
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      command: "offsite list",
      context,
      mode: "live",
      count: data.reduce((n, d) => n + d.entries.length, 0),
      data,
    });
  else
    for (const d of data) {
      rt.write(`${d.target} (${d.immutability.detail}; this backup root: ${d.root ?? "no identity yet"})\n`);
      for (const w of d.warnings) process.stderr.write(`warning: ${w}\n`);
      const hostOf = (id: string | null) => (id ? (d.roots.find((r) => r.id === id)?.host ?? "") : "");
      rt.write(
        table([
          ["ID", "ROOT", "SIZE", "CONFIRMED", "IMMUTABLE UNTIL", "ENCRYPTION"],
          ...d.entries.map((e) => [
            e.id,
            e.own
              ? e.root
                ? "this"
                : "this (legacy layout)"
              : `${e.root}${hostOf(e.root) ? ` (${hostOf(e.root)})` : ""}`,
            e.artifact ? humanBytes(e.artifact.size) : "missing",
            e.own ? (e.confirmed ? "yes" : "no") : "other root",
            e.immutable ? (e.immutableUntil ?? "") : "not immutable",
            e.encryptedOnPush
              ? "age (on push)"
              : e.encrypted === null
                ? "-"
                : e.encrypted
                  ? "age"
                  : "PLAINTEXT",
          ]),
        ]),
      );
      // A fresh backup root (after a lost disk) has no copies of its own: name the roots that do.
      if (d.otherRoots.length) {
        rt.write(`this backup root has no copies of ${context} here; other backup roots do:\n`);
        for (const r of d.otherRoots)
          rt.write(
            `  ${r.id}${r.host ? ` (host ${r.host})` : ""}: ${r.copies} cop${r.copies === 1 ? "y" : "ies"}, newest ${r.newest}\n`,
          );
        rt.write(
          `(restore --from-offsite ${d.target} --snapshot <id> finds the copy when one root holds it; --offsite-root <root id> picks one)\n`,
        );
      } else if (!flags.allRoots && !flags.offsiteRoot)
        rt.write(
          "(copies of other backup roots: offsite list --all-roots; restore one with restore --from-offsite <target> --offsite-root <root>)\n",
        );
    }
  return 0;
}

/** `--read-data-subset 10%` or a size (`500M`, `2G`, `1048576`). */
export function parseDataSubset(value: string): DataSubset {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(value.trim());
  if (pct) {
    const percent = Number(pct[1]);
    if (percent > 0 && percent <= 100) return { percent };
  }
  const size = /^(\d+)([KMGT]i?B?|B)?$/i.exec(value.trim());
  if (size) {
    const unit = (size[2] ?? "B").toUpperCase()[0]!;
    const bytes =
      Number(size[1]) *
      ({ B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 } as Record<string, number>)[unit]!;
    if (bytes > 0) return { bytes };
  }
  throw new UsageError(
    "PAAS_BACKUP_INVALID_ARGUMENT",
    `--read-data-subset ${JSON.stringify(value)} is neither a percentage (1%-100%) nor a size`,
    {
      remediation:
        "For example --read-data-subset 10% (every copy is read over 10 runs) or --read-data-subset 2G.",
      stage: "arguments",
    },
  );
}

export async function offsiteVerifyCommand(
  rt: Runtime,
  flags: TargetFlags & {
    context?: string;
    deep?: boolean;
    requireImmutable?: boolean;
    readDataSubset?: string;
  },
): Promise<number> {
  const context = requireContext(flags.context);
  const subset = flags.readDataSubset ? parseDataSubset(flags.readDataSubset) : undefined;
  if (subset && flags.deep)
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "--deep reads every copy; --read-data-subset reads a share of them: pass one",
      {
        remediation: "Use --deep for a full read now, or --read-data-subset N% from cron.",
        stage: "arguments",
      },
    );
  const data = [];
  for (const target of await resolveTargets(rt, flags)) {
    const {
      results,
      immutability,
      subset: rotation,
    } = await verifyOffsite({
      fs: rt.fs,
      backupRoot: rt.backupRoot,
      ...offsiteRecordsOf(rt),
      context,
      target,
      clock: rt.clock,
      deep: flags.deep === true,
      ...(subset ? { readDataSubset: subset } : {}),
    });
    const warnings = [
      ...(immutability.enabled
        ? []
        : [`copies at ${target.storage.url} are not immutable: ${immutability.detail}`]),
      ...targetWarnings(target),
    ];
    data.push({ target: target.storage.url, immutability, warnings, subset: rotation, results });
  }
  const broken = data.some((d) => d.results.some((r) => !r.ok));
  const mutable = data.some((d) => d.results.some((r) => !r.immutable));
  if (rt.json)
    printEnvelope(rt, {
      ok: !broken && !(flags.requireImmutable && mutable),
      command: "offsite verify",
      context,
      mode: "live",
      count: data.reduce((n, d) => n + d.results.length, 0),
      data,
    });
  else
    for (const d of data) {
      for (const w of d.warnings) rt.write(`warning: ${w}\n`);
      rt.write(
        table([
          ["ID", "RESULT", "READ", "IMMUTABLE", "PROBLEMS"],
          ...d.results.map((r) => [
            r.id,
            r.ok ? "ok" : "FAILED",
            r.readData ? "bytes" : "metadata",
            r.immutable ? `until ${r.immutableUntil}` : "no",
            r.problems.join("; ") || "-",
          ]),
        ]),
      );
      if (d.subset)
        rt.write(
          `data subset: cycle ${d.subset.cycle}, read ${d.subset.readThisRun.length} this run, ${d.subset.leftInCycle} left in the cycle\n`,
        );
    }
  if (broken) return ExitCode.integrity;
  return flags.requireImmutable && mutable ? ExitCode.safety : ExitCode.ok;
}

export async function offsitePruneCommand(
  rt: Runtime,
  flags: TargetFlags & { context?: string; allContexts?: boolean; dryRun?: boolean },
): Promise<number> {
  const single = flags.allContexts ? null : requireContext(flags.context);
  const targets = await resolveTargets(rt, flags);
  // --all-contexts: the fleet this host knows, and every context any backup root left at the
  // target (a lost root's copies age out by the same rule instead of staying forever).
  // An s3:// root: the fleet's contexts as the hosts report them; deletes run under the bucket's
  // maintenance lease (any host takes it over once it lapses) and each context's lease, so no
  // host's push of the context runs meanwhile.
  const shared = rt.shared ? await import("../ops/shared.js") : null;
  const known = single
    ? [single]
    : shared
      ? await (await import("../ops/fleet.js")).sharedFleetContexts(rt)
      : await fleetContexts(rt);
  const underLease = <T>(name: string, work: () => Promise<T>) =>
    shared && flags.dryRun !== true ? shared.withLease(rt, name, "offsite prune", work) : work();
  const data = await underLease("maintenance", async () => {
    const rows = [];
    for (const target of targets) {
      const contexts = single ? known : [...new Set([...known, ...(await contextsAtTarget(target))])].sort();
      for (const context of contexts)
        rows.push({
          context,
          target: target.storage.url,
          ...(await underLease(`context/${context}`, () =>
            pruneOffsite({
              fs: rt.fs,
              backupRoot: rt.backupRoot,
              ...offsiteRecordsOf(rt),
              context,
              target,
              clock: rt.clock,
              dryRun: flags.dryRun === true,
            }),
          )),
        });
    }
    return rows;
  });
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      command: "offsite prune",
      context: single ?? "",
      mode: flags.dryRun ? "dry-run" : "live",
      count: data.length,
      data,
    });
  else {
    const removed = flags.dryRun ? "would remove" : "removed";
    rt.write(
      table([
        ["CONTEXT", "ROOT", "ID", "ACTION", "WHY"],
        ...data.flatMap((d) => [
          ...d.keep.map((k) => [d.context, "this", k.id, "keep", k.reasons.join(", ")]),
          ...d.remove.map((id) => [d.context, "this", id, removed, "not kept by the offsite policy"]),
          ...d.otherRoots.flatMap((r) => [
            ...r.keep.map((k) => [d.context, r.root ?? "-", k.id, "keep", k.reasons.join(", ")]),
            ...r.remove.map((id) => [
              d.context,
              r.root ?? "-",
              id,
              removed,
              "not kept by the offsite policy (another backup root's copy)",
            ]),
          ]),
        ]),
      ]),
    );
  }
  return 0;
}
