import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { Manifest, MANIFEST_FORMAT } from "../src/manifest/schema.js";
import { checkManifest } from "../src/manifest/check.js";
import { parseManifest } from "../src/manifest/io.js";
import { IntegrityError } from "../src/errors.js";

const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
const cleanPath = fc
  .array(fc.stringMatching(/^[a-z0-9_.-]{1,8}$/), { minLength: 1, maxLength: 3 })
  .map((parts) => parts.join("/"));
const note = fc.record({ path: cleanPath, reason: fc.string() });
const file = fc.record(
  {
    path: cleanPath,
    size: fc.nat(),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    sha256: hex64,
    mtimeMs: fc.double({ min: 0, max: 2e12, noNaN: true }),
    stored: fc.constantFrom("whole", "append", "unchanged"),
    appendOffset: fc.nat(),
    prefixSha256: hex64,
    sourceSize: fc.nat(),
    sourceSha256: hex64,
    redactions: fc.array(fc.record({ line: fc.integer({ min: 1 }), rule: fc.string() }), { maxLength: 2 }),
  },
  { requiredKeys: ["path", "size", "mode", "sha256", "stored"] },
);
const members = fc.nat({ max: 3 }).chain((n) =>
  fc.record({
    compressed: fc.array(fc.integer({ min: 1 }), { minLength: n, maxLength: n }),
    plain: fc.array(fc.integer({ min: 1 }), { minLength: n, maxLength: n }),
  }),
);
/** Manifests of the manifest@1 shape, optional parts present or not. */
const validManifest = fc.record(
  {
    format: fc.constant(MANIFEST_FORMAT),
    id: fc.string(),
    context: fc.string(),
    kind: fc.constantFrom("full", "incremental"),
    createdAt: fc.string(),
    tool: fc.record({ name: fc.string(), version: fc.string() }),
    include: fc.array(fc.string(), { maxLength: 2 }),
    parent: fc.record({ id: fc.string(), sha256: hex64 }),
    encryption: fc.record(
      { type: fc.constantFrom("none", "age"), recipients: fc.array(fc.string(), { maxLength: 2 }) },
      { requiredKeys: ["type"] },
    ),
    files: fc.array(file, { maxLength: 3 }),
    absent: fc.array(cleanPath, { maxLength: 2 }),
    deleted: fc.array(cleanPath, { maxLength: 2 }),
    excluded: fc.array(note, { maxLength: 2 }),
    skipped: fc.array(note, { maxLength: 2 }),
    warnings: fc.array(note, { maxLength: 2 }),
    totals: fc.record({ files: fc.integer(), bytes: fc.integer(), storedBytes: fc.integer() }),
    scannerRules: fc.integer({ min: 1, max: 9 }),
    scannerAllow: fc.array(fc.record({ path: fc.string(), rule: fc.string() }), { maxLength: 2 }),
    gzipMembers: members,
  },
  {
    requiredKeys: [
      "format",
      "id",
      "context",
      "kind",
      "createdAt",
      "tool",
      "include",
      "encryption",
      "files",
      "absent",
      "deleted",
      "excluded",
      "skipped",
      "warnings",
      "totals",
    ],
  },
);

/** Values a damaged or hostile manifest might hold where a field is: wrong types, edge numbers, bad paths, hashes. */
const hostileValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    -1,
    0,
    1.5,
    2 ** 53,
    -0,
    0o10000,
    "",
    "/abs",
    "a/../b",
    "a//b",
    "./a",
    "a/.",
    "A".repeat(64),
    "0".repeat(63),
    "full",
    "age",
    null,
    [],
    {},
    "appended",
  ),
);

type Json = unknown;
/** Every place in a JSON value, as a key path. */
function paths(value: Json, at: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [at];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...at, i])));
  else if (value && typeof value === "object")
    for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...at, k]));
  return out;
}
function setAt(value: Json, at: (string | number)[], to: Json | undefined): Json {
  if (at.length === 0) return to;
  const copy: any = Array.isArray(value) ? [...value] : { ...(value as object) };
  const [head, ...rest] = at;
  if (rest.length === 0 && to === undefined) delete copy[head!];
  else copy[head!] = setAt(copy[head!], rest, to);
  return copy;
}

const EDGE_NUMBERS = [-1, 0, -0, 0.5, 1, 2 ** 53, 0o7777, 0o10000, 1e300];
const EDGE_STRINGS = [
  "",
  "/abs",
  "a/../b",
  "a//b",
  "./a",
  "a/.",
  "..",
  "A".repeat(64),
  "0".repeat(63),
  "0".repeat(65),
];

/**
 * A valid manifest with one place replaced (by an edge value of the same type, most often, so
 * each bound is hit: a mode of 0o10000, a size of 2^53, a path with ".."), deleted, or given an
 * unknown key.
 */
const mutatedManifest = fc
  .tuple(
    validManifest,
    fc.nat(),
    hostileValue,
    fc.nat(),
    fc.constantFrom("edge", "edge", "replace", "delete", "extra"),
  )
  .map(([m, pick, value, edge, how]) => {
    const all = paths(m);
    const at = all[pick % all.length]!;
    if (how === "delete") return setAt(m, at, undefined);
    if (how === "extra") return setAt(m, [...at, "unexpected"], value);
    if (how === "edge") {
      const here = at.reduce((v: any, k) => v[k], m);
      if (typeof here === "number") return setAt(m, at, EDGE_NUMBERS[edge % EDGE_NUMBERS.length]);
      if (typeof here === "string") return setAt(m, at, EDGE_STRINGS[edge % EDGE_STRINGS.length]);
    }
    return setAt(m, at, value);
  });

describe("the manifest check without zod (issue 14: list does not load zod)", () => {
  it("accepts every manifest the published zod schema accepts, with the same result, and nothing else", () => {
    fc.assert(
      fc.property(fc.oneof(validManifest, mutatedManifest, mutatedManifest), (raw) => {
        // through JSON, as manifests are read
        const value = JSON.parse(JSON.stringify(raw ?? null));
        const zod = Manifest.safeParse(value);
        const ours = checkManifest(value);
        expect(ours.ok).toBe(zod.success);
        if (ours.ok && zod.success) expect(ours.manifest).toEqual(zod.data);
      }),
      { numRuns: 5000 },
    );
  });

  it("names the field that is wrong in the integrity error", () => {
    const good = fc.sample(validManifest, { numRuns: 1, seed: 7 })[0]!;
    const bad = {
      ...good,
      files: [{ path: "../etc/passwd", size: 1, mode: 0o600, sha256: "0".repeat(64), stored: "whole" }],
    };
    let caught: unknown;
    try {
      parseManifest(JSON.stringify(bad), "ctx/20260101T000000Z.manifest.json");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(IntegrityError);
    expect((caught as IntegrityError).code).toBe("PAAS_BACKUP_MANIFEST_INVALID");
    expect((caught as Error).message).toContain("files.0.path: not a clean relative path");
    expect(parseManifest(JSON.stringify(good), "x").id).toBe(good.id);
  });
});
