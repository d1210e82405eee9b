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
  // JSON fields under key words, most of them already "<redacted>" as si writes them (the byte
  // path skips those without a string) and some nearly so, with a real value beside them.
  {
    weight: 3,
    arbitrary: fc
      .array(
        fc.tuple(
          fc.constantFrom("", "api_", "x.", "db-", "{", " ", '"'),
          fc.constantFrom("token", "SECRET", "Pass", "api_key", "credential", "name"),
          fc.constantFrom("", "_id", "word", "s", " ", '"'),
          fc.constantFrom('":"', '" : "', '"\t:"', '":', '"="', ":"),
          fc.constantFrom(
            "<redacted>",
            "<redacted>",
            "<redacted",
            "<REDACTED>",
            "<redacted>x",
            "aK39dlQp2zXc8VbN",
            "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
            "",
          ),
          fc.constantFrom('"', '",', '"}', "", "\\"),
        ),
        { minLength: 1, maxLength: 4 },
      )
      .map((fields) => `{"${fields.map((f) => f.join("")).join(',"')}`),
  },
);
const file = fc.tuple(fc.array(line, { maxLength: 40 }), fc.boolean()).map(([lines, trailing]) => {
  const text = lines.join("\n") + (trailing ? "\n" : "");
  return Buffer.from(text, "latin1");
});

/**
 * The same lines spread through a log of plain si event lines (their token fields "<redacted>"),
 * tens of KiB: long enough that the byte path cuts each block into four stretches and walks them
 * in lockstep, with the interesting lines landing in any stretch and at any stretch's edge.
 */
const filler = (i: number) =>
  eventLine((["deploy", "alert", "audit"] as const)[i % 3]!, "internal-dogfood", at, i);
const paddedFile = fc
  .tuple(fc.array(fc.tuple(fc.nat(60), line), { minLength: 1, maxLength: 24 }), fc.boolean())
  .map(([entries, trailing]) => {
    const lines: string[] = [];
    for (const [fill, l] of entries) {
      for (let i = 0; i < fill; i++) lines.push(filler(lines.length));
      lines.push(l);
    }
    return Buffer.from(lines.join("\n") + (trailing ? "\n" : ""), "latin1");
  });

/** Whether a rule that spans lines may be in play: a private key's dashes, a Kubernetes Secret's kind. */
const spansLines = (bytes: Buffer) =>
  bytes.indexOf("-----") >= 0 || /kind"?[ \t]*:[ \t]*"?secret/i.test(bytes.toString("latin1"));

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
          // Cut otherwise: the same answer wherever no private key or Kubernetes Secret is in
          // play. Their rules span lines, and where a block starts inside one still matters
          // (both paths alike).
          if (!spansLines(bytes)) {
            expect(scan(bytes, cutsB, true)).toEqual(counting);
            expect(scan(bytes, [], false)).toEqual(counting);
          }
        },
      ),
      { numRuns: 4000 },
    );
  });

  it("in logs of tens of KiB, where the byte path walks each block as four stretches at once", () => {
    let split = 0;
    fc.assert(
      fc.property(paddedFile, fc.array(fc.nat(), { maxLength: 3 }), (bytes, cuts) => {
        if (bytes.length >= 32 * 1024) split++;
        const counting = scan(bytes, cuts, false);
        expect(counting).toEqual(scan(bytes, cuts, true));
        if (!spansLines(bytes)) expect(scan(bytes, [], false)).toEqual(counting);
      }),
      { numRuns: 300 },
    );
    // most runs are long enough for the lockstep walk (blocks of 16 KiB and up)
    expect(split).toBeGreaterThan(150);
  });
});
