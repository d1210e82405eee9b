import { auditKey } from "@paas-backup/core/keys";
import { UsageError } from "@paas-backup/core/errors";
import type { Runtime } from "../runtime.js";
import { table } from "../render/text.js";
import { printEnvelope } from "../envelope.js";
import { resolveIdentityLines, type KeyFlags } from "../options/keys.js";
import { resolveTargets } from "../options/targets.js";
import { validateContextName } from "@paas-backup/core/policy";

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
            o.root ? `${o.where} (root ${o.root})` : o.where,
            o.id,
            o.expires,
            o.lockedUntil ?? "-",
          ]),
        ]),
    );
    if (result.opens.some((o) => o.lockedUntil))
      rt.write(
        "Copies under COMPLIANCE Object Lock cannot be rewritten: the exposure window ends when their lock does.\n",
      );
  }
  return 0;
}
