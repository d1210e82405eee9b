/**
 * `@paas-backup/core/catalog`: what listing a context's snapshots needs and nothing more, so a
 * caller that only lists (the CLI's `list`, a monitoring script) does not load the archiver, the
 * restorer, age, the S3 driver or zod. Everything here is also exported from the package's root.
 */
export {
  openRepository,
  scanSnapshots,
  scanSnapshotsIn,
  type Repository,
  type SnapshotRef,
} from "./repository/repository.js";
export { checkSnapshotChecksum, type ChecksumCheck } from "./repository/checksum.js";
export { compareSnapshotIds } from "./repository/ids.js";
export { validateContextName } from "./policy/context.js";
export { contextDir, contextsDir } from "./util/paths.js";
export { parseManifest } from "./manifest/io.js";
export { canonicalJson, MANIFEST_FORMAT } from "./manifest/format.js";
