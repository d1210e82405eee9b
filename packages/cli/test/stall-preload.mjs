// Test preload (never part of the product): `NODE_OPTIONS=--import=<this> paas-backup ...`.
// PB_STALL_OPEN=<suffix>  opening a file whose path ends with <suffix> never settles and holds
// nothing open: the run's event loop runs dry while it still awaits, as it did when a snapshot
// ended with exit 0 and no output in a full test run.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const suffix = process.env.PB_STALL_OPEN;
const open = fs.promises.open;
fs.promises.open = function stallingOpen(path, ...rest) {
  return suffix && String(path).endsWith(suffix) ? new Promise(() => {}) : open(path, ...rest);
};
syncBuiltinESMExports();
