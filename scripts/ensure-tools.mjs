// The end-to-end tests call real tools (GNU tar, sha256sum, rsync, age, promtool to check the metrics file). On a fresh Debian machine
// where we are root, install the missing ones; anywhere else, say exactly what to install.
import { execSync, spawnSync } from "node:child_process";

const needed = {
  tar: "tar",
  sha256sum: "coreutils",
  rsync: "rsync",
  age: "age",
  "age-keygen": "age",
  promtool: "prometheus",
  script: "bsdutils",
  runuser: "util-linux",
  mount: "mount",
  zsh: "zsh",
};
const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
const missing = Object.keys(needed).filter((cmd) => !has(cmd));
if (missing.length === 0) process.exit(0);
const packages = [...new Set(missing.map((cmd) => needed[cmd]))];
const root = typeof process.getuid === "function" && process.getuid() === 0;
if (root && has("apt-get")) {
  console.error(`installing ${packages.join(" ")} for the end-to-end tests (apt-get)`);
  execSync(
    `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${packages.join(" ")} >/dev/null`,
    { stdio: "inherit" },
  );
  process.exit(0);
}
console.error(
  `the tests need ${missing.join(", ")}: install ${packages.join(" ")} (e.g. sudo apt-get install ${packages.join(" ")}) and run again`,
);
process.exit(1);
