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
  // schedule install's units are checked by systemd's own verifier (issue 25 §4)
  "systemd-analyze": "systemd",
  // a throwaway Ceph cluster serving S3 (RGW) on 127.0.0.1: @paas-backup/testing's startRgw
  "ceph-mon": "ceph-mon",
  "ceph-osd": "ceph-osd",
  radosgw: "radosgw",
  "radosgw-admin": "ceph-common",
  // the governance report's HTML is read by a real browser (issue 24)
  chromium: "chromium",
  // signatures of snapshots and records are checked by OpenSSH's own verifier (issue 24 §2)
  "ssh-keygen": "openssh-client",
};
const root = typeof process.getuid === "function" && process.getuid() === 0;
// The suite needs root for three things, and says so once before running rather than failing a
// wall of assertions (issue 25 §1): tmpfs mounts (a full disk), switching to the `nobody` user
// (permission errors; the checkout is bind-mounted where nobody can reach it when its folder is
// private), and apt-get for missing tools.
if (!root) {
  console.error(
    [
      "paas-backup's test command needs root, and stops here before running anything:",
      "  - the full-disk tests mount a small tmpfs (mount needs root);",
      "  - the permission tests run the CLI as the `nobody` user (runuser needs root), from a",
      "    read-only bind mount of this checkout when its folder is private;",
      "  - missing tools (age, promtool, rsync, Ceph RGW, ...) are installed with apt-get.",
      "Run it as root (e.g. `sudo npx --yes pnpm@10 test`, or a root shell in a container or VM).",
      "Without root, `npx vitest run packages/core` runs core's unit tests, which need none of this.",
    ].join("\n"),
  );
  process.exit(1);
}
const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
const missing = Object.keys(needed).filter((cmd) => !has(cmd));
if (missing.length === 0) process.exit(0);
const packages = [...new Set(missing.map((cmd) => needed[cmd]))];
if (has("apt-get")) {
  console.error(`installing ${packages.join(" ")} for the end-to-end tests (apt-get)`);
  execSync(
    `apt-get -o DPkg::Lock::Timeout=900 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq ${packages.join(" ")} >/dev/null`,
    { stdio: "inherit" },
  );
  process.exit(0);
}
console.error(
  `the tests need ${missing.join(", ")}: install ${packages.join(" ")} (e.g. sudo apt-get install ${packages.join(" ")}) and run again`,
);
process.exit(1);
