import { UsageError } from "../errors.js";

/**
 * si does not validate context names, and a name becomes a path segment in both the state root
 * and the backup root: refuse anything that could walk out of its folder.
 */
export function validateContextName(name: string): string {
  const problem =
    name.length === 0
      ? "is empty"
      : name === "." || name === ".."
        ? "is a relative path segment"
        : /[/\\]/.test(name)
          ? "contains a path separator"
          : /[\u0000-\u001f\u007f]/.test(name)
            ? "contains a control character"
            : name.startsWith(".")
              ? "starts with a dot (reserved for paas-backup's staging folders)"
              : name.length > 200
                ? "is longer than 200 characters"
                : null;
  if (problem) {
    throw new UsageError("PAAS_BACKUP_INVALID_CONTEXT", `context name ${JSON.stringify(name)} ${problem}`, {
      remediation: "Pass the name of a folder under <state_root>/contexts/, such as internal-dogfood or customer-<id>.",
      stage: "arguments",
    });
  }
  return name;
}

/** A folder under contexts/ (or in the backup root) that names a context: si's staging (dot-folders) never does. */
export function isContextFolderName(name: string): boolean {
  return name.length > 0 && !name.startsWith(".") && !/[\u0000-\u001f\u007f/\\]/.test(name);
}
