import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  timingSafeEqual,
  type KeyObject,
} from "node:crypto";

/**
 * The age v1 header for X25519 recipients (age-encryption.org/v1, "Header" and "X25519 recipient
 * type"), on node:crypto: bech32 keys, the wrapped file key per recipient, the header MAC. Issue 23
 * moved it off age-encryption, whose import (noble's curves, hashes and post-quantum code) added
 * 13 MiB of heap and 20 MiB of RSS to every encrypted snapshot, restore and verify, for a header
 * of a few hundred bytes. Checked both ways against the `age` CLI (packages/cli/test/age-payload.test.ts).
 */

const VERSION_LINE = "age-encryption.org/v1";
const X25519_LABEL = "age-encryption.org/v1/X25519";
const BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const RECIPIENT_HRP = "age";
const IDENTITY_HRP = "age-secret-key-";
// PKCS#8 DER of an X25519 private key is this prefix and the 32-byte scalar (RFC 8410).
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const BODY_COLUMNS = 64;

function polymod(values: readonly number[]): number {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i]!;
  }
  return chk;
}

function hrpExpand(hrp: string): number[] {
  const codes = [...hrp].map((c) => c.charCodeAt(0));
  return [...codes.map((c) => c >> 5), 0, ...codes.map((c) => c & 31)];
}

/** BIP 173 bech32, as age spells its keys (no 90-character limit: age's identities are longer). */
function bech32Decode(text: string, hrp: string): Buffer {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) throw new Error("mixed-case bech32");
  const lower = text.toLowerCase();
  const sep = lower.lastIndexOf("1");
  if (lower.slice(0, sep) !== hrp) throw new Error(`not a ${hrp} key`);
  const data: number[] = [];
  for (const ch of lower.slice(sep + 1)) {
    const v = BECH32.indexOf(ch);
    if (v < 0) throw new Error("not bech32");
    data.push(v);
  }
  if (data.length < 6 || polymod([...hrpExpand(hrp), ...data]) !== 1) throw new Error("bad bech32 checksum");
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
  if (bits >= 5 || (acc & ((1 << bits) - 1)) !== 0) throw new Error("bad bech32 padding");
  return Buffer.from(out);
}

function bech32Encode(hrp: string, bytes: Buffer): string {
  const data: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      data.push((acc >> bits) & 31);
    }
  }
  if (bits > 0) data.push((acc << (5 - bits)) & 31);
  const mod = polymod([...hrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  for (let i = 0; i < 6; i++) data.push((mod >> (5 * (5 - i))) & 31);
  return `${hrp}1${data.map((v) => BECH32[v]).join("")}`;
}

function publicKeyObject(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: "X25519", x: raw.toString("base64url") }, format: "jwk" });
}

function rawPublicKey(key: KeyObject): Buffer {
  return Buffer.from((key.export({ format: "jwk" }) as { x: string }).x, "base64url");
}

export interface X25519Identity {
  secret: KeyObject;
  publicKey: Buffer;
}

/** An AGE-SECRET-KEY-1… line as a key; throws (without echoing it) when it does not decode. */
export function parseX25519Identity(identity: string): X25519Identity {
  const scalar = bech32Decode(identity.trim(), IDENTITY_HRP);
  if (scalar.length !== 32) throw new Error("not a 32-byte X25519 identity");
  const secret = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519, scalar]),
    format: "der",
    type: "pkcs8",
  });
  scalar.fill(0);
  return { secret, publicKey: rawPublicKey(createPublicKey(secret)) };
}

/** The 32-byte X25519 public key of an age1… recipient. */
export function parseX25519Recipient(recipient: string): Buffer {
  const key = bech32Decode(recipient.trim(), RECIPIENT_HRP);
  if (key.length !== 32) throw new Error("not a 32-byte X25519 recipient");
  return key;
}

export function recipientOfIdentity(identity: string): string {
  return bech32Encode(RECIPIENT_HRP, parseX25519Identity(identity).publicKey);
}

export function generateX25519Identity(): { identity: string; recipient: string } {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const scalar = Buffer.from((privateKey.export({ format: "jwk" }) as { d: string }).d, "base64url");
  const identity = bech32Encode(IDENTITY_HRP, scalar).toUpperCase();
  scalar.fill(0);
  return { identity, recipient: bech32Encode(RECIPIENT_HRP, rawPublicKey(publicKey)) };
}

/** base64 without padding, as age writes it */
function b64(bytes: Buffer): string {
  return bytes.toString("base64").replace(/=+$/, "");
}

/** age's strict base64: no padding, and the one canonical spelling of its bytes */
function fromB64(text: string): Buffer {
  if (!/^[A-Za-z0-9+/]*$/.test(text)) throw new Error("header: not base64");
  const bytes = Buffer.from(text, "base64");
  if (b64(bytes) !== text) throw new Error("header: non-canonical base64");
  return bytes;
}

function hkdf(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", ikm, salt, info, 32));
}

function headerMac(fileKey: Buffer, headerUpToDashes: string): Buffer {
  return createHmac("sha256", hkdf(fileKey, Buffer.alloc(0), "header"))
    .update(headerUpToDashes, "latin1")
    .digest();
}

function x25519Shared(secret: KeyObject, peer: Buffer): Buffer {
  const shared = diffieHellman({ privateKey: secret, publicKey: publicKeyObject(peer) });
  // a low-order point gives all zeros: age refuses it
  if (shared.every((b) => b === 0)) throw new Error("header: X25519 share is a low-order point");
  return shared;
}

const ZERO_NONCE = Buffer.alloc(12);

/** The header for these recipients' public keys, ending with its "--- MAC" line and newline. */
export function writeAgeHeader(recipients: readonly Buffer[], fileKey: Buffer): Buffer {
  const lines = [VERSION_LINE];
  for (const recipient of recipients) {
    const ephemeral = generateKeyPairSync("x25519");
    const share = rawPublicKey(ephemeral.publicKey);
    const shared = x25519Shared(ephemeral.privateKey, recipient);
    const wrap = createCipheriv(
      "chacha20-poly1305",
      hkdf(shared, Buffer.concat([share, recipient]), X25519_LABEL),
      ZERO_NONCE,
      { authTagLength: 16 },
    );
    const body = Buffer.concat([wrap.update(fileKey), wrap.final(), wrap.getAuthTag()]);
    lines.push(`-> X25519 ${b64(share)}`);
    const text = b64(body);
    // body lines of 64 columns; the last one is shorter, empty when the rest fills whole lines
    for (let at = 0; ; at += BODY_COLUMNS) {
      lines.push(text.slice(at, at + BODY_COLUMNS));
      if (text.length - at < BODY_COLUMNS) break;
    }
  }
  const upToDashes = `${lines.join("\n")}\n---`;
  return Buffer.from(`${upToDashes} ${b64(headerMac(fileKey, upToDashes))}\n`, "latin1");
}

export interface AgeStanza {
  args: string[];
  body: Buffer;
}

/** A header as read by parseAgeHeader: its stanzas, its MAC, and the text the MAC covers. */
export interface ParsedAgeHeader {
  stanzas: AgeStanza[];
  mac: Buffer;
  upToDashes: string;
}

/**
 * The length of the age header that `bytes` begin with: through the "--- MAC" line's newline.
 * Null when these bytes hold no complete header (read more, or they are not age).
 */
export function ageHeaderLength(bytes: Buffer): number | null {
  if (!bytes.subarray(0, VERSION_LINE.length + 1).equals(Buffer.from(`${VERSION_LINE}\n`, "latin1")))
    return null;
  const dashes = bytes.indexOf("\n--- ", 0, "latin1");
  if (dashes < 0) return null;
  const end = bytes.indexOf("\n", dashes + 1, "latin1");
  return end < 0 ? null : end + 1;
}

/**
 * A header (all of it, up to and including the "--- MAC" line's newline), parsed strictly as the
 * spec says. Throws a plain Error naming what is wrong with a malformed one.
 */
export function parseAgeHeader(header: Buffer): ParsedAgeHeader {
  const text = header.toString("latin1");
  if (!text.endsWith("\n")) throw new Error("header: truncated");
  const lines = text.slice(0, -1).split("\n");
  if (lines[0] !== VERSION_LINE) throw new Error("header: not an age v1 header");
  const stanzas: AgeStanza[] = [];
  let i = 1;
  for (; i < lines.length && lines[i]!.startsWith("-> ");) {
    const args = lines[i]!.slice(3).split(" ");
    if (args.some((a) => !/^[\x21-\x7e]+$/.test(a))) throw new Error("header: malformed stanza arguments");
    const body: Buffer[] = [];
    for (i++; ; i++) {
      const line = lines[i];
      if (line === undefined) throw new Error("header: stanza body truncated");
      if (line.length > BODY_COLUMNS) throw new Error("header: stanza body line too long");
      body.push(fromB64(line));
      if (line.length < BODY_COLUMNS) break;
    }
    i++;
    stanzas.push({ args, body: Buffer.concat(body) });
  }
  const footer = lines[i];
  if (footer === undefined || !footer.startsWith("--- ") || i !== lines.length - 1)
    throw new Error("header: malformed (no --- MAC line after the stanzas)");
  const mac = fromB64(footer.slice(4));
  if (stanzas.length === 0) throw new Error("header: no recipient stanza");
  return { stanzas, mac, upToDashes: text.slice(0, text.length - footer.length - 1 + 3) };
}

/**
 * The file key that one of `identities` unwraps from the header's X25519 stanzas, or null when
 * none does. The MAC is not checked here: holding the file key is what "opens" means to keys audit.
 */
export function unwrapFileKey(header: ParsedAgeHeader, identities: readonly X25519Identity[]): Buffer | null {
  for (const stanza of header.stanzas) {
    if (stanza.args[0] !== "X25519") continue;
    if (stanza.args.length !== 2) throw new Error("header: malformed X25519 stanza");
    const share = fromB64(stanza.args[1]!);
    if (share.length !== 32 || stanza.body.length !== 32) throw new Error("header: malformed X25519 stanza");
    for (const id of identities) {
      const key = hkdf(x25519Shared(id.secret, share), Buffer.concat([share, id.publicKey]), X25519_LABEL);
      const unwrap = createDecipheriv("chacha20-poly1305", key, ZERO_NONCE, { authTagLength: 16 });
      unwrap.setAuthTag(stanza.body.subarray(16));
      const opened = unwrap.update(stanza.body.subarray(0, 16));
      try {
        unwrap.final();
      } catch {
        continue; // wrapped for another recipient
      }
      return opened;
    }
  }
  return null;
}

/**
 * The file key of a header (all of it, up to and including the "--- MAC" line's newline) that one
 * of `identities` opens, its MAC checked. Throws "no identity matched…" when none does, and a
 * plain Error naming what is wrong with a malformed header.
 */
export function openAgeHeader(header: Buffer, identities: readonly X25519Identity[]): Buffer {
  const parsed = parseAgeHeader(header);
  const fileKey = unwrapFileKey(parsed, identities);
  if (!fileKey) throw new Error("no identity matched any of the file's recipients");
  const expected = headerMac(fileKey, parsed.upToDashes);
  if (parsed.mac.length !== expected.length || !timingSafeEqual(parsed.mac, expected))
    throw new Error("header: invalid MAC");
  return fileKey;
}
