// Test preload (never part of the product): `node --import <this> dist/bin.cjs ...`.
// PB_FAIL_CALL="<op>:<code>:<text>" makes every fs.promises.<op> (lstat, rename, open…) whose path
// arguments match the regular expression <text> reject with a Node errno error <code> (EIO…),
// as a failing disk does, without calling it: the machine's error, met through the built CLI.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const [op, code, text] = (process.env.PB_FAIL_CALL ?? "").split(/:([A-Z]+):(.*)/s);
if (op && code && text) {
  const original = fs.promises[op];
  fs.promises[op] = async function failingCall(path, ...rest) {
    const hit = [path, ...rest].find((a) => typeof a === "string" && new RegExp(text).test(a));
    if (hit !== undefined)
      throw Object.assign(new Error(`${code}: i/o error, ${op} '${hit}'`), { code, syscall: op, path: hit });
    return original.call(fs.promises, path, ...rest);
  };
  syncBuiltinESMExports();
}
