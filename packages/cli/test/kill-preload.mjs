// Test preload (never part of the product): `node --import <this> dist/main.js ...`.
// PB_KILL_AFTER_RENAME=N  SIGKILLs the process right after its Nth successful fs rename.
// PB_COUNT_RENAMES=1      prints "renames: <count>" on stderr when the process exits.
// PB_LIST_RENAMES=1       prints "rename <n>: <to>" on stderr after each rename.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const killAt = Number(process.env.PB_KILL_AFTER_RENAME ?? "0");
let renames = 0;
const rename = fs.promises.rename;
fs.promises.rename = async function killableRename(from, to) {
  await rename(from, to);
  renames++;
  if (process.env.PB_LIST_RENAMES) process.stderr.write(`rename ${renames}: ${to}\n`);
  if (renames === killAt) process.kill(process.pid, "SIGKILL");
};
syncBuiltinESMExports();
if (process.env.PB_COUNT_RENAMES) process.on("exit", () => process.stderr.write(`renames: ${renames}\n`));

// PB_KILL_AFTER_CALL="<op>:<text>" SIGKILLs the process right after a successful fs.promises.<op>
// (rm, chmod, link, rename…) whose path arguments match the regular expression <text>: a kill
// between two named steps. PB_KILL_AFTER_CALL_NTH=N: at the Nth such call, not the first.
const [killOp, killText] = (process.env.PB_KILL_AFTER_CALL ?? "").split(/:(.*)/s);
if (killOp && killText) {
  const original = fs.promises[killOp];
  const nth = Number(process.env.PB_KILL_AFTER_CALL_NTH ?? "1");
  let matched = 0;
  fs.promises[killOp] = async function killableCall(path, ...rest) {
    const result = await original.call(fs.promises, path, ...rest);
    // <text> is a regular expression over the call's path arguments (from and to, for rename)
    if (
      [path, ...rest].some((a) => typeof a === "string" && new RegExp(killText).test(a)) &&
      ++matched === nth
    )
      process.kill(process.pid, "SIGKILL");
    return result;
  };
  syncBuiltinESMExports();
}
