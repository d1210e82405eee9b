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
    weight: 1,
    arbitrary: fc.constantFrom(
      "-----BEGIN RSA PRIVATE KEY-----",
      "MIIEpAIBAAKCAQEA1234abcd",
      "-----END RSA PRIVATE KEY-----",
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
  it("on the same findings, lines and size change for every file and every way of cutting it into chunks", () => {
    fc.assert(
      fc.property(
        file,
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (bytes, cutsA, cutsB) => {
          const counting = scan(bytes, cutsA, false);
          const redacting = scan(bytes, cutsB, true);
          expect(counting).toEqual(redacting);
          expect(scan(bytes, [], false)).toEqual(counting);
        },
      ),
      { numRuns: 1500 },
    );
  });
});
