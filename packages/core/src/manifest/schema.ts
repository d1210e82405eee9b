import { z } from "zod";

/**
 * The manifest's published zod schema, for SDK callers who validate a manifest themselves. The
 * tool reads manifests with the hand-written check in ./check.ts (the same rules, without loading
 * zod, so `list` starts fast); a property test holds the two to the same verdict on every input.
 *
 * The manifest is the snapshot's table of contents and its proof: for every file its path,
 * size, mode and sha256 at snapshot time, and for an incremental how each file was stored.
 * It travels inside the archive (a pax `comment` on the trailing "./" entry, which GNU tar
 * ignores) and beside it as <id>.manifest.json so that listing and retention need no decompression.
 */
export { MANIFEST_FORMAT, canonicalJson } from "./format.js";
import { MANIFEST_FORMAT } from "./format.js";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);
const relPath = z
  .string()
  .min(1)
  .refine(
    (p) => !p.startsWith("/") && !p.split("/").some((s) => s === ".." || s === "." || s === ""),
    "not a clean relative path",
  );

export const StoredAs = z.enum(["whole", "append", "unchanged"]);
export type StoredAs = z.infer<typeof StoredAs>;

export const ManifestFile = z.object({
  path: relPath,
  size: z.number().int().nonnegative(),
  mode: z.number().int().min(0).max(0o7777),
  sha256: sha256Hex,
  mtimeMs: z.number().nonnegative().optional(),
  /** how this snapshot's archive holds the file: all of it, only bytes past `appendOffset`, or nothing (see parent) */
  stored: StoredAs,
  /** for stored=append: the parent's size of this file, where the appended bytes start */
  appendOffset: z.number().int().nonnegative().optional(),
  /** for stored=append: sha256 of bytes [0, appendOffset) read now; equals the parent's sha256 of the file */
  prefixSha256: sha256Hex.optional(),
  /**
   * Set when the stored copy differs from the source because secret values were replaced by
   * `<redacted>`: the source's size and sha256 (what the next incremental proves the log's old
   * bytes against), while size and sha256 above describe the stored copy (what restore writes
   * and checks). For stored=append, appendOffset and prefixSha256 are of the stored copy too.
   */
  sourceSize: z.number().int().nonnegative().optional(),
  sourceSha256: sha256Hex.optional(),
  /** every value the stored copy holds as <redacted>, carried over from the parent for an incremental: line and rule, never the value */
  redactions: z.array(z.object({ line: z.number().int().positive(), rule: z.string() })).optional(),
});
export type ManifestFile = z.infer<typeof ManifestFile>;

/** excluded and skipped paths: a folder is named with a trailing "/" */
const notePath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "not a clean relative path");
export const ManifestEntryNote = z.object({ path: notePath, reason: z.string() });
export type ManifestEntryNote = z.infer<typeof ManifestEntryNote>;

export const Manifest = z.object({
  format: z.literal(MANIFEST_FORMAT),
  id: z.string(),
  context: z.string(),
  kind: z.enum(["full", "incremental"]),
  createdAt: z.string(),
  tool: z.object({ name: z.string(), version: z.string() }),
  include: z.array(z.string()),
  /**
   * The snapshot it extends: `sha256` is the parent's artifact as it is now (a key rotation updates
   * it in the sidecar manifest), `payloadSha256` the parent's plaintext .tar.gz, which no rotation
   * changes (issue 24 §3).
   */
  parent: z.object({ id: z.string(), sha256: sha256Hex, payloadSha256: sha256Hex.optional() }).optional(),
  /** the recipients at creation inside the artifact; the current ones in the sidecar manifest */
  encryption: z.object({ type: z.enum(["none", "age"]), recipients: z.array(z.string()).optional() }),
  /** sidecar manifest only: the sha256 of the plaintext .tar.gz (the artifact before age), which a rotation keeps */
  payloadSha256: sha256Hex.optional(),
  /** sidecar manifest only: every `keys rotate` that re-encrypted the artifact */
  rotations: z
    .array(
      z.object({
        at: z.string(),
        /** the rotation record: <context>/rotations/<rotation>.json */
        rotation: z.string(),
        added: z.array(z.string()),
        removed: z.array(z.string()),
        /** the artifact's sha256 before this rotation */
        previousSha256: sha256Hex,
      }),
    )
    .optional(),
  files: z.array(ManifestFile),
  absent: z.array(relPath),
  deleted: z.array(relPath),
  excluded: z.array(ManifestEntryNote),
  skipped: z.array(ManifestEntryNote),
  warnings: z.array(ManifestEntryNote),
  totals: z.object({ files: z.number().int(), bytes: z.number().int(), storedBytes: z.number().int() }),
  /** the operator's labels (`snapshot --tag pre-upgrade`): `restore --snapshot tag:NAME`, retention keepTags */
  tags: z.array(z.string()).optional(),
  /** the operator's note (`snapshot --note "before 1.4"`) */
  note: z.string().optional(),
  /** SCANNER_RULES_VERSION of the secret scanner that read every stored byte */
  scannerRules: z.number().int().positive().optional(),
  /** the secretAllow entries that applied to this snapshot's files (path and rule, never a value) */
  scannerAllow: z.array(z.object({ path: z.string(), rule: z.string() })).optional(),
  /**
   * The tar.gz is a run of gzip members laid end to end from byte 0 (of the plaintext, inside age):
   * member i is compressed[i] bytes that inflate to plain[i] bytes of tar. The entry that carries
   * this manifest follows them, unindexed. Lets restore and verify --deep inflate members in parallel.
   */
  gzipMembers: z
    .object({ compressed: z.array(z.number().int().positive()), plain: z.array(z.number().int().positive()) })
    .refine((m) => m.compressed.length === m.plain.length, "compressed and plain list the same members")
    .optional(),
});
export type Manifest = z.infer<typeof Manifest>;
