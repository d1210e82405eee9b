// @paas-backup/core/keys: which retained snapshots an age identity opens (issue 24 §3).
export {
  auditKey,
  identityOpensHeader,
  parseAgeHeader,
  x25519SecretOf,
  type KeyAuditResult,
  type KeyExposure,
} from "./audit.js";
