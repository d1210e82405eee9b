import { UsageError } from "../errors.js";

/**
 * The longest context name, in UTF-8 bytes. A name becomes part of one path component, and the
 * longest component paas-backup builds from it is rollback's moved-aside folder
 * `<name>.<YYYYMMDDTHHMMSSZ>.rolled-back.<8 hex>` (name + 38 bytes; restore's staging and
 * moved-aside folders are name + 26). Linux allows 255 bytes per component (NAME_MAX), so any name
 * up to 217 bytes could be restored and drilled; 200 leaves room for a longer suffix later.
 * Bytes, not characters: 80 "日" are 240 bytes, and used to back up and then fail to restore
 * with ENAMETOOLONG (issue 9 §6).
 */
export const MAX_CONTEXT_NAME_BYTES = 200;

/**
 * si does not validate context names, and a name becomes a path segment in both the state root
 * and the backup root: refuse anything that could walk out of its folder, or that restore could
 * not build its staging paths from.
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
              : Buffer.byteLength(name, "utf8") > MAX_CONTEXT_NAME_BYTES
                ? `is ${Buffer.byteLength(name, "utf8")} bytes long in UTF-8; the limit is ${MAX_CONTEXT_NAME_BYTES} bytes, so that restore and drill can build their paths from it`
                : null;
  if (problem) {
    throw new UsageError("PAAS_BACKUP_INVALID_CONTEXT", `context name ${JSON.stringify(name)} ${problem}`, {
      remediation: `Pass the name of a folder under <state_root>/contexts/, such as internal-dogfood or customer-<id> (at most ${MAX_CONTEXT_NAME_BYTES} bytes in UTF-8).`,
      stage: "arguments",
    });
  }
  return name;
}

/** A folder under contexts/ (or in the backup root) that names a context: si's staging (dot-folders) never does. */
export function isContextFolderName(name: string): boolean {
  return name.length > 0 && !name.startsWith(".") && !/[\u0000-\u001f\u007f/\\]/.test(name);
}
