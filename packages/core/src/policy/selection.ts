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

/**
 * Files that must never enter a backup, whatever folder they sit in. The reason is what the
 * manifest records; it names the rule, never the content.
 */
export function hardExclusionReason(path: string): string | null {
  const segments = path.split("/");
  const base = segments[segments.length - 1] ?? path;
  const lower = base.toLowerCase();
  if (segments.includes("vault")) return "vault material (policy §3.1)";
  if (lower === "secrets.env") return "vault secrets file (policy §3.1)";
  if (path === "alerts/telegram.json") return "alert channel credentials: plaintext bot token (policy §3.2)";
  if (lower.endsWith(".secret")) return "*.secret file (policy §3.2)";
  if (lower === ".env" || lower.startsWith(".env.") || lower.endsWith(".env"))
    return "dotenv file that may hold plaintext secrets (policy §3.2)";
  if (/\.(pem|key|p12|pfx|jks|keystore|kdbx|age)$/.test(lower))
    return "key or certificate material (policy §3.2)";
  if (/^id_(rsa|dsa|ecdsa|ed25519)/.test(lower)) return "SSH private key (policy §3.2)";
  if (
    /(secret|credential|password)s?[-_.]?(export|dump|backup|plain|decrypted)|decrypted|plaintext/.test(lower)
  )
    return "decrypted secret dump or plaintext secret export (policy §3.2)";
  if (segments.some((s) => s === "volumes" || s === "data-volumes" || s === "pgdata" || s === "mysql-data"))
    return "runtime data volume (policy §3.3)";
  return null;
}
