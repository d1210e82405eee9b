import { createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { UsageError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { backupRootStorage, listSnapshotsIn, type SnapshotRef } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { DEFAULT_RETENTION, retentionHorizonMs, type RetentionPolicy } from "../retention/plan.js";
import { rootsAt, rootView } from "../offsite/roots.js";
import type { OffsiteTarget } from "../offsite/types.js";
import { listContexts } from "../context/contexts.js";

/**
 * keys audit (issue 24 §3): which retained snapshots a given age identity still opens, at home
 * and at every offsite target (every backup root there, other hosts' too), and until when each
 * is kept. Only the age header is read (its stanzas end at the "---" line, well under 1 KiB for a
 * few recipients): unwrapping the file key proves the identity opens the artifact without
 * reading or decrypting its payload. Hand-written on node:crypto (X25519, HKDF-SHA256,
 * ChaCha20-Poly1305, as age's spec says), because age-encryption exposes no header-only check.
 */

const BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
// PKCS#8 DER of an X25519 private key is this prefix and the 32-byte scalar (RFC 8410).
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const HEADER_LIMIT = 64 * 1024;

/** The 32-byte scalar of an AGE-SECRET-KEY-1… identity (bech32, checksum checked). */
export function x25519SecretOf(identity: string): Buffer {
  const text = identity.trim().toLowerCase();
  const sep = text.lastIndexOf("1");
  const data: number[] = [];
  for (const ch of text.slice(sep + 1)) {
    const v = BECH32.indexOf(ch);
    if (v < 0) throw new Error("not bech32");
    data.push(v);
  }
  if (!bech32Verify(text.slice(0, sep), data)) throw new Error("bad bech32 checksum");
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  for (const v of data.slice(0, -6)) {
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  if (out.length !== 32) throw new Error("not a 32-byte key");
  return Buffer.from(out);
}

function bech32Polymod(values: number[]): number {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i]!;
  }
  return chk;
}

function bech32Verify(hrp: string, data: number[]): boolean {
  const expanded = [...hrp].map((c) => c.charCodeAt(0) >> 5);
  expanded.push(0, ...[...hrp].map((c) => c.charCodeAt(0) & 31));
  return bech32Polymod([...expanded, ...data]) === 1;
}

export interface X25519Identity {
  secret: ReturnType<typeof createPrivateKey>;
  publicKey: Buffer;
}

/** An identity line as an X25519 key pair; a line that does not decode is a bad identity file (exit 2), named by `origin`, never quoted. */
export function x25519IdentityOf(identity: string, origin: string): X25519Identity {
  try {
    return x25519Identity(identity);
  } catch {
    throw new UsageError("PAAS_BACKUP_BAD_IDENTITY", `${origin} holds an age identity that does not decode`, {
      path: origin,
      remediation: "Pass the identity file age-keygen or paas-backup keygen wrote (AGE-SECRET-KEY-1… lines).",
      stage: "arguments",
    });
  }
}

function x25519Identity(identity: string): X25519Identity {
  const secret = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519, x25519SecretOf(identity)]),
    format: "der",
    type: "pkcs8",
  });
  const jwk = createPublicKey(secret).export({ format: "jwk" }) as { x: string };
  return { secret, publicKey: Buffer.from(jwk.x, "base64url") };
}

function b64(text: string): Buffer {
  return Buffer.from(text, "base64");
}

/** The X25519 stanzas of an age header: [ephemeral share, wrapped file key]. Null when the bytes are not age. */
export function parseAgeHeader(bytes: Buffer): { share: Buffer; body: Buffer }[] | null {
  const text = bytes.toString("latin1");
  if (!text.startsWith("age-encryption.org/v1\n")) return null;
  const end = text.indexOf("\n---");
  if (end < 0) return null;
  const lines = text.slice(0, end).split("\n").slice(1);
  const stanzas: { share: Buffer; body: Buffer }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.startsWith("-> ")) continue;
    const args = line.slice(3).split(" ");
    const bodyLines: string[] = [];
    // the body is base64 in lines of 64 columns; the first shorter line ends it
    for (i++; i < lines.length; i++) {
      bodyLines.push(lines[i]!);
      if (lines[i]!.length < 64) break;
    }
    if (args[0] === "X25519" && args[1]) stanzas.push({ share: b64(args[1]), body: b64(bodyLines.join("")) });
  }
  return stanzas;
}

/** True when one of the header's X25519 stanzas unwraps with this identity (age spec §X25519). */
export function identityOpensHeader(id: X25519Identity, stanzas: { share: Buffer; body: Buffer }[]): boolean {
  for (const { share, body } of stanzas) {
    if (share.length !== 32 || body.length !== 32) continue;
    const peer = createPublicKey({
      key: { kty: "OKP", crv: "X25519", x: share.toString("base64url") },
      format: "jwk",
    });
    const shared = diffieHellman({ privateKey: id.secret, publicKey: peer });
    const key = Buffer.from(
      hkdfSync("sha256", shared, Buffer.concat([share, id.publicKey]), "age-encryption.org/v1/X25519", 32),
    );
    try {
      const d = createDecipheriv("chacha20-poly1305", key, Buffer.alloc(12), { authTagLength: 16 });
      d.setAuthTag(body.subarray(16));
      d.update(body.subarray(0, 16));
      d.final();
      return true;
    } catch {
      // not this stanza's recipient
    }
  }
  return false;
}

/** Read an object until its age header ends (a few hundred bytes), then stop reading. */
async function readAgeHeader(storage: ObjectStorage, key: string): Promise<Buffer> {
  const stream = await storage.get(key);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      const so = Buffer.concat(chunks);
      const end = so.indexOf("\n---");
      if ((end >= 0 && so.indexOf("\n", end + 4) >= 0) || size >= HEADER_LIMIT) return so;
    }
    return Buffer.concat(chunks);
  } finally {
    (stream as { destroy?: () => void }).destroy?.();
  }
}

export interface KeyExposure {
  context: string;
  /** "local" for the backup root, else the offsite target's name */
  where: string;
  /** the backup root id at an offsite target (null at home) */
  root: string | null;
  id: string;
  artifact: string;
  /** when the policy lets it go at the latest, or the copy's Object Lock retain-until if later */
  expires: string;
  /** a COMPLIANCE-locked copy cannot be rewritten: the exposure lasts until it expires */
  lockedUntil: string | null;
}

export interface KeyAuditResult {
  /** what the identity opens */
  opens: KeyExposure[];
  /** encrypted artifacts checked (headers read) */
  checked: number;
  /** artifacts whose first bytes are not age (plaintext snapshots are not counted as exposures) */
  plaintext: number;
  /** the latest expiry among what it opens: the end of the exposure window */
  exposedUntil: string | null;
}

export async function auditKey(options: {
  fs: FileSystem;
  backupRoot: string;
  contexts: string[] | "all";
  /** the AGE-SECRET-KEY-1… lines of the identity file */
  identities: string[];
  offsiteTargets?: OffsiteTarget[];
  policy?: Partial<RetentionPolicy>;
}): Promise<KeyAuditResult> {
  let ids: X25519Identity[];
  try {
    ids = options.identities.map(x25519Identity);
  } catch {
    throw new UsageError(
      "PAAS_BACKUP_BAD_IDENTITY",
      "the identity file holds an age identity that does not decode",
      {
        remediation:
          "Pass the identity file age-keygen or paas-backup keygen wrote (AGE-SECRET-KEY-1… lines).",
        stage: "arguments",
      },
    );
  }
  const policy: RetentionPolicy = { ...DEFAULT_RETENTION, ...(options.policy ?? {}) };
  const horizonMs = retentionHorizonMs(policy);
  const contexts = (
    options.contexts === "all"
      ? await listContexts({ fs: options.fs, backupRoot: options.backupRoot })
      : options.contexts
  ).map(validateContextName);
  const result: KeyAuditResult = { opens: [], checked: 0, plaintext: 0, exposedUntil: null };
  const check = async (
    s: SnapshotRef,
    where: string,
    root: string | null,
    lock: { retainUntil: string | null; mode: string | null } | null,
  ) => {
    if (!s.encrypted) {
      result.plaintext++;
      return;
    }
    result.checked++;
    const stanzas = parseAgeHeader(await readAgeHeader(s.storage, s.artifactKey));
    if (!stanzas || !ids.some((id) => identityOpensHeader(id, stanzas))) return;
    const policyEnd = s.time.getTime() + horizonMs;
    const lockEnd = lock?.retainUntil ? Date.parse(lock.retainUntil) : 0;
    result.opens.push({
      context: s.context,
      where,
      root,
      id: s.id,
      artifact: s.artifactPath,
      expires: new Date(Math.max(policyEnd, lockEnd)).toISOString(),
      lockedUntil: lock?.mode === "COMPLIANCE" && lock.retainUntil ? lock.retainUntil : null,
    });
  };
  const home = backupRootStorage(options.fs, options.backupRoot);
  for (const context of contexts) {
    for (const s of await listSnapshotsIn(home, context)) await check(s, "local", null, null);
    for (const target of options.offsiteTargets ?? [])
      for (const root of await rootsAt(target.storage))
        for (const s of await listSnapshotsIn(rootView(target.storage, root.id), context))
          // the copy's own Object Lock, as the target reports it: other hosts' roots have no record of ours
          await check(s, target.name, root.id, {
            retainUntil: s.artifact.retainUntil,
            mode: s.artifact.lockMode,
          });
  }
  result.opens.sort((a, b) => (a.expires < b.expires ? -1 : 1));
  result.exposedUntil = result.opens.at(-1)?.expires ?? null;
  return result;
}
