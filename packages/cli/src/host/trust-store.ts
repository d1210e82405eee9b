import type { TrustStore } from "@paas-backup/core/restore";
import type { Runtime } from "../runtime.js";

/** si's vault trust store, named by SI_VAULT_TRUST_STORE; unreadable or malformed reads as empty. */
export async function loadTrustStore(rt: Runtime): Promise<TrustStore | null> {
  const path = rt.env.SI_VAULT_TRUST_STORE?.trim();
  if (!path) return null;
  try {
    const raw = JSON.parse(Buffer.from(await rt.fs.readFile(path)).toString("utf8")) as { entries?: unknown };
    return { entries: Array.isArray(raw.entries) ? (raw.entries as TrustStore["entries"]) : [] };
  } catch {
    return { entries: [] };
  }
}
