import { openTarget, registerStorageDriver } from "@paas-backup/core/repository";
import { UsageError } from "@paas-backup/core/errors";
import type { OffsiteTarget } from "@paas-backup/core/offsite";
import type { Runtime } from "../runtime.js";

export interface TargetFlags {
  to?: string;
  target?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  lockMode?: string;
  lockDays?: number;
  /** offsite push: the --to target may hold plaintext (as a configured target's allowPlaintext) */
  allowPlaintext?: boolean;
}

// The S3 driver (and the AWS SDK under it) loads only when an s3:// target is opened.
registerStorageDriver("s3", { load: async () => (await import("@paas-backup/s3")).storageDriver });

/** Open the storage driver a target URL names (credentials: the AWS SDK's default chain, never flags or config). */
async function openUrl(
  rt: Runtime,
  url: string,
  opts: { endpoint?: string | undefined; region?: string | undefined; pathStyle?: boolean | undefined },
): Promise<OffsiteTarget["storage"]> {
  return openTarget(url, {
    fs: rt.fs,
    endpoint: opts.endpoint,
    region: opts.region,
    pathStyle: opts.pathStyle,
    ...(rt.env.PAAS_BACKUP_S3_PART_SIZE ? { partSize: Number(rt.env.PAAS_BACKUP_S3_PART_SIZE) } : {}),
  });
}

/** A target URL with or without its trailing slash is one target. */
export function sameUrl(a: string, b: string): boolean {
  const norm = (u: string) => u.replace(/\/+$/, "");
  return norm(a) === norm(b);
}

export async function resolveTargets(
  rt: Runtime,
  flags: TargetFlags,
  required = true,
): Promise<OffsiteTarget[]> {
  if (flags.to) {
    const lock =
      flags.lockMode || flags.lockDays
        ? (() => {
            const mode = (flags.lockMode ?? "COMPLIANCE").toUpperCase();
            const days = flags.lockDays ?? 0;
            if ((mode !== "COMPLIANCE" && mode !== "GOVERNANCE") || !(days > 0))
              throw new UsageError(
                "PAAS_BACKUP_INVALID_ARGUMENT",
                "--lock-mode must be COMPLIANCE or GOVERNANCE and --lock-days a positive number",
                { remediation: "For example --lock-mode COMPLIANCE --lock-days 35.", stage: "arguments" },
              );
            return { mode: mode as "COMPLIANCE" | "GOVERNANCE", days };
          })()
        : undefined;
    // A URL that a configured target has is that target: one record, its lock and retention, its
    // endpoint unless the flags give one.
    const same = rt.config.offsite.targets.find((t) => sameUrl(t.url, flags.to!));
    if (same) {
      return [
        {
          name: same.name,
          storage: await openUrl(rt, same.url, {
            endpoint: flags.endpoint ?? same.endpoint,
            region: flags.region ?? same.region,
            pathStyle: flags.pathStyle ?? same.pathStyle,
          }),
          ...(lock ? { objectLock: lock } : same.objectLock ? { objectLock: same.objectLock } : {}),
          ...(same.retention ? { retention: same.retention } : {}),
          ...(same.allowPlaintext || flags.allowPlaintext ? { allowPlaintext: true } : {}),
        },
      ];
    }
    return [
      {
        name: flags.to.replace(/\/+$/, ""),
        storage: await openUrl(rt, flags.to, flags),
        ...(lock ? { objectLock: lock } : {}),
        ...(flags.allowPlaintext ? { allowPlaintext: true } : {}),
      },
    ];
  }
  const configured = rt.config.offsite.targets.filter(
    (t) => !flags.target || t.name === flags.target || t.url === flags.target,
  );
  if (flags.target && configured.length === 0) {
    // --from-offsite may name a URL directly
    if (/^[a-z0-9]+:\/\//.test(flags.target))
      return resolveTargets(rt, { ...flags, to: flags.target, target: undefined }, required);
    throw new UsageError(
      "PAAS_BACKUP_BAD_TARGET",
      `no offsite target named ${JSON.stringify(flags.target)} in ${rt.configPath ?? "the config file"}`,
      {
        remediation: "Name a target from offsite.targets in the config file, or give its URL with --to.",
        stage: "arguments",
      },
    );
  }
  if (configured.length === 0 && required) {
    throw new UsageError(
      "PAAS_BACKUP_NO_TARGET",
      "no offsite target: pass --to <url> or configure offsite.targets",
      {
        remediation:
          "For example --to s3://backups/si --endpoint https://s3.example.net --path-style, or --to file:///mnt/offsite.",
        stage: "arguments",
      },
    );
  }
  return Promise.all(
    configured.map(async (t) => ({
      name: t.name,
      storage: await openUrl(rt, t.url, { endpoint: t.endpoint, region: t.region, pathStyle: t.pathStyle }),
      ...(t.objectLock ? { objectLock: t.objectLock } : {}),
      ...(t.retention ? { retention: t.retention } : {}),
      ...(t.allowPlaintext ? { allowPlaintext: true } : {}),
    })),
  );
}
