// @paas-backup/core/manifest: the manifest@1 schema (zod, for callers who validate manifests
// themselves: importing it loads zod), the hand-written check core reads with, canonical JSON.
export { Manifest, type ManifestFile } from "./schema.js";
export { MANIFEST_FORMAT, canonicalJson } from "./format.js";
export { parseManifest } from "./io.js";
