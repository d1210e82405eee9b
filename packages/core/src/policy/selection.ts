/**
 * What a context backup contains (policy §2) and what it never contains (policy §3).
 * Paths are relative to <state_root>/contexts/<context>/, with "/" separators.
 */
export const PROTECTED_FILES = [
  "config.json",
  "targets.json",
  "deployments.json",
  "addons.json",
  "bluegreen.json",
  "webhooks/mappings.json",
  "alerts/policy.json",
  "events/deployments.jsonl",
  "events/alerts.jsonl",
  "events/audit.jsonl",
] as const;

export const EVENT_LOGS = ["events/deployments.jsonl", "events/alerts.jsonl", "events/audit.jsonl"] as const;

/** Optional folders of policy §2: backed up only when asked for. */
export const OPTIONAL_FOLDERS = ["releases", "cache"] as const;
export type OptionalFolder = (typeof OPTIONAL_FOLDERS)[number];

export function isEventLog(path: string): boolean {
  return (EVENT_LOGS as readonly string[]).includes(path);
}

export function isJsonStateFile(path: string): boolean {
  return (PROTECTED_FILES as readonly string[]).includes(path) && path.endsWith(".json");
}

/** The rules of policy §3 that keep a file out wherever it sits; the id is stable, for tools. */
export type HardExclusionRule =
  | "vault"
  | "vault-secrets-file"
  | "alert-credentials"
  | "secret-file"
  | "dotenv"
  | "key-material"
  | "ssh-key"
  | "secret-dump"
  | "data-volume";

/**
 * Files that must never enter a backup, whatever folder they sit in: the rule that keeps the file
 * out, and the reason the manifest records (it names the rule, never the content).
 */
export function hardExclusion(path: string): { rule: HardExclusionRule; reason: string } | null {
  const segments = path.split("/");
  const base = segments[segments.length - 1] ?? path;
  const lower = base.toLowerCase();
  if (segments.includes("vault")) return { rule: "vault", reason: "vault material (policy §3.1)" };
  if (lower === "secrets.env")
    return { rule: "vault-secrets-file", reason: "vault secrets file (policy §3.1)" };
  if (path === "alerts/telegram.json")
    return {
      rule: "alert-credentials",
      reason: "alert channel credentials: plaintext bot token (policy §3.2)",
    };
  if (lower.endsWith(".secret")) return { rule: "secret-file", reason: "*.secret file (policy §3.2)" };
  if (lower === ".env" || lower.startsWith(".env.") || lower.endsWith(".env"))
    return { rule: "dotenv", reason: "dotenv file that may hold plaintext secrets (policy §3.2)" };
  if (/\.(pem|key|p12|pfx|jks|keystore|kdbx|age)$/.test(lower))
    return { rule: "key-material", reason: "key or certificate material (policy §3.2)" };
  if (/^id_(rsa|dsa|ecdsa|ed25519)/.test(lower))
    return { rule: "ssh-key", reason: "SSH private key (policy §3.2)" };
  if (
    /(secret|credential|password)s?[-_.]?(export|dump|backup|plain|decrypted)|decrypted|plaintext/.test(lower)
  )
    return {
      rule: "secret-dump",
      reason: "decrypted secret dump or plaintext secret export (policy §3.2)",
    };
  if (segments.some((s) => s === "volumes" || s === "data-volumes" || s === "pgdata" || s === "mysql-data"))
    return { rule: "data-volume", reason: "runtime data volume (policy §3.3)" };
  return null;
}

/** The reason a file must never enter a backup (see hardExclusion), or null. */
export function hardExclusionReason(path: string): string | null {
  return hardExclusion(path)?.reason ?? null;
}
