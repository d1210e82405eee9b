export { MemoryFileSystem } from "./memory-fs.js";
export { createStateRoot, appendEvents, eventLine, type StateRoot, type StateRootOptions, type ContextSpec, type PlantedSecret } from "./state-root.js";
