import { auditKey, rotateRecipients, type SharedRotation } from "@paas-backup/core/keys";
import { UsageError } from "@paas-backup/core/errors";
import { resolveOperator, type Runtime } from "../runtime.js";
import { resolveSigner } from "../options/signing.js";
import { lockedBy } from "../options/lock.js";
import { table } from "../render/text.js";
import { printEnvelope } from "../envelope.js";
import { resolveEncryptor, resolveIdentityLines, type KeyFlags } from "../options/keys.js";
import { resolveTargets } from "../options/targets.js";
import { validateContextName } from "@paas-backup/core/policy";
import { listContexts } from "@paas-backup/core/context";
import { validateRecipient } from "@paas-backup/core/age";
import { offsiteRecordsIn } from "@paas-backup/core/offsite";

/**
 * keys audit: what a (retired, leaked) identity still opens among retained snapshots, at home and
 * at every configured offsite target, with when each goes. Exit 0 and count 0 when it opens nothing.
 */
export async function keysAuditCommand(
  rt: Runtime,
  flags: KeyFlags & { context?: string; allContexts?: boolean },
): Promise<number> {
  if ((flags.context !== undefined) === (flags.allContexts === true))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "keys audit needs --context or --all-contexts (not both)",
      {
        remediation: "Name one context with --context, or check every context with --all-contexts.",
        stage: "arguments",
      },
    );
  const identity = await resolveIdentityLines(rt, flags);
  if (!identity)
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "keys audit needs the identity to look for (--identity)",
      {
        remediation: "Pass --identity with the age identity file whose exposure you want to know.",
        stage: "arguments",
      },
    );
  const result = await auditKey({
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    contexts: flags.allContexts ? "all" : [validateContextName(flags.context!)],
    identities: identity.identities,
    offsiteTargets: await resolveTargets(rt, {}, false),
    policy: rt.config.retention,
    // an s3:// root: the bucket's committed snapshots, every context its hosts report
    ...(rt.shared ? { repository: await sharedRepository(rt) } : {}),
  });
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      context: flags.context ?? "",
      mode: "live",
      data: result.opens,
      checked: result.checked,
      plaintext: result.plaintext,
      exposedUntil: result.exposedUntil,
    });
  else if (result.opens.length === 0)
    rt.write(`${identity.path} opens none of the ${result.checked} encrypted snapshot(s) retained\n`);
  else {
    rt.write(
      `${identity.path} opens ${result.opens.length} of the ${result.checked} encrypted snapshot(s) retained, until ${result.exposedUntil}\n` +
        table([
          ["CONTEXT", "WHERE", "ID", "EXPIRES", "LOCKED UNTIL"],
          ...result.opens.map((o) => [
            o.context,
            `${o.root ? `${o.where} (root ${o.root})` : o.where}${o.versionId ? ` (old version ${o.versionId})` : ""}`,
            o.id,
            o.expires,
            o.lockedUntil ?? "-",
          ]),
        ]),
    );
    if (result.opens.some((o) => o.versionId))
      rt.write(
        "Old versions on a versioned bucket stay readable by version id until their retention ends or they are deleted (by version id, where no COMPLIANCE lock forbids it).\n",
      );
    if (result.opens.some((o) => o.lockedUntil))
      rt.write(
        "Copies under COMPLIANCE Object Lock cannot be rewritten: the exposure window ends when their lock does.\n",
      );
  }
  return 0;
}

async function sharedRepository(rt: Runtime) {
  const shared = rt.shared!;
  const { committedView } = await import("../host/shared-root.js");
  const { openRepository } = await import("@paas-backup/core/repository");
  const { sharedFleetContexts } = await import("../ops/fleet.js");
  return {
    snapshots: async (context: string) =>
      openRepository(await committedView(shared, context)).snapshots(context),
    contexts: () => sharedFleetContexts(rt),
  };
}

/**
 * keys rotate: every retained snapshot of the context(s) re-encrypted to the new recipient set,
 * as a journaled job (`<context>/rotations/<id>.json`) that a rerun resumes; then what `keys
 * audit` would say of the removed recipients is up to the operator to check with their identity.
 */
type RotateFlags = KeyFlags & {
  context?: string;
  allContexts?: boolean;
  addRecipient?: string[];
  removeRecipient?: string[];
};

/**
 * Steps: check the flags and the identity → the contexts → the keys, targets and push recipients
 * (warning when the config still names a removed one) → rotate each context (under its lease on
 * an s3:// root) and say what became of each snapshot and copy.
 */
export async function keysRotateCommand(rt: Runtime, flags: RotateFlags): Promise<number> {
  const { add, remove } = checkRotateFlags(flags);
  const identity = await resolveIdentityLines(rt, flags);
  if (!identity)
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "keys rotate needs an identity that opens the snapshots (--identity)",
      {
        remediation:
          "Pass --identity with an age identity file whose recipient the snapshots are encrypted to.",
        stage: "arguments",
      },
    );
  const contexts = flags.allContexts
    ? rt.shared
      ? await (await import("../ops/fleet.js")).sharedFleetContexts(rt)
      : await listContexts({ fs: rt.fs, backupRoot: rt.backupRoot })
    : [validateContextName(flags.context!)];
  const signer = await resolveSigner(rt);
  const offsiteTargets = await resolveTargets(rt, {}, false);
  // what offsite push encrypts plaintext snapshots to: the set a copy encrypted on push had when
  // its record does not say, and what must not name a removed recipient any more
  const pushRecipients = (await resolveEncryptor(rt, {}))?.recipients ?? [];
  const warnings = stillConfiguredWarnings(remove, pushRecipients);
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const data = [];
  for (const context of contexts) {
    const rotate = (shared?: SharedRotation) =>
      rotateRecipients({
        ...lockedBy(rt, context, "keys rotate"),
        fs: rt.fs,
        backupRoot: rt.backupRoot,
        context,
        add,
        remove,
        identities: identity.identities,
        identityOrigin: identity.path,
        clock: rt.clock,
        operator: resolveOperator(undefined, rt.env),
        ...(signer ? { signer } : {}),
        offsiteTargets,
        pushRecipients,
        onStep: (step) => rt.progress(`${context} ${step.id}: ${step.phase}\n`),
        ...(shared ? { shared } : {}),
        // an s3:// root's push records are the bucket's (offsite-records/), read and written there
        ...(rt.shared ? { offsiteRecords: offsiteRecordsIn(rt.shared.storage) } : {}),
      });
    // An s3:// root: under the context's lease, with the bucket's offsite and rotation records
    const r = rt.shared
      ? await (await import("../ops/shared.js")).withSharedRotation(rt, context, rotate)
      : await rotate();
    const row = rotationRow(context, r);
    data.push(row);
    if (!rt.json) writeRotationRow(rt, row);
  }
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      context: flags.context ?? "",
      mode: "live",
      count: data.length,
      data,
      ...(warnings.length ? { warnings } : {}),
    });
  return 0;
}

/** Exactly one of --context and --all-contexts, and at least one recipient to add or remove (each a valid age recipient). */
function checkRotateFlags(flags: RotateFlags): { add: string[]; remove: string[] } {
  if ((flags.context !== undefined) === (flags.allContexts === true))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "keys rotate needs --context or --all-contexts (not both)",
      {
        remediation: "Name one context with --context, or rotate every context with --all-contexts.",
        stage: "arguments",
      },
    );
  const add = (flags.addRecipient ?? []).map(validateRecipient);
  const remove = (flags.removeRecipient ?? []).map(validateRecipient);
  if (add.length === 0 && remove.length === 0)
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "keys rotate needs --add-recipient or --remove-recipient",
      {
        remediation:
          "Name the new recipient (--add-recipient age1…) and the one to retire (--remove-recipient age1…).",
        stage: "arguments",
      },
    );
  return { add, remove };
}

/** A removed recipient the config still names comes back with the next snapshot or push: say so. */
function stillConfiguredWarnings(remove: string[], pushRecipients: string[]): string[] {
  const stillConfigured = remove.filter((r) => pushRecipients.includes(r));
  return stillConfigured.length
    ? [
        `the configured recipients (recipients / recipientsFile) still name ${stillConfigured.join(", ")}: new snapshots, and copies encrypted on push at the next push, will be encrypted to ${stillConfigured.length === 1 ? "it" : "them"} again. Remove ${stillConfigured.length === 1 ? "it" : "them"} from the config file.`,
      ]
    : [];
}

type RotationRow = ReturnType<typeof rotationRow>;

/** One context's row of --json's data: re-encrypted, skipped (with why), and each offsite copy's outcome. */
function rotationRow(context: string, r: Awaited<ReturnType<typeof rotateRecipients>>) {
  return {
    context,
    record: r.record,
    resumed: r.resumed,
    rotated: r.rotation.snapshots.filter((s) => s.phase === "done").map((s) => s.id),
    skipped: r.rotation.snapshots
      .filter((s) => s.phase === "skipped")
      .map((s) => ({ id: s.id, reason: s.reason ?? "" })),
    offsite: r.rotation.offsite,
  };
}

/** The row as text: a line for the context, then one per skipped snapshot and per offsite copy. */
function writeRotationRow(rt: Runtime, row: RotationRow): void {
  rt.write(
    `${row.context}: ${row.rotated.length} snapshot(s) re-encrypted${row.resumed ? ` (an interrupted rotation, ${row.resumed}, was finished first)` : ""}; record ${row.record}\n`,
  );
  for (const s of row.skipped) rt.write(`  ${s.id} left as it is: ${s.reason}\n`);
  for (const o of row.offsite)
    rt.write(
      o.action === "replaced"
        ? `  ${o.id} at ${o.target}: replaced${o.encryptedOnPush ? " (encrypted on push: encrypted again from the home artifact)" : ""}\n`
        : o.action === "locked"
          ? `  ${o.id} at ${o.target}: under COMPLIANCE Object Lock until ${o.lockedUntil}; the old copy stays readable by the removed recipients until then\n`
          : `  ${o.id} at ${o.target}: not re-encrypted: ${o.problem}\n`,
    );
}
