import { UsageError } from "@paas-backup/core/errors";
import type { OptionalFolder } from "@paas-backup/core/policy";

/** --include: the optional folders (policy §2) a snapshot takes besides the protected state. */
export function parseInclude(
  value: string | undefined,
  fallback: readonly OptionalFolder[],
): OptionalFolder[] {
  if (value === undefined) return [...fallback];
  const items = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    if (item !== "releases" && item !== "cache") {
      throw new UsageError(
        "PAAS_BACKUP_INVALID_ARGUMENT",
        `--include ${JSON.stringify(item)} is not an optional folder`,
        {
          remediation: "--include takes releases, cache or releases,cache (policy §2 optional folders).",
          stage: "arguments",
        },
      );
    }
  }
  return items as OptionalFolder[];
}
