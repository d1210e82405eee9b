import type { FileSystem } from "../../fs/types.js";
import type { SecretAcknowledgement, SecretAllowance } from "../../policy/secrets.js";
import type { CheckResult } from "../../records/incident.js";
import type { EventRecord } from "../events.js";
import type { ScannedFiles } from "../proven.js";

export type DoctorCheck = CheckResult;

/** si's doctor envelope (reference §7), with paas-backup's own checks added. */
export interface DoctorReport {
  ok: boolean;
  command: "doctor";
  context: string;
  mode: "live";
  count: number;
  checks: DoctorCheck[];
  /** `si paas context show` as resolved from the restored config.json */
  contextShow: ContextShow | null;
  /** `si paas events list --limit 20` over the restored logs */
  events: EventRecord[];
}

export interface ContextShow {
  name: string;
  type: string;
  state_root: string;
  vault_file: string;
  created_at: string;
  updated_at: string;
}

export interface DoctorOptions {
  fs: FileSystem;
  stateRoot: string;
  context: string;
  secretAllow?: readonly SecretAllowance[];
  /** findings the operator acknowledged (rotated): not a failure of the secret check */
  secretAcknowledged?: readonly SecretAcknowledgement[];
  /** si's SI_PAAS_ALLOW_REPO_STATE, passed in by the caller */
  allowRepoState?: boolean;
  /** ignore the block marker (the restore that is about to write it asks this) */
  ignoreBlock?: boolean;
  eventsLimit?: number;
  /**
   * Files just restored whose bytes the snapshot's scanner (same rules) already read: skipped by
   * the secret scan while their size is still the one restored. See filesScannedAtSnapshot.
   */
  scannedAtSnapshot?: ScannedFiles;
}
