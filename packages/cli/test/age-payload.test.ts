import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createCipheriv, hkdfSync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable, type Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import fc from "fast-check";
import { ageDecryptor, ageEncryptor, generateIdentityFile } from "../../core/src/archive/age.js";
import { parseX25519Recipient, writeAgeHeader } from "../../core/src/archive/age-header.js";

/**
 * age's header and payload are written and read on node:crypto (archive/age-header.ts, age.ts), so
 * these check them against the real `age` CLI both ways, at the sizes where age's 64 KiB chunking
 * has its edges, and that a damaged stream is refused with the project's typed error.
 */

const CHUNK = 64 * 1024;
let dir: string;
let identityFile: string;
let identity: string;
let recipient: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "age-payload-"));
  identityFile = join(dir, "identity.txt");
  execFileSync("age-keygen", ["-o", identityFile], { stdio: "ignore" });
  identity = readFileSync(identityFile, "utf8")
    .split("\n")
    .find((l) => l.startsWith("AGE-SECRET-KEY-1"))!;
  recipient = execFileSync("age-keygen", ["-y", identityFile], { encoding: "utf8" }).trim();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Feed `input` through a stream in pieces of the given sizes (cycled), as a file read or a socket would. */
async function through(stream: Duplex, input: Buffer, pieceSizes: number[] = [CHUNK]): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = Math.max(1, pieceSizes[i % pieceSizes.length]!);
    pieces.push(input.subarray(at, at + n));
    at += n;
  }
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(pieces),
    stream,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

const encrypt = (plain: Buffer, pieces?: number[]) =>
  through(ageEncryptor([recipient]).encrypt(), plain, pieces);
const decrypt = (sealed: Buffer, pieces?: number[]) =>
  through(ageDecryptor([identity]).decrypt(), sealed, pieces);

function ageCli(args: string[], input: Buffer): Buffer {
  return execFileSync("age", args, { input, maxBuffer: 64 * 1024 * 1024 });
}

/** Where the payload starts: after the header's "--- MAC" line and the 16-byte payload nonce. */
function payloadStart(sealed: Buffer): number {
  return sealed.indexOf(0x0a, sealed.indexOf("\n---") + 1) + 1 + 16;
}

async function refusal(sealed: Buffer): Promise<{ code?: string; message: string }> {
  const err = await decrypt(sealed).then(
    () => null,
    (e: unknown) => e as { code?: string; message: string },
  );
  expect(err, "the damaged stream was decrypted").not.toBeNull();
  return err!;
}

const SIZES = [
  0,
  1,
  CHUNK - 1,
  CHUNK,
  CHUNK + 1,
  3 * CHUNK,
  5 * CHUNK + 1 + Math.floor(Math.random() * 3 * CHUNK),
];

describe("age payload on Node's ChaCha20-Poly1305", () => {
  it.each(SIZES)("%i bytes: age -d reads what we write, and we read what age writes", async (size) => {
    const plain = randomBytes(size);
    const ours = await encrypt(plain, [1000, CHUNK + 3, 7]);
    // age's layout: header, 16-byte nonce, then every chunk with its 16-byte tag (at least one chunk)
    expect(ours.length - payloadStart(ours)).toBe(size + 16 * Math.max(1, Math.ceil(size / CHUNK)));
    expect(ageCli(["-d", "-i", identityFile], ours).equals(plain)).toBe(true);

    const theirs = ageCli(["-r", recipient], plain);
    expect((await decrypt(theirs, [CHUNK + 16, 5, 4096])).equals(plain)).toBe(true);
  });

  it("round-trips any size, whatever pieces the stream arrives in", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4 * CHUNK + 40 }),
        fc.array(fc.integer({ min: 1, max: 2 * CHUNK + 40 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 2 * CHUNK + 40 }), { minLength: 1, maxLength: 6 }),
        async (size, inPieces, outPieces) => {
          const plain = randomBytes(size);
          const sealed = await encrypt(plain, inPieces);
          expect((await decrypt(sealed, outPieces)).equals(plain)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  describe("a damaged stream is refused as a corrupt artifact (PAAS_BACKUP_ARCHIVE_CORRUPT)", () => {
    let plain: Buffer;
    let sealed: Buffer;
    let start: number;
    const chunkAt = (i: number) => start + i * (CHUNK + 16);
    beforeAll(() => {
      plain = randomBytes(3 * CHUNK + 100);
      sealed = ageCli(["-r", recipient], plain);
      start = payloadStart(sealed);
    });

    it("truncated after a whole chunk, mid-chunk, mid-header or before the payload", async () => {
      for (const end of [chunkAt(3), chunkAt(2), chunkAt(1) + 100, start + 8, start - 16, 40]) {
        const err = await refusal(sealed.subarray(0, end));
        expect(err.code, `cut at ${end}`).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
      }
    });

    it("with two chunks swapped", async () => {
      const swapped = Buffer.concat([
        sealed.subarray(0, chunkAt(0)),
        sealed.subarray(chunkAt(1), chunkAt(2)),
        sealed.subarray(chunkAt(0), chunkAt(1)),
        sealed.subarray(chunkAt(2)),
      ]);
      expect((await refusal(swapped)).code).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
    });

    it("with one bit flipped in the header's MAC, the nonce, a chunk or a tag, or bytes appended", async () => {
      // (a flipped stanza unwraps no file key: that reads as the wrong identity, as with age -d)
      for (const at of [start - 16 - 20, start - 3, chunkAt(0) + 5, chunkAt(2) - 1, sealed.length - 1]) {
        const flipped = Buffer.from(sealed);
        flipped[at]! ^= 0x01;
        expect((await refusal(flipped)).code, `bit flipped at ${at}`).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
      }
      const extended = Buffer.concat([sealed, randomBytes(40)]);
      expect((await refusal(extended)).code).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
    });

    it("not an age file at all", async () => {
      const err = await refusal(Buffer.from("\x1f\x8b\x08 a gzip stream, not age"));
      expect(err.code).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
      expect(err.message).toContain("not an age file");
    });

    it("an empty last chunk after a full one (age v1 allows it only for an empty payload), as age does", async () => {
      // Built by hand with a known file key: the header for it, then the payload sealed chunk by chunk here.
      const fileKey = randomBytes(16);
      const header = writeAgeHeader([parseX25519Recipient(recipient)], fileKey);
      const nonce = randomBytes(16);
      const key = Buffer.from(hkdfSync("sha256", fileKey, nonce, "payload", 32));
      const seal = (counter: number, last: boolean, data: Buffer) => {
        const n = Buffer.alloc(12);
        n.writeUIntBE(counter, 5, 6);
        n[11] = last ? 1 : 0;
        const c = createCipheriv("chacha20-poly1305", key, n, { authTagLength: 16 });
        const out = Buffer.concat([c.update(data), c.final()]);
        return Buffer.concat([out, c.getAuthTag()]);
      };
      const full = randomBytes(CHUNK);
      const wellFormed = Buffer.concat([header, nonce, seal(0, false, full), seal(1, true, Buffer.alloc(5))]);
      // the construction is age's: the well-formed twin decrypts with age and with us
      expect(
        ageCli(["-d", "-i", identityFile], wellFormed).equals(Buffer.concat([full, Buffer.alloc(5)])),
      ).toBe(true);
      expect((await decrypt(wellFormed)).equals(Buffer.concat([full, Buffer.alloc(5)]))).toBe(true);

      const emptyLast = Buffer.concat([header, nonce, seal(0, false, full), seal(1, true, Buffer.alloc(0))]);
      expect(() => ageCli(["-d", "-i", identityFile], emptyLast)).toThrow();
      const err = await refusal(emptyLast);
      expect(err.code).toBe("PAAS_BACKUP_ARCHIVE_CORRUPT");
      expect(err.message).toContain("empty chunk");
    });
  });

  it("a stream for another identity is refused as the wrong identity, not a corrupt artifact", async () => {
    const other = join(dir, "other.txt");
    execFileSync("age-keygen", ["-o", other], { stdio: "ignore" });
    const otherRecipient = execFileSync("age-keygen", ["-y", other], { encoding: "utf8" }).trim();
    const sealed = await through(ageEncryptor([otherRecipient]).encrypt(), randomBytes(1000));
    expect((await refusal(sealed)).code).toBe("PAAS_BACKUP_WRONG_IDENTITY");
  });

  it("keygen's identity is age's: age encrypts to its recipient and decrypts with it, and so do we", async () => {
    const key = await generateIdentityFile(new Date("2026-12-03T00:00:00Z"));
    const file = join(dir, "ours.txt");
    writeFileSync(file, key.fileText, { mode: 0o600 });
    expect(execFileSync("age-keygen", ["-y", file], { encoding: "utf8" }).trim()).toBe(key.recipient);
    const plain = randomBytes(3000);
    const theirs = ageCli(["-r", key.recipient], plain);
    expect((await through(ageDecryptor([key.identity]).decrypt(), theirs)).equals(plain)).toBe(true);
    const ours = await through(ageEncryptor([key.recipient]).encrypt(), plain);
    expect(ageCli(["-d", "-i", file], ours).equals(plain)).toBe(true);
  });

  it("a recipient whose checksum fails and an identity that does not decode are refused as arguments", async () => {
    const damaged = recipient.slice(0, -1) + (recipient.endsWith("q") ? "p" : "q");
    expect(() => ageEncryptor([damaged])).toThrow(
      expect.objectContaining({ code: "PAAS_BACKUP_BAD_RECIPIENT" }),
    );
    const sealed = await encrypt(randomBytes(10));
    const err = await through(
      ageDecryptor([identity.slice(0, -1) + (identity.endsWith("Q") ? "P" : "Q")]).decrypt(),
      sealed,
    ).then(
      () => null,
      (e: { code?: string; message: string }) => e,
    );
    expect(err?.code).toBe("PAAS_BACKUP_BAD_IDENTITY");
    expect(err?.message).not.toContain(identity.slice(20));
  });

  it("encrypts to several recipients, each of which age -d opens", async () => {
    const second = join(dir, "second.txt");
    execFileSync("age-keygen", ["-o", second], { stdio: "ignore" });
    const secondRecipient = execFileSync("age-keygen", ["-y", second], { encoding: "utf8" }).trim();
    const plain = randomBytes(CHUNK + 9);
    const sealed = await through(ageEncryptor([recipient, secondRecipient]).encrypt(), plain);
    writeFileSync(join(dir, "two.age"), sealed);
    for (const id of [identityFile, second])
      expect(ageCli(["-d", "-i", id, join(dir, "two.age")], Buffer.alloc(0)).equals(plain)).toBe(true);
  });
});
