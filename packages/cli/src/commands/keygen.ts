import { hostname } from "node:os";
import { createIdentityFile } from "@paas-backup/core/age";
import { UsageError } from "@paas-backup/core/errors";
import { createSigningKeyFile } from "@paas-backup/core/signing";
import { DEFAULT_SIGNING_KEY } from "../options/signing.js";
import { expandHome, type Runtime } from "../runtime.js";
import { keyValues } from "../render/text.js";
import { printEnvelope } from "../envelope.js";

/** keygen --out F: a new age X25519 identity, mode 0600, never inside the backup root or a git work tree. */
export async function keygenCommand(
  rt: Runtime,
  flags: { out?: string; force?: boolean; signing?: boolean; principal?: string },
): Promise<number> {
  if (flags.signing) {
    const key = await createSigningKeyFile({
      fs: rt.fs,
      path: expandHome(flags.out ?? DEFAULT_SIGNING_KEY, rt.env),
      backupRoot: rt.backupRoot,
      comment: flags.principal ?? hostname(),
      force: flags.force === true,
    });
    if (rt.json) printEnvelope(rt, { ok: true, context: "", mode: "live", data: [key] });
    else {
      // stdout is the allowed_signers line, so `keygen --signing >> allowed_signers` works; the rest on stderr
      process.stderr.write(
        [
          `signing key:     ${key.signingKeyFile} (0600; snapshot and tick sign with it)`,
          `fingerprint:     ${key.fingerprint}`,
          "allowed signers: add the line below to the allowed signers file (config allowedSigners) of every host that verifies or restores",
          "",
        ].join("\n"),
      );
      rt.write(`${key.allowedSignersLine}\n`);
    }
    return 0;
  }
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
