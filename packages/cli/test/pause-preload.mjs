// Test preload (never part of the product): `node --import <this> bin.cjs ...`.
// PB_STOP_AFTER_RENAME_TO=<text>  right after the first fs rename whose target contains <text>,
//                                 writes PB_STOP_MARKER (a path) and stops the process (SIGSTOP);
//                                 the test resumes it with SIGCONT, or kills it.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const target = process.env.PB_STOP_AFTER_RENAME_TO ?? "";
const marker = process.env.PB_STOP_MARKER ?? "";
let stopped = false;
const rename = fs.promises.rename;
fs.promises.rename = async function pausingRename(from, to) {
  await rename(from, to);
  if (!stopped && target && String(to).includes(target)) {
    stopped = true;
    if (marker) fs.writeFileSync(marker, `${from}\n${to}\n`);
    process.kill(process.pid, "SIGSTOP");
  }
};
syncBuiltinESMExports();
