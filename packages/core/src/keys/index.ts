// @paas-backup/core/keys: which retained snapshots an age identity opens (issue 24 §3).
export { auditKey, type KeyAuditResult, type KeyExposure } from "./audit.js";
export {
  ROTATIONS_DIR,
  listRotations,
  rotateRecipients,
  rotationsDir,
  type RotateOptions,
  type RotateResult,
  type RotationOffsiteCopy,
  type RotationPhase,
  type RotationRecord,
  type RotationStep,
  type SharedRotation,
} from "./rotate.js";
