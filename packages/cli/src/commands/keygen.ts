import { createIdentityFile, UsageError } from "@paas-backup/core";
import { expandHome, type Runtime } from "../runtime.js";
import { keyValues } from "../render/text.js";
import { printEnvelope } from "../envelope.js";

/** keygen --out F: a new age X25519 identity, mode 0600, never inside the backup root or a git work tree. */
export async function keygenCommand(rt: Runtime, flags: { out?: string; force?: boolean }): Promise<number> {
  if (!flags.out) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "keygen needs --out <file>", {
      remediation:
        "Name where the identity goes, e.g. --out ~/.config/paas-backup/identity.txt (outside the backup root and any repository).",
      stage: "arguments",
    });
  }
  const key = await createIdentityFile({
    fs: rt.fs,
    path: expandHome(flags.out, rt.env),
    backupRoot: rt.backupRoot,
    clock: rt.clock,
    force: flags.force === true,
  });
  if (rt.json)
    printEnvelope(rt, { ok: true, command: "keygen", context: "", mode: "live", count: 1, data: [key] });
  else
    rt.write(
      keyValues([
        [
          "identity",
          `${key.identityFile} (0600; keep a copy offline: without it no snapshot can be restored)`,
        ],
        ["recipient", key.recipient],
      ]),
    );
  return 0;
}
