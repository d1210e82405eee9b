import type { Manifest } from "./schema.js";
import { MANIFEST_FORMAT } from "./format.js";

/**
 * The manifest@1 shape, checked by hand. Every command reads manifests, and `list` reads nothing
 * else: loading zod (about 95 modules) cost it more than half its start-up. The rules are those
 * of the published zod schema in ./schema.ts, and a property test (fast-check) holds the two to
 * the same verdict on generated and mutated manifests. As zod does, unknown keys are dropped.
 */

/** A check returns the value to keep, or throws Problem naming where and what. */
type Check<T> = (value: unknown, at: string) => T;

class Problem extends Error {}

const fail = (at: string, what: string): never => {
  throw new Problem(`${at || "(root)"}: ${what}`);
};

const str: Check<string> = (v, at) => (typeof v === "string" ? v : fail(at, "expected a string"));

function num(opts: { int?: boolean; min?: number; max?: number; positive?: boolean } = {}): Check<number> {
  return (v, at) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return fail(at, "expected a number");
    if (opts.int && !Number.isSafeInteger(v)) fail(at, "expected an integer");
    if (opts.positive && !(v > 0)) fail(at, "expected a number > 0");
    if (opts.min !== undefined && v < opts.min) fail(at, `expected a number >= ${opts.min}`);
    if (opts.max !== undefined && v > opts.max) fail(at, `expected a number <= ${opts.max}`);
    return v;
  };
}

function oneOf<T extends string>(...options: T[]): Check<T> {
  return (v, at) =>
    options.includes(v as T)
      ? (v as T)
      : fail(at, `expected one of ${options.map((o) => `"${o}"`).join(", ")}`);
}

function array<T>(item: Check<T>): Check<T[]> {
  return (v, at) => {
    if (!Array.isArray(v)) return fail(at, "expected an array");
    return v.map((x, i) => item(x, at ? `${at}.${i}` : String(i)));
  };
}

const OPTIONAL = Symbol("optional");
type Optional<T> = Check<T | undefined> & { [OPTIONAL]: true };

function optional<T>(check: Check<T>): Optional<T> {
  const c = ((v: unknown, at: string) => (v === undefined ? undefined : check(v, at))) as Optional<T>;
  c[OPTIONAL] = true;
  return c;
}

function object<S extends Record<string, Check<unknown>>>(
  shape: S,
): Check<{ [K in keyof S]: ReturnType<S[K]> }> {
  return (v, at) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(at, "expected an object");
    const input = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [key, check] of Object.entries(shape)) {
      const value = check(input[key], at ? `${at}.${key}` : key);
      if (value !== undefined || (key in input && !(OPTIONAL in check))) out[key] = value;
    }
    return out as { [K in keyof S]: ReturnType<S[K]> };
  };
}

function refine<T>(check: Check<T>, ok: (value: T) => boolean, what: string): Check<T> {
  return (v, at) => {
    const value = check(v, at);
    if (!ok(value)) fail(at, what);
    return value;
  };
}

const sha256Hex = refine(str, (s) => /^[0-9a-f]{64}$/.test(s), "expected 64 lowercase hex digits");
const relPath = refine(
  str,
  (p) => p.length > 0 && !p.startsWith("/") && !p.split("/").some((s) => s === ".." || s === "." || s === ""),
  "not a clean relative path",
);
const notePath = refine(
  str,
  (p) => p.length > 0 && !p.startsWith("/") && !p.split("/").includes(".."),
  "not a clean relative path",
);
const note = object({ path: notePath, reason: str });
const count = num({ int: true, min: 0 });

const manifestFile = object({
  path: relPath,
  size: count,
  mode: num({ int: true, min: 0, max: 0o7777 }),
  sha256: sha256Hex,
  mtimeMs: optional(num({ min: 0 })),
  stored: oneOf("whole", "append", "unchanged"),
  appendOffset: optional(count),
  prefixSha256: optional(sha256Hex),
  sourceSize: optional(count),
  sourceSha256: optional(sha256Hex),
  redactions: optional(array(object({ line: num({ int: true, positive: true }), rule: str }))),
});

const manifest = object({
  format: refine(str, (f) => f === MANIFEST_FORMAT, `expected "${MANIFEST_FORMAT}"`),
  id: str,
  context: str,
  kind: oneOf("full", "incremental"),
  createdAt: str,
  tool: object({ name: str, version: str }),
  include: array(str),
  parent: optional(object({ id: str, sha256: sha256Hex, payloadSha256: optional(sha256Hex) })),
  encryption: object({ type: oneOf("none", "age"), recipients: optional(array(str)) }),
  payloadSha256: optional(sha256Hex),
  rotations: optional(
    array(
      object({ at: str, rotation: str, added: array(str), removed: array(str), previousSha256: sha256Hex }),
    ),
  ),
  files: array(manifestFile),
  absent: array(relPath),
  deleted: array(relPath),
  excluded: array(note),
  skipped: array(note),
  warnings: array(note),
  totals: object({ files: num({ int: true }), bytes: num({ int: true }), storedBytes: num({ int: true }) }),
  tags: optional(array(str)),
  note: optional(str),
  scannerRules: optional(num({ int: true, positive: true })),
  scannerAllow: optional(array(object({ path: str, rule: str }))),
  gzipMembers: optional(
    refine(
      object({
        compressed: array(num({ int: true, positive: true })),
        plain: array(num({ int: true, positive: true })),
      }),
      (m) => m.compressed.length === m.plain.length,
      "compressed and plain list the same members",
    ),
  ),
});

/** The manifest with unknown keys dropped, or the first problem as "field.path: what". */
export function checkManifest(
  raw: unknown,
): { ok: true; manifest: Manifest } | { ok: false; problem: string } {
  try {
    return { ok: true, manifest: manifest(raw, "") as Manifest };
  } catch (err) {
    if (err instanceof Problem) return { ok: false, problem: err.message };
    throw err;
  }
}
