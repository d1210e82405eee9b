export { MemoryFileSystem } from "./memory-fs.js";
export {
  createStateRoot,
  appendEvents,
  eventLine,
  type StateRoot,
  type StateRootOptions,
  type ContextSpec,
  type PlantedSecret,
} from "./state-root.js";
export { hostileCorpus, rawTar, paxRecords, type HostileCase, type RawEntry } from "./hostile.js";
export {
  SECRET_SAMPLES,
  BENIGN_SAMPLES,
  composeWith,
  type SecretSample,
  type BenignSample,
} from "./secret-corpus.js";
export {
  FaultInjectingFileSystem,
  FaultCrashError,
  countFileSystemCalls,
  type FaultPlan,
  type FaultMode,
  type FaultErrorCode,
  type FaultCall,
} from "./fault-fs.js";
export { MemoryStorage } from "./memory-storage.js";
export { startRgw, RGW_PACKAGES, RGW_CLIENT_CHECKSUMS, type Rgw } from "./rgw.js";
export { Prng } from "./simulation/prng.js";
export {
  World,
  POLICY_RETENTION,
  type ProcessRun,
  type ProcessFault,
  type TraceLine,
} from "./simulation/world.js";
export {
  runSimulation,
  formatTrace,
  type SimulationOptions,
  type SimulationResult,
  type SimulationFinding,
} from "./simulation/run.js";
export {
  INVARIANTS,
  checkInvariants,
  observeTruth,
  FUTURE_TOLERANCE_MS,
  type Violation,
  type Truth,
  type ContextTruth,
  type SnapshotTruth,
} from "./simulation/invariants.js";
