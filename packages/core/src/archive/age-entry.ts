// @paas-backup/core/age: age encryption of artifacts and keygen, without the archive reader (tar),
// so a caller that only snapshots or checks its keys loads neither.
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
