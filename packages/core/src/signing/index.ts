// @paas-backup/core/signing: snapshot signatures in OpenSSH's SSHSIG format (issue 24 §2).
export {
  SIGNATURE_NAMESPACE,
  fingerprint,
  formatPublicKey,
  generateSigningKeyFile,
  parseAllowedSigners,
  parseSigningKeyFile,
  verifySignature,
  type AllowedSigner,
  type SignatureCheck,
  type SigningKey,
} from "./sshsig.js";
export {
  SIGNATURE_SUFFIX,
  SIGNING_RECORD_KEY,
  checkSnapshotSignature,
  readAllowedSigners,
  readSigningRecord,
  requireTrustedSnapshot,
  signatureKeys,
  type SignaturePolicy,
  type SigningRecord,
  type SnapshotSignature,
} from "./verify.js";
export { createSigningKeyFile, loadSigningKey } from "./key-file.js";
