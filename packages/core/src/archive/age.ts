// age-encryption is imported when a key is made or an artifact en/decrypted, not at every start.
const age = () => import("age-encryption");
import { Duplex, PassThrough, Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { IntegrityError, SafetyError, UsageError } from "../errors.js";
import type { ArtifactDecryptor, ArtifactEncryptor } from "./encryption.js";

/**
 * age encryption at rest through age-encryption (typage, by age's author): X25519 recipients,
 * the age v1 format that `age -d` reads. Both directions stream in 64 KiB age chunks.
 */
const RECIPIENT = /^age1[0-9a-z]{58}$/;

export function parseRecipients(text: string, origin: string): string[] {
  const out: string[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!RECIPIENT.test(line)) {
      throw new UsageError(
        "PAAS_BACKUP_BAD_RECIPIENT",
        `${origin}:${i + 1} is not an age X25519 recipient (age1…)`,
        {
          path: origin,
          remediation: "List one recipient per line, as printed by `paas-backup keygen` or `age-keygen -y`.",
          stage: "arguments",
        },
      );
    }
    out.push(line);
  }
  return out;
}

export function validateRecipient(recipient: string): string {
  if (!RECIPIENT.test(recipient)) {
    throw new UsageError(
      "PAAS_BACKUP_BAD_RECIPIENT",
      `--recipient ${JSON.stringify(recipient.slice(0, 12))}… is not an age X25519 recipient`,
      {
        remediation: "Pass the public recipient (age1…), never the identity; `paas-backup keygen` prints it.",
        stage: "arguments",
      },
    );
  }
  return recipient;
}

/** The AGE-SECRET-KEY-1 lines of an identity file; the error never echoes the file's content. */
export function parseIdentities(text: string, origin: string): string[] {
  const keys = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("AGE-SECRET-KEY-1"));
  if (keys.length === 0) {
    throw new UsageError(
      "PAAS_BACKUP_BAD_IDENTITY",
      `${origin} holds no age identity (AGE-SECRET-KEY-1… line)`,
      {
        path: origin,
        remediation: "Pass the identity file written by `paas-backup keygen` or `age-keygen`.",
        stage: "arguments",
      },
    );
  }
  return keys;
}

/**
 * Identities that age can use, checked before anything is decrypted: a line that only looks like
 * one (a typo, a truncated paste) is a bad identity file (exit 2), never a snapshot that "cannot be
 * decrypted". The message names the file and line, never the key.
 */
export async function checkIdentities(identities: readonly string[], origin: string): Promise<string[]> {
  const { identityToRecipient } = await age();
  for (const [i, identity] of identities.entries()) {
    try {
      await identityToRecipient(identity);
    } catch {
      throw new UsageError(
        "PAAS_BACKUP_BAD_IDENTITY",
        `${origin}: identity ${i + 1} (an AGE-SECRET-KEY-1… line) is not a valid age identity`,
        {
          path: origin,
          remediation:
            "The line is damaged (a typo or a truncated paste): pass the identity file written by `paas-backup keygen` or `age-keygen`.",
          stage: "arguments",
        },
      );
    }
  }
  return [...identities];
}

export async function generateIdentityFile(
  now: Date,
): Promise<{ identity: string; recipient: string; fileText: string }> {
  const { generateX25519Identity, identityToRecipient } = await age();
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  return {
    identity,
    recipient,
    fileText: `# created: ${now.toISOString()}\n# public key: ${recipient}\n${identity}\n`,
  };
}

export async function recipientOf(identity: string): Promise<string> {
  return (await age()).identityToRecipient(identity);
}

function bridge(
  transform: (input: WebReadableStream<Uint8Array>) => Promise<WebReadableStream<Uint8Array>>,
  mapError: (err: unknown) => Error,
): Duplex {
  const input = new PassThrough();
  const output = new PassThrough();
  transform(Readable.toWeb(input) as unknown as WebReadableStream<Uint8Array>)
    .then((web) => {
      const readable = Readable.fromWeb(web as never);
      readable.on("error", (err) => output.destroy(mapError(err)));
      readable.pipe(output);
    })
    .catch((err) => output.destroy(mapError(err)));
  return Duplex.from({ writable: input, readable: output });
}

export function ageEncryptor(recipients: readonly string[]): ArtifactEncryptor {
  if (recipients.length === 0)
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "ageEncryptor needs at least one recipient", {
      remediation:
        "Pass one or more age1… recipients, or write a plaintext snapshot on purpose with insecurePlaintext.",
      stage: "arguments",
    });
  return {
    type: "age",
    recipients: [...recipients],
    encrypt() {
      return bridge(
        async (input) => {
          const e = new (await age()).Encrypter();
          for (const r of recipients) e.addRecipient(r);
          return (await e.encrypt(input as never)) as unknown as WebReadableStream<Uint8Array>;
        },
        (err) => (err instanceof Error ? err : new Error(String(err))),
      );
    },
  };
}

export function ageDecryptor(
  identities: readonly string[],
  origin = "the identity",
  identityFile?: string,
): ArtifactDecryptor {
  return {
    ...(identityFile ? { identityFile } : {}),
    decrypt() {
      return bridge(
        async (input) => {
          const d = new (await age()).Decrypter();
          for (const i of identities) d.addIdentity(i);
          return (await d.decrypt(input as never)) as unknown as WebReadableStream<Uint8Array>;
        },
        (err) => {
          const message = err instanceof Error ? err.message : String(err);
          // Only "no identity matched" is about the key; every other failure (not an age header,
          // a bad stanza, a chunk whose tag fails) is about the artifact's bytes: a corrupt artifact.
          if (/no identity matched/i.test(message))
            return new SafetyError(
              "PAAS_BACKUP_WRONG_IDENTITY",
              `${origin} cannot decrypt this snapshot (${message})`,
              {
                path: origin,
                remediation:
                  "Pass --identity with the key whose recipient the snapshot was encrypted to (see recipients in its manifest).",
                stage: "decrypt",
              },
            );
          return new IntegrityError(
            "PAAS_BACKUP_ARCHIVE_CORRUPT",
            `the artifact is corrupt: its age encryption cannot be read (${message})`,
            {
              remediation:
                "Do not restore this artifact: it is damaged or not an age file. Restore an older snapshot that verifies, or fetch this one again from the offsite copy.",
              stage: "decrypt",
              data: { reason: message },
            },
          );
        },
      );
    },
  };
}
