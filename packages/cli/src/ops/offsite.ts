import { hostname } from "node:os";
import {
  fetchChainFromOffsite,
  offsiteRecordsIn,
  offsiteAfterTick,
  type TickOffsiteResult,
  pushOffsite,
  type OffsiteRestorePlan,
  type PushResult,
} from "@paas-backup/core/offsite";
import { UsageError } from "@paas-backup/core/errors";
import type { ContextSession } from "@paas-backup/core/context";
import type { ObjectStorage } from "@paas-backup/core/repository";
import type { Runtime } from "../runtime.js";
import { requireContext } from "../options/context.js";
import { lockedBy } from "../options/lock.js";
import { resolveTargets, type TargetFlags } from "../options/targets.js";
import { resolveDecryptor, resolveEncryptor, type KeyFlags } from "../options/keys.js";
import { resolveSigner } from "../options/signing.js";

/**
 * What a snapshot that is plaintext at home is encrypted to on its way offsite (issue 21 §5): the
 * recipients a snapshot would use (flags, then the config file), whatever --insecure-plaintext says
 * about the snapshot itself; and this host's signing key for the encrypted copy's checksum file.
 * Both are read only when such a snapshot is pushed.
 */
function pushKeys(rt: Runtime, flags: KeyFlags) {
  return {
    encryptor: () =>
      resolveEncryptor(rt, {
        ...(flags.recipient ? { recipient: flags.recipient } : {}),
        ...(flags.recipientsFile ? { recipientsFile: flags.recipientsFile } : {}),
      }),
    copySigner: () => resolveSigner(rt),
  };
}

/** Push one context to every target resolved from the flags (offsite push, and tick after each context). */
export async function pushForContext(
  rt: Runtime,
  context: string,
  flags: TargetFlags & KeyFlags,
  session?: ContextSession,
): Promise<PushResult[]> {
  const results: PushResult[] = [];
  // An s3:// root: the committed snapshots are copied from the bucket, under the context's lease
  // (prune removes nothing of a context while another host holds it).
  const shared = rt.shared ? await import("./shared.js") : null;
  const underLease = <T>(work: (repository?: ObjectStorage) => Promise<T>) =>
    shared
      ? shared.withLease(rt, `context/${context}`, "offsite push", async () =>
          work(await shared.committedView(rt.shared!, context)),
        )
      : work();
  for (const target of await resolveTargets(rt, flags))
    results.push(
      await underLease((repository) =>
        pushOffsite({
          // the command's session, or (the tick's push, after its snapshot's session ended) one of its own
          ...(session ? { session } : lockedBy(rt, context, "offsite push")),
          fs: rt.fs,
          backupRoot: rt.backupRoot,
          ...(repository ? { repository, records: offsiteRecordsIn(rt.shared!.storage) } : {}),
          context,
          target,
          clock: rt.clock,
          host: rt.shared?.host ?? hostname(),
          ...pushKeys(rt, flags),
          // every target is pushed; the command reports a refusal (exit 4) once all are done
          refusal: "report",
        }),
      ),
    );
  return results;
}

/** tick's offsite step for one context: push to every configured target, then apply each target's retention. */
export async function tickOffsiteForContext(
  rt: Runtime,
  context: string,
  keys: KeyFlags = {},
): Promise<TickOffsiteResult[]> {
  return offsiteAfterTick({
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    context,
    targets: await resolveTargets(rt, {}),
    clock: rt.clock,
    host: hostname(),
    ...pushKeys(rt, keys),
  });
}

/** --offsite-root takes a backup root id as offsite list prints it. */
export function requireRootId(value: string): void {
  if (!/^[0-9a-f]{16}$/.test(value))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      `--offsite-root ${JSON.stringify(value)} is not a backup root id`,
      {
        remediation: "Copy the ROOT column of `paas-backup offsite list --all-roots` (16 hex characters).",
        stage: "arguments",
      },
    );
}

/** restore --from-offsite: fetch what the chain needs into the backup root, then restore the newest restorable state. */
export function offsiteFetcher(
  rt: Runtime,
  flags: TargetFlags & {
    context?: string;
    snapshot?: string;
    fromOffsite?: string;
    fallback?: boolean;
    offsiteRoot?: string;
    offsitePlan?: OffsiteRestorePlan;
    identity?: string;
  },
): ((session: ContextSession) => Promise<void>) | undefined {
  if (!flags.fromOffsite) return undefined;
  return async (session) => {
    const context = requireContext(flags.context);
    if (flags.offsiteRoot) requireRootId(flags.offsiteRoot);
    const [target] = await resolveTargets(rt, { ...flags, target: flags.fromOffsite });
    // a copy encrypted on push comes home decrypted, as it was, when the restore has its identity
    const decryptor = await resolveDecryptor(rt, flags);
    const plan = await fetchChainFromOffsite({
      session,
      fs: rt.fs,
      backupRoot: rt.backupRoot,
      context,
      target: target!,
      snapshot: flags.snapshot ?? "latest",
      clock: rt.clock,
      fallback: flags.fallback === true,
      ...(flags.offsiteRoot ? { root: flags.offsiteRoot } : {}),
      ...(decryptor ? { decryptor } : {}),
    });
    flags.offsitePlan = plan;
    for (const w of plan.warnings) process.stderr.write(`warning: ${w}\n`);
    if (!rt.json) {
      if (plan.root)
        process.stderr.write(
          `offsite: using the copies of backup root ${plan.root.id}${plan.root.host ? ` (host ${plan.root.host})` : ""} at ${target!.storage.url}: ${plan.root.why}\n`,
        );
      process.stderr.write(
        `offsite: restoring ${plan.chosen}${plan.fetched.length ? `; fetched ${plan.fetched.join(", ")} from ${target!.storage.url}` : ""}${plan.local.length ? `; from the backup root: ${plan.local.join(", ")}` : ""}\n`,
      );
      if (plan.fallback)
        process.stderr.write(
          `offsite: NOT the snapshot asked for: ${plan.fallback.from} cannot be restored (${plan.fallback.reason}); --fallback restores ${plan.chosen}\n`,
        );
    }
    flags.snapshot = plan.chosen;
  };
}
