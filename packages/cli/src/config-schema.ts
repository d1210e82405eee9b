import { z } from "zod";
import { UsageError } from "@paas-backup/core/errors";

// The config file's schema, loaded only when there is a config file to read (see runtime.ts).

export const RetentionPolicy = z
  .object({
    hourly: z.number().int().min(0).default(24),
    daily: z.number().int().min(0).default(7),
    weekly: z.number().int().min(0).default(4),
    monthly: z.number().int().min(0).default(3),
  })
  .strict();

/**
 * A target's retention as written, without the local defaults: a number left out is the offsite
 * default's (hourly 0), never zod's default of the local policy (`.partial()` keeps defaults in
 * zod 4, which gave `{ "daily": 1 }` 24 hourly slots at the target).
 */
const TargetRetention = z
  .object({
    hourly: z.number().int().min(0).optional(),
    daily: z.number().int().min(0).optional(),
    weekly: z.number().int().min(0).optional(),
    monthly: z.number().int().min(0).optional(),
  })
  .strict();

export const OffsiteTarget = z
  .object({
    name: z.string().min(1),
    url: z.string().min(1),
    endpoint: z.string().optional(),
    region: z.string().optional(),
    pathStyle: z.boolean().optional(),
    objectLock: z
      .object({ mode: z.enum(["COMPLIANCE", "GOVERNANCE"]), days: z.number().int().positive() })
      .strict()
      .optional(),
    retention: TargetRetention.optional(),
    /** this target may hold plaintext: snapshots not encrypted at home are copied as they are (issue 21 §5) */
    allowPlaintext: z.boolean().optional(),
  })
  .strict();

/** The config file: where an operator keeps what should not be retyped on every cron line. Never credentials. */
export const Config = z
  .object({
    stateRoot: z.string().optional(),
    backupRoot: z.string().optional(),
    /** an s3:// backupRoot's endpoint, region and addressing (the offsite targets have their own) */
    rootEndpoint: z.string().url().optional(),
    rootRegion: z.string().min(1).optional(),
    rootPathStyle: z.boolean().optional(),
    /** an s3:// backup root shared by a fleet: this host's name and the timings (production defaults) */
    sharedRoot: z
      .object({
        /** this host's name in the bucket's status objects and leases (default: the short hostname) */
        host: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/)
          .optional(),
        /** a lease not renewed for this long may be taken over (default 300, at least 10) */
        leaseSeconds: z.number().int().min(10).optional(),
        /** prune removes a marked snapshot this long after marking it (default 86400, one day) */
        deleteAfterSeconds: z.number().int().min(0).optional(),
        /** status alerts on a host whose status object is older than this (default 8100, two missed ticks) */
        hostStaleAfterSeconds: z.number().int().min(1).optional(),
        /** maintenance compacts a context's commit log once this many entries follow its last checkpoint (default 24) */
        logCheckpointEvery: z.number().int().min(1).optional(),
      })
      .strict()
      .optional(),
    recipients: z.array(z.string()).default([]),
    recipientsFile: z.string().optional(),
    identityFile: z.string().optional(),
    /** this host's SSHSIG signing key (default ~/.config/paas-backup/signing_key when it exists) */
    signingKeyFile: z.string().optional(),
    /** an ssh-keygen allowed_signers file: whose signatures verify and restore accept */
    allowedSigners: z.string().optional(),
    include: z.array(z.enum(["releases", "cache"])).default([]),
    secretAllow: z.array(z.object({ path: z.string(), rule: z.string() }).strict()).default([]),
    /** findings seen and rotated: still redacted in every snapshot, no longer exit 9 */
    secretAcknowledged: z
      .array(
        z
          .object({ path: z.string(), line: z.number().int().positive().optional(), rule: z.string() })
          .strict(),
      )
      .default([]),
    retention: RetentionPolicy.partial()
      .extend({ keepTags: z.array(z.string().min(1)).optional() })
      .strict()
      .default({}),
    mandatoryDrillContexts: z.array(z.string()).default(["internal-dogfood"]),
    lockTimeoutSeconds: z.number().int().min(0).default(30),
    /** tick pings it (healthchecks.io convention: /start, success, /fail); treated as a secret, never printed */
    pingUrl: z.string().url().optional(),
    offsite: z
      .object({
        targets: z.array(OffsiteTarget).default([]),
        concurrency: z.number().int().min(1).max(16).default(2),
      })
      .strict()
      .default({ targets: [], concurrency: 2 }),
  })
  .strict();
export type Config = z.infer<typeof Config>;

/** The config file's content checked: strict at every level, the first problem named by its key path. */
export function parseConfig(raw: unknown, path: string): Config {
  const parsed = Config.safeParse(raw);
  if (!parsed.success) {
    // An unknown key (a typo) explains the other issues of its object: name it first.
    const issue = parsed.error.issues.find((i) => i.code === "unrecognized_keys") ?? parsed.error.issues[0];
    // Name the key path as an operator types it: retention.dayly, offsite.targets[0].objectlock.
    const keyPath = (at: readonly PropertyKey[]) =>
      at.map((k, i) => (typeof k === "number" ? `[${k}]` : `${i ? "." : ""}${String(k)}`)).join("");
    const where = !issue
      ? "invalid"
      : issue.code === "unrecognized_keys"
        ? issue.keys.map((k) => `${keyPath([...issue.path, k])}: unknown key`).join("; ")
        : `${keyPath(issue.path) || "(root)"}: ${issue.message}`;
    throw new UsageError("PAAS_BACKUP_CONFIG_INVALID", `config file ${path}: ${where}`, {
      path,
      remediation:
        "Fix the field named (see the README's Configuration section); credentials never go in this file.",
      stage: "config",
    });
  }
  return parsed.data;
}
