import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { canonicalEntryPath, readArchive } from "../src/archive/reader.js";
import { PaasBackupError } from "../src/errors.js";
import { rawTar, type RawEntry } from "@paas-backup/testing";

/**
 * Issue 20: every rule (exclusions, the duplicate check, the manifest) judges one spelling of an
 * entry's path, made once in the reader. Property tests over the spellings a tar can carry.
 */
const segment = fc.constantFrom("alerts", "events", "audit.jsonl", "telegram.json", "a", "b", "vault");
const canonical = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join("/"));

/** Another spelling of a canonical path: "./" before it or between segments, doubled slashes, a trailing slash. */
const spelling = (path: string) =>
  fc
    .record({
      lead: fc.constantFrom("", "./", "././", ".//"),
      joints: fc.array(fc.constantFrom("/", "//", "/./", "/././", "/.//"), {
        minLength: path.split("/").length,
        maxLength: path.split("/").length,
      }),
      trail: fc.constantFrom("", "/", "/.", "/./"),
    })
    .map(({ lead, joints, trail }) => {
      const parts = path.split("/");
      return lead + parts.map((p, i) => (i === 0 ? p : joints[i]! + p)).join("") + trail;
    });

describe("canonicalEntryPath", () => {
  it("maps every spelling of a path to the path itself", () => {
    fc.assert(
      fc.property(
        canonical.chain((p) => fc.tuple(fc.constant(p), spelling(p))),
        ([path, spelled]) => {
          expect(canonicalEntryPath(spelled)).toBe(path);
        },
      ),
    );
  });

  it("is idempotent and leaves no '.' or empty segment and no slash at either end", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("a", ".", "/", "b"), maxLength: 24 }), (raw) => {
        const once = canonicalEntryPath(raw);
        expect(canonicalEntryPath(once)).toBe(once);
        if (once !== "") expect(once.split("/").every((s) => s !== "" && s !== ".")).toBe(true);
        expect(once.startsWith("/") || once.endsWith("/")).toBe(false);
      }),
    );
  });
});

interface ModelEntry {
  path: string;
  type: "file" | "directory";
}

/** What the reader must do with entries in this order: the index of the first refused, or -1. */
function firstConflict(entries: readonly ModelEntry[]): number {
  const files = new Set<string>();
  const folders = new Set<string>();
  const directoryEntries = new Set<string>();
  for (const [i, e] of entries.entries()) {
    const above = e.path
      .split("/")
      .map((_, k, all) => all.slice(0, k).join("/"))
      .slice(1);
    if (files.has(e.path)) return i;
    if (e.type === "directory" && directoryEntries.has(e.path)) return i;
    if (e.type === "file" && folders.has(e.path)) return i;
    if (above.some((a) => files.has(a))) return i;
    if (e.type === "file") files.add(e.path);
    else {
      directoryEntries.add(e.path);
      folders.add(e.path);
    }
    for (const a of above) folders.add(a);
  }
  return -1;
}

describe("readArchive judges canonical paths", () => {
  it("hands over canonical paths, refusing exactly the duplicates and the entries that cross a file", async () => {
    const entry = canonical.chain((path) =>
      fc.record({
        path: fc.constant(path),
        type: fc.constantFrom<"file" | "directory">("file", "file", "directory"),
        spelled: spelling(path),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 8 }), async (entries) => {
        const raw: RawEntry[] = entries.map((e) =>
          e.type === "file"
            ? { name: e.spelled.replace(/\/\.?\/?$/, ""), content: `${e.path}\n` }
            : { name: e.spelled.endsWith("/") ? e.spelled : `${e.spelled}/`, type: "5", mode: 0o700 },
        );
        const seen: ModelEntry[] = [];
        const refusedAt = firstConflict(entries);
        const outcome = await readArchive(Readable.from([gzipSync(rawTar(raw))]), {
          label: "property.tar.gz",
          maxTotalBytes: 1 << 20,
          maxDecompressionRatio: 1e6,
          onEntry: async (info, body) => {
            seen.push({ path: info.path, type: info.type });
            body.resume();
          },
        }).then(
          () => null,
          (err: unknown) => err,
        );
        if (refusedAt === -1) {
          expect(outcome).toBeNull();
          expect(seen).toEqual(entries.map((e) => ({ path: e.path, type: e.type })));
        } else {
          expect(outcome).toBeInstanceOf(PaasBackupError);
          expect((outcome as PaasBackupError).code).toBe("PAAS_BACKUP_HOSTILE_ENTRY");
          expect(seen).toEqual(entries.slice(0, refusedAt).map((e) => ({ path: e.path, type: e.type })));
        }
      }),
      { numRuns: 200 },
    );
  });
});
