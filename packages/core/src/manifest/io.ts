import { IntegrityError } from "../errors.js";
import type { Manifest } from "./schema.js";
import { checkManifest } from "./check.js";

export function parseManifest(text: string, where: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new IntegrityError("PAAS_BACKUP_MANIFEST_INVALID", `manifest in ${where} is not valid JSON`, {
      path: where,
      remediation:
        "The snapshot's metadata is damaged: verify it with `paas-backup verify --deep` and restore an older snapshot.",
      stage: "manifest",
    });
  }
  const checked = checkManifest(raw);
  if (!checked.ok) {
    throw new IntegrityError(
      "PAAS_BACKUP_MANIFEST_INVALID",
      `manifest in ${where} does not have the manifest@1 shape (${checked.problem})`,
      {
        path: where,
        remediation:
          "The snapshot's metadata is damaged or from an unknown tool version: restore an older snapshot.",
        stage: "manifest",
      },
    );
  }
  return checked.manifest;
}
