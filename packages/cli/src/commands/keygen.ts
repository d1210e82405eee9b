import { existsSync, openSync, writeSync, closeSync, fsyncSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { generateIdentityFile, isWithin, UsageError, SafetyError } from "@paas-backup/core";
import { expandHome, type Runtime } from "../runtime.js";
import { keyValues, printEnvelope } from "../output.js";
import { assertOutsideRepo } from "./guard.js";

/** keygen --out F: a new age X25519 identity, mode 0600, never inside the backup root or a git work tree. */
export async function keygenCommand(rt: Runtime, flags: { out?: string; force?: boolean }): Promise<number> {
  if (!flags.out) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "keygen needs --out <file>", {
      remediation: "Name where the identity goes, e.g. --out ~/.config/paas-backup/identity.txt (outside the backup root and any repository).",
      stage: "arguments",
    });
  }
  const out = expandHome(flags.out, rt.env);
  if (isWithin(resolve(rt.backupRoot), out)) {
    throw new SafetyError("PAAS_BACKUP_UNSAFE_LOCATION", `identity ${out} would sit inside the backup root ${rt.backupRoot}`, {
      path: out,
      remediation: "Keep the key apart from what it decrypts: write it outside the backup root (and copy it offline).",
      stage: "location",
    });
  }
  await assertOutsideRepo(rt, out, "identity file");
  if (existsSync(out) && !flags.force) {
    throw new UsageError("PAAS_BACKUP_FILE_EXISTS", `${out} already exists; keygen never overwrites a key`, {
      path: out,
      remediation: "Choose another --out, or move the old identity away first if you really mean to replace it.",
      stage: "arguments",
    });
  }
  const key = await generateIdentityFile(rt.clock());
  mkdirSync(dirname(out), { recursive: true, mode: 0o700 });
  const fd = openSync(out, flags.force ? "w" : "wx", 0o600);
  try {
    writeSync(fd, key.fileText);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (rt.json) printEnvelope(rt, { ok: true, command: "keygen", context: "", mode: "live", count: 1, data: [{ identityFile: out, recipient: key.recipient }] });
  else rt.write(keyValues([["identity", `${out} (0600; keep a copy offline: without it no snapshot can be restored)`], ["recipient", key.recipient]]));
  return 0;
}
