import {
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";
import { UsageError } from "../errors.js";

/**
 * Signatures a standard tool verifies (issue 24 §2): OpenSSH's SSHSIG format (PROTOCOL.sshsig),
 * Ed25519 keys, so `ssh-keygen -Y verify -f allowed_signers -I <principal> -n paas-backup -s
 * file.sig < file` checks what paas-backup signed, and the key file is an ordinary unencrypted
 * OpenSSH private key (`ssh-keygen -y -f signing_key` prints its public key). Hand-written on
 * node:crypto: the format is ~60 lines, and no npm package writes SSHSIG without shelling out.
 */
export const SIGNATURE_NAMESPACE = "paas-backup";
const MAGIC = Buffer.from("SSHSIG");
const KEY_TYPE = "ssh-ed25519";
// PKCS#8 DER of an Ed25519 private key is this prefix and the 32-byte seed (RFC 8410).
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

function sshString(data: Buffer | string): Buffer {
  const b = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  u32(): number {
    if (this.at + 4 > this.buf.length) throw new Error("truncated");
    const n = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return n;
  }
  bytes(n: number): Buffer {
    if (this.at + n > this.buf.length) throw new Error("truncated");
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  string(): Buffer {
    return this.bytes(this.u32());
  }
  get done(): boolean {
    return this.at === this.buf.length;
  }
}

/** The public key blob: string "ssh-ed25519", string key(32). */
function publicBlob(raw: Buffer): Buffer {
  return Buffer.concat([sshString(KEY_TYPE), sshString(raw)]);
}

function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: "jwk" }) as { x?: string };
  return Buffer.from(jwk.x ?? "", "base64url");
}

/** "ssh-ed25519 AAAA… comment", as in authorized_keys and allowed_signers. */
export function formatPublicKey(raw: Buffer, comment = ""): string {
  return `${KEY_TYPE} ${publicBlob(raw).toString("base64")}${comment ? ` ${comment}` : ""}`;
}

/** SHA256:… as ssh-keygen -l prints it. */
export function fingerprint(raw: Buffer): string {
  return `SHA256:${createHash("sha256").update(publicBlob(raw)).digest("base64").replace(/=+$/, "")}`;
}

export interface SigningKey {
  /** the raw 32-byte Ed25519 public key */
  publicKey: Buffer;
  /** "ssh-ed25519 AAAA…" */
  publicKeyText: string;
  fingerprint: string;
  sign(message: Buffer | string): string;
}

function signingKeyFrom(privateKey: KeyObject, comment: string): SigningKey {
  const pub = rawPublicKey(createPublicKey(privateKey));
  return {
    publicKey: pub,
    publicKeyText: formatPublicKey(pub, comment),
    fingerprint: fingerprint(pub),
    sign: (message) => signMessage(privateKey, pub, message),
  };
}

/** A new key as the text of an unencrypted OpenSSH private key file. */
export function generateSigningKeyFile(comment: string): { fileText: string; key: SigningKey } {
  const seed = randomBytes(32);
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, seed]),
    format: "der",
    type: "pkcs8",
  });
  const pub = rawPublicKey(createPublicKey(privateKey));
  const check = randomBytes(4);
  let priv = Buffer.concat([
    check,
    check,
    sshString(KEY_TYPE),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i);
  priv = Buffer.concat([priv, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    uint32(1),
    sshString(publicBlob(pub)),
    sshString(priv),
  ]);
  const b64 = body.toString("base64").replace(/(.{70})/g, "$1\n");
  return {
    fileText: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64.replace(/\n$/, "")}\n-----END OPENSSH PRIVATE KEY-----\n`,
    key: signingKeyFrom(privateKey, comment),
  };
}

function badKey(origin: string, why: string): UsageError {
  return new UsageError("PAAS_BACKUP_BAD_SIGNING_KEY", `${origin} is not a usable signing key: ${why}`, {
    path: origin,
    remediation:
      "Make one with `paas-backup keygen --signing` (an unencrypted Ed25519 OpenSSH key, 0600), or point signingKeyFile at one.",
    stage: "arguments",
  });
}

/** Read an unencrypted Ed25519 OpenSSH private key file; the error never quotes the file. */
export function parseSigningKeyFile(text: string, origin: string): SigningKey {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m) throw badKey(origin, "no OPENSSH PRIVATE KEY block");
  try {
    const r = new Reader(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
    if (r.bytes(15).toString("latin1") !== "openssh-key-v1\0") throw badKey(origin, "not openssh-key-v1");
    const cipher = r.string().toString();
    r.string();
    r.string();
    if (cipher !== "none") throw badKey(origin, "the key is passphrase-protected (cron cannot type it)");
    if (r.u32() !== 1) throw badKey(origin, "more than one key");
    r.string();
    const p = new Reader(r.string());
    if (p.u32() !== p.u32()) throw badKey(origin, "corrupt private section");
    if (p.string().toString() !== KEY_TYPE) throw badKey(origin, "not an Ed25519 key");
    p.string();
    const both = p.string();
    const comment = p.string().toString();
    const privateKey = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519, both.subarray(0, 32)]),
      format: "der",
      type: "pkcs8",
    });
    return signingKeyFrom(privateKey, comment);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw badKey(origin, "its contents do not parse");
  }
}

function signedData(namespace: string, message: Buffer): Buffer {
  return Buffer.concat([
    MAGIC,
    sshString(namespace),
    sshString(""),
    sshString("sha512"),
    sshString(createHash("sha512").update(message).digest()),
  ]);
}

function signMessage(privateKey: KeyObject, pub: Buffer, message: Buffer | string): string {
  const msg = typeof message === "string" ? Buffer.from(message, "utf8") : message;
  const sig = sign(null, signedData(SIGNATURE_NAMESPACE, msg), privateKey);
  const blob = Buffer.concat([
    MAGIC,
    uint32(1),
    sshString(publicBlob(pub)),
    sshString(SIGNATURE_NAMESPACE),
    sshString(""),
    sshString("sha512"),
    sshString(Buffer.concat([sshString(KEY_TYPE), sshString(sig)])),
  ]);
  const b64 = blob.toString("base64").replace(/(.{70})/g, "$1\n");
  return `-----BEGIN SSH SIGNATURE-----\n${b64.replace(/\n$/, "")}\n-----END SSH SIGNATURE-----\n`;
}

export type SignatureCheck =
  { state: "valid"; publicKey: Buffer; fingerprint: string } | { state: "invalid"; reason: string };

/** Check an armored SSHSIG signature of `message` in our namespace; who signed is the caller's question. */
export function verifySignature(armored: string, message: Buffer | string): SignatureCheck {
  const m = /-----BEGIN SSH SIGNATURE-----([\s\S]*?)-----END SSH SIGNATURE-----/.exec(armored);
  if (!m) return { state: "invalid", reason: "no SSH SIGNATURE block" };
  try {
    const r = new Reader(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
    if (!r.bytes(6).equals(MAGIC) || r.u32() !== 1)
      return { state: "invalid", reason: "not an SSHSIG v1 signature" };
    const pk = new Reader(r.string());
    if (pk.string().toString() !== KEY_TYPE) return { state: "invalid", reason: "not an Ed25519 signature" };
    const pub = Buffer.from(pk.string());
    const namespace = r.string().toString();
    if (namespace !== SIGNATURE_NAMESPACE)
      return { state: "invalid", reason: `signed for namespace ${JSON.stringify(namespace)}` };
    r.string();
    const hash = r.string().toString();
    if (hash !== "sha512" && hash !== "sha256") return { state: "invalid", reason: `unknown hash ${hash}` };
    const s = new Reader(r.string());
    if (s.string().toString() !== KEY_TYPE) return { state: "invalid", reason: "not an Ed25519 signature" };
    const sig = s.string();
    const msg = typeof message === "string" ? Buffer.from(message, "utf8") : message;
    const data = Buffer.concat([
      MAGIC,
      sshString(namespace),
      sshString(""),
      sshString(hash),
      sshString(createHash(hash).update(msg).digest()),
    ]);
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: pub.toString("base64url") },
      format: "jwk",
    });
    if (!verify(null, data, key, sig))
      return { state: "invalid", reason: "the signature does not match the bytes" };
    return { state: "valid", publicKey: pub, fingerprint: fingerprint(pub) };
  } catch {
    return { state: "invalid", reason: "the signature does not parse" };
  }
}

export interface AllowedSigner {
  principals: string[];
  publicKey: Buffer;
  fingerprint: string;
}

/** ssh-keygen's allowed_signers: "principals [options] ssh-ed25519 AAAA… [comment]"; other key types are ignored. */
export function parseAllowedSigners(text: string): AllowedSigner[] {
  const out: AllowedSigner[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const at = fields.indexOf(KEY_TYPE);
    if (at < 1 || !fields[at + 1]) continue;
    try {
      const r = new Reader(Buffer.from(fields[at + 1]!, "base64"));
      if (r.string().toString() !== KEY_TYPE) continue;
      const pub = Buffer.from(r.string());
      if (pub.length !== 32) continue;
      out.push({ principals: fields[0]!.split(","), publicKey: pub, fingerprint: fingerprint(pub) });
    } catch {
      // a line we cannot read allows no one
    }
  }
  return out;
}
