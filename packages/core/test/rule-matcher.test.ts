import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { LITERAL_AT, nextMatch, ruleMatcher } from "../src/policy/rule-matcher.js";
import { scanText } from "../src/policy/redact.js";

/** Every match of the matcher over the line, as [index, match, groups, indices]. */
function matchesOf(pattern: RegExp, line: string, hinted: boolean) {
  const m = hinted ? ruleMatcher(pattern) : { pattern, hint: null };
  pattern.lastIndex = 0;
  const out: unknown[] = [];
  for (let x = nextMatch(m, line); x; x = nextMatch(m, line)) out.push([x.index, [...x], x.indices ?? null]);
  return out;
}

describe("a rule's regex tried only where its literal is (LITERAL_AT)", () => {
  // Lines made of what these formats are made of, so matches, near misses and overlaps are common.
  const piece = fc.constantFrom(
    ..."0123456789abcdefABCDEF".split(""),
    "-us",
    "-us1",
    "-us12",
    "SK",
    "sk",
    " ",
    "_",
    "-",
    "x",
    "deadbeefdeadbeefdeadbeefdeadbeef",
    "0123456789ABCDEF0123456789abcdef",
  );
  const line = fc.array(piece, { maxLength: 80 }).map((p) => p.join(""));

  for (const [source, at] of LITERAL_AT)
    for (const flags of ["g", "gd"])
      it(`finds what the plain regex finds: /${source}/${flags} (${JSON.stringify(at.literal)} at ${at.offset})`, () => {
        const pattern = new RegExp(source, flags);
        expect(ruleMatcher(pattern).hint).not.toBeNull();
        fc.assert(
          fc.property(line, (l) => {
            expect(matchesOf(pattern, l, true)).toEqual(matchesOf(pattern, l, false));
          }),
          { numRuns: 3000 },
        );
      });

  it("leaves a pattern with the i flag, or one it does not list, to the plain regex", () => {
    expect(ruleMatcher(/SK[0-9a-fA-F]{32}/gi).hint).toBeNull();
    expect(ruleMatcher(/\b(AIza[\w-]{35})(?![\w-])/g).hint).toBeNull();
  });

  it("the scanner still finds the keys these formats hold, beside near misses on hex-heavy lines", () => {
    const hex = "0123456789abcdef".repeat(8);
    const mailchimp = "8d3f1c0b9a7e6524f0e1d2c3b4a59687-us14";
    const twilio = "SK9c1f3e5a7b2d4f608e1a3c5b7d9f0e2a";
    const found = scanText(
      "events/audit.jsonl",
      Buffer.from(
        `{"target":"prod-us-2","id":"${hex}","note":"x${hex}-us2 SKzz"}\n{"msg":"mc key ${mailchimp} and ${twilio} set"}\n`,
      ),
    );
    expect(found.map((f) => [f.line, f.rule]).sort()).toEqual([
      [2, "mailchimp-api-key"],
      [2, "twilio-api-key"],
    ]);
  });
});
