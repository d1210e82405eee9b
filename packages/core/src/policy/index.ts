// @paas-backup/core/policy: what a backup holds (protected files, exclusions, context names) and
// where it may live (outside any git work tree, links resolved), and si's state layout
// (<state_root>/contexts/<context>). The secret scanner is its own
// entry, @paas-backup/core/redact, so a caller that only checks a name does not load its rules.
export { validateContextName, isContextFolderName, MAX_CONTEXT_NAME_BYTES } from "./context.js";
export {
  PROTECTED_FILES,
  EVENT_LOGS,
  OPTIONAL_FOLDERS,
  hardExclusionReason,
  type OptionalFolder,
} from "./selection.js";
export {
  findGitRoot,
  nearestExisting,
  workTreeOf,
  allowRepoStateFrom,
  assertOutsideWorkTree,
  assertSafeLocations,
  assertIdentityLocation,
  type GuardedLocation,
} from "./work-tree.js";
export { contextDir, contextsDir, isWithin } from "../util/paths.js";
