// @paas-backup/core/archive: reading tar.gz artifacts with entry checks (loads node-tar), the
// artifact encryption contract, age and keygen. @paas-backup/core/age is age alone, without tar.
export {
  readArchive,
  hostileEntryReason,
  MAX_ENTRY_DEPTH,
  MAX_ENTRY_PATH_BYTES,
  type ArchiveEntryInfo,
} from "./reader.js";
export { DEFAULT_GZIP_LEVEL } from "./writer.js";
export type { ArtifactEncryptor, ArtifactDecryptor } from "./encryption.js";
export {
  ageEncryptor,
  ageDecryptor,
  parseRecipients,
  parseIdentities,
  checkIdentities,
  validateRecipient,
  generateIdentityFile,
  recipientOf,
} from "./age.js";
export { createIdentityFile } from "./identity.js";
