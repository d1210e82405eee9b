import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { SecretScanner } from "../src/policy/secrets.js";
import { SECRET_SAMPLES, BENIGN_SAMPLES, eventLine } from "@paas-backup/testing";

/**
 * The counting scanner (snapshots, in the worker) reads bytes and turns only candidate lines into
 * strings; the redacting scanner runs the string path over whole blocks. Both must find the same
 * things on the same lines and agree on what redaction does to the size, however the bytes are cut.
 */
const at = new Date("2026-11-20T10:00:00Z");
const line = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .nat(50)
      .chain((i) =>
        fc.constantFrom(
          ...["deploy", "alert", "audit"].map((k) => eventLine(k as never, "internal-dogfood", at, i)),
        ),
      ),
  },
  { weight: 3, arbitrary: fc.constantFrom(...SECRET_SAMPLES.map((s) => s.text)) },
  { weight: 2, arbitrary: fc.constantFrom(...BENIGN_SAMPLES.map((s) => s.text)) },
  { weight: 1, arbitrary: fc.string({ unit: "binary-ascii", maxLength: 80 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "-----BEGIN RSA PRIVATE KEY-----",
      "-----BEGIN PRIVATE KEY-----",
      "MIIEpAIBAAKCAQEA1234abcd",
      "-----END RSA PRIVATE KEY-----",
      "-----END PRIVATE KEY-----",
      // a key inside a JSON string, its footer followed by more of the object (found by review)
      '{"private_key":"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n',
      '-----END PRIVATE KEY-----\\n","client_secret":"aK39dlQp2z"}',
      "--- -----",
      "\r",
      "",
    ),
  },
  {
    weight: 1,
    arbitrary: fc.stringMatching(
      /^[a-zA-Z_"{}:= \t<>-]{0,40}(token|secret|pass|apikey|credential)[a-zA-Z_"{}:= \t<>0-9-]{0,40}$/,
    ),
  },
);
const file = fc.tuple(fc.array(line, { maxLength: 40 }), fc.boolean()).map(([lines, trailing]) => {
  const text = lines.join("\n") + (trailing ? "\n" : "");
  return Buffer.from(text, "latin1");
});

function scan(bytes: Buffer, cuts: number[], redact: boolean) {
  const scanner = new SecretScanner("events/x.jsonl", { redact, firstLine: 1 });
  let from = 0;
  for (const c of [...cuts.map((c) => c % (bytes.length + 1))].sort((a, b) => a - b)) {
    scanner.push(bytes.subarray(from, Math.max(from, c)));
    from = Math.max(from, c);
  }
  scanner.push(bytes.subarray(from));
  scanner.end();
  return { findings: scanner.findings, count: scanner.findingCount, sizeDelta: scanner.sizeDelta };
}

describe("the scanner's byte path and string path agree", () => {
  it("on the same findings, lines and size change for every file cut into chunks alike, and however it is cut where no private key is in play", () => {
    fc.assert(
      fc.property(
        file,
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (bytes, cutsA, cutsB) => {
          // Cut alike (as a snapshot's counting pass and its redacting pass read the same file):
          // the same answer, private keys included.
          const counting = scan(bytes, cutsA, false);
          expect(counting).toEqual(scan(bytes, cutsA, true));
          // Cut otherwise: the same answer wherever no private key is in play. A key's rule
          // spans lines, and where a block starts inside one still matters (both paths alike).
          if (bytes.indexOf("-----") < 0) {
            expect(scan(bytes, cutsB, true)).toEqual(counting);
            expect(scan(bytes, [], false)).toEqual(counting);
          }
        },
      ),
      { numRuns: 4000 },
    );
  });
});
