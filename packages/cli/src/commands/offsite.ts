import { pushOffsite, listOffsite, verifyOffsite, pruneOffsite, fetchFromOffsite, withContextLock, type PushResult } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { humanBytes, printEnvelope, table } from "../output.js";
import { lockOptions, requireContext } from "./common.js";
import { contextsOf } from "./tick.js";
import { resolveTargets, type TargetFlags } from "../targets.js";

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

export async function pushForContext(rt: Runtime, context: string, flags: TargetFlags): Promise<PushResult[]> {
  const results: PushResult[] = [];
  for (const target of await resolveTargets(rt, flags)) results.push(await pushOffsite({ fs: rt.fs, backupRoot: rt.backupRoot, context, target, clock: rt.clock }));
  return results;
}

export async function offsitePushCommand(rt: Runtime, flags: TargetFlags & { context?: string; allContexts?: boolean; requireImmutable?: boolean }): Promise<number> {
  const contexts = flags.allContexts ? contextsOf(rt) : [requireContext(flags.context)];
  await resolveTargets(rt, flags); // fail on a bad target before any work
  const results = (
    await pool(contexts, rt.config.offsite.concurrency, (context) =>
      withContextLock(lockOptions(rt, context, "offsite push"), () => pushForContext(rt, context, flags)),
    )
  ).flat();
  const problems = results.flatMap((r) => r.problems.map((p) => ({ context: r.context, target: r.target, ...p })));
  const notImmutable = results.flatMap((r) => r.pushed.filter((c) => !c.immutable).map((c) => ({ context: r.context, target: r.target, id: c.id })));
  const ok = problems.length === 0 && !(flags.requireImmutable && notImmutable.length > 0);
  if (rt.json) printEnvelope(rt, { ok, command: "offsite push", context: flags.allContexts ? "" : contexts[0]!, mode: "live", count: results.length, data: results });
  else {
    rt.write(
      table([
        ["CONTEXT", "TARGET", "PUSHED", "ALREADY", "IMMUTABLE", "PROBLEMS"],
        ...results.map((r) => [r.context, r.target, r.pushed.map((c) => `${c.id} (${humanBytes(c.size)}, ${c.confirmedBy})`).join(", ") || "-", String(r.alreadyThere.length), r.immutability.enabled ? "yes" : `no: ${r.immutability.detail}`, r.problems.map((p) => `${p.id}: ${p.problem}`).join("; ") || "-"]),
      ]),
    );
  }
  return ok ? 0 : problems.length ? 3 : 4;
}

export async function offsiteListCommand(rt: Runtime, flags: TargetFlags & { context?: string }): Promise<number> {
  const context = requireContext(flags.context);
  const data = [];
  for (const target of await resolveTargets(rt, flags)) {
    const { entries, immutability } = await listOffsite({ fs: rt.fs, backupRoot: rt.backupRoot, context, target, clock: rt.clock });
    // Plain data only: a SnapshotRef carries its storage driver (and an S3 client with it).
    const plain = entries.map(({ snapshot, ...e }) => ({ ...e, kind: snapshot?.kind ?? null, encrypted: snapshot?.encrypted ?? null, location: snapshot?.artifactPath ?? null }));
    data.push({ target: target.storage.url, immutability, entries: plain });
  }
  if (rt.json) printEnvelope(rt, { ok: true, command: "offsite list", context, mode: "live", count: data.reduce((n, d) => n + d.entries.length, 0), data });
  else
    for (const d of data) {
      rt.write(`${d.target} (${d.immutability.detail})\n`);
      rt.write(table([["ID", "SIZE", "CONFIRMED", "IMMUTABLE UNTIL"], ...d.entries.map((e) => [e.id, e.artifact ? humanBytes(e.artifact.size) : "missing", e.confirmed ? "yes" : "no", e.immutable ? (e.immutableUntil ?? "") : "not immutable"])]));
    }
  return 0;
}

export async function offsiteVerifyCommand(rt: Runtime, flags: TargetFlags & { context?: string; deep?: boolean; requireImmutable?: boolean }): Promise<number> {
  const context = requireContext(flags.context);
  const data = [];
  for (const target of await resolveTargets(rt, flags)) {
    const { results, immutability } = await verifyOffsite({ fs: rt.fs, backupRoot: rt.backupRoot, context, target, clock: rt.clock, deep: flags.deep === true });
    const warnings = immutability.enabled ? [] : [`copies at ${target.storage.url} are not immutable: ${immutability.detail}`];
    data.push({ target: target.storage.url, immutability, warnings, results });
  }
  const broken = data.some((d) => d.results.some((r) => !r.ok));
  const mutable = data.some((d) => d.results.some((r) => !r.immutable));
  if (rt.json) printEnvelope(rt, { ok: !broken && !(flags.requireImmutable && mutable), command: "offsite verify", context, mode: "live", count: data.reduce((n, d) => n + d.results.length, 0), data });
  else
    for (const d of data) {
      for (const w of d.warnings) rt.write(`warning: ${w}\n`);
      rt.write(table([["ID", "RESULT", "IMMUTABLE", "PROBLEMS"], ...d.results.map((r) => [r.id, r.ok ? "ok" : "FAILED", r.immutable ? `until ${r.immutableUntil}` : "no", r.problems.join("; ") || "-"])]));
    }
  if (broken) return 3;
  return flags.requireImmutable && mutable ? 4 : 0;
}

export async function offsitePruneCommand(rt: Runtime, flags: TargetFlags & { context?: string; dryRun?: boolean }): Promise<number> {
  const context = requireContext(flags.context);
  const data = [];
  for (const target of await resolveTargets(rt, flags)) data.push({ target: target.storage.url, ...(await pruneOffsite({ fs: rt.fs, backupRoot: rt.backupRoot, context, target, clock: rt.clock, dryRun: flags.dryRun === true })) });
  if (rt.json) printEnvelope(rt, { ok: true, command: "offsite prune", context, mode: flags.dryRun ? "dry-run" : "live", count: data.length, data });
  else for (const d of data) rt.write(table([["ID", "ACTION", "WHY"], ...d.keep.map((k) => [k.id, "keep", k.reasons.join(", ")]), ...d.remove.map((id) => [id, flags.dryRun ? "would remove" : "removed", "not kept by the offsite policy"])]));
  return 0;
}

/** restore --from-offsite: fetch into the backup root when the local copy is gone or corrupt. */
export function offsiteFetcher(rt: Runtime, flags: TargetFlags & { context?: string; snapshot?: string; fromOffsite?: string }): (() => Promise<void>) | undefined {
  if (!flags.fromOffsite) return undefined;
  return async () => {
    const context = requireContext(flags.context);
    const [target] = await resolveTargets(rt, { ...flags, target: flags.fromOffsite });
    const r = await fetchFromOffsite({ fs: rt.fs, backupRoot: rt.backupRoot, context, target: target!, snapshot: flags.snapshot ?? "latest", clock: rt.clock });
    if (!rt.json) process.stderr.write(`offsite: ${r.fetched ? `fetched ${r.id} from ${target!.storage.url} (${r.reason})` : `using the local copy of ${r.id} (${r.reason})`}\n`);
    if (flags.snapshot === undefined || flags.snapshot === "latest") flags.snapshot = r.id;
  };
}
