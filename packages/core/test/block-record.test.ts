import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { z } from "zod";
import { checkBlockRecord } from "../src/records/block.js";

/** The zod schema the marker was read with before checkBlockRecord (kept here as the oracle). */
const ZodBlockRecord = z.object({
  schema: z.literal("paas-backup/block@1"),
  context: z.string(),
  ticket: z.string(),
  blockedAt: z.string(),
  reason: z.string(),
  snapshot: z.object({ id: z.string(), sha256: z.string() }).nullable(),
  failingChecks: z.array(z.object({ name: z.string(), ok: z.boolean(), detail: z.string() })),
  blocks: z.array(z.string()),
  externalDoctor: z.object({ command: z.string() }).nullable().optional(),
  pendingValidation: z.boolean().optional(),
});

const anyJson = fc.jsonValue({ maxDepth: 2 });
const valid = fc.record(
  {
    schema: fc.constant("paas-backup/block@1"),
    context: fc.string(),
    ticket: fc.string(),
    blockedAt: fc.string(),
    reason: fc.string(),
    snapshot: fc.option(fc.record({ id: fc.string(), sha256: fc.string() }), { nil: null }),
    failingChecks: fc.array(fc.record({ name: fc.string(), ok: fc.boolean(), detail: fc.string() }), {
      maxLength: 3,
    }),
    blocks: fc.array(fc.string(), { maxLength: 3 }),
    externalDoctor: fc.option(fc.record({ command: fc.string() }), { nil: null }),
    pendingValidation: fc.boolean(),
    extra: anyJson,
  },
  {
    requiredKeys: [
      "schema",
      "context",
      "ticket",
      "blockedAt",
      "reason",
      "snapshot",
      "failingChecks",
      "blocks",
    ],
  },
);

/** A valid record with one field (or a nested one) replaced, removed or given a stray key. */
const mutated = fc
  .tuple(valid, fc.nat(), anyJson, fc.constantFrom("replace", "delete", "nested"))
  .map(([record, pick, value, how]) => {
    const copy = JSON.parse(JSON.stringify(record)) as Record<string, unknown>;
    const keys = Object.keys(copy);
    const key = keys[pick % keys.length]!;
    if (how === "delete") delete copy[key];
    else if (how === "replace") copy[key] = value;
    else {
      const inner = copy[key];
      if (Array.isArray(inner) && inner.length > 0) inner[pick % inner.length] = value;
      else if (inner && typeof inner === "object") {
        const innerKeys = Object.keys(inner);
        if (innerKeys.length > 0)
          (inner as Record<string, unknown>)[innerKeys[pick % innerKeys.length]!] = value;
      } else copy[key] = value;
    }
    return copy;
  });

describe("checkBlockRecord", () => {
  it("gives the zod schema's verdict and result on valid, mutated and arbitrary markers", () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.oneof(valid, mutated, anyJson), (raw) => {
        const ours = checkBlockRecord(raw);
        const theirs = ZodBlockRecord.safeParse(raw);
        if (theirs.success) {
          accepted++;
          expect(ours).toEqual(theirs.data);
        } else {
          refused++;
          expect(ours).toBeNull();
        }
      }),
      { numRuns: 3000 },
    );
    // both kinds of input were really exercised
    expect(accepted).toBeGreaterThan(300);
    expect(refused).toBeGreaterThan(300);
  });
});
