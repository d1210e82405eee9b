import { spawn, execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  readFileSync,
  readdirSync,
  statSync,
  lstatSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve, relative } from "node:path";
import { createHash } from "node:crypto";
import { nodeFs } from "@paas-backup/core/node";
import { createStateRoot, type ContextSpec, type StateRoot } from "@paas-backup/testing";

/** The `paas-backup` command as installed: bin.cjs sizes the threadpool, then runs main.js. */
export const CLI = resolve(import.meta.dirname, "../dist/bin.cjs");

/** The checkout's root: the pnpm workspace the built CLI resolves its packages in. */
const WORKSPACE = resolve(import.meta.dirname, "../../..");

/** True when every folder above `path` lets other users through (the x bit for "others"). */
function traversableByOthers(path: string): boolean {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dir === dirname(dir)) return true;
  }
}

/**
 * The built CLI at a path another user (`nobody`) can reach, for the tests that run it as that
 * user. A checkout may sit in a folder only its owner can enter (/root is 0700, and so is
 * `mktemp -d`); then the workspace is bind-mounted (read-only) below a fresh 0755 folder in the
 * temporary directory, so `nobody` runs the very same build. Needs root, as switching users does.
 * `release()` unmounts it.
 */
export function cliForOtherUsers(): { cli: string; release(): void } {
  if (traversableByOthers(CLI)) return { cli: CLI, release: () => {} };
  const dir = mkdtempSync(join(tmpdir(), "pb-cli-"));
  chmodSync(dir, 0o755);
  const mountPoint = join(dir, "workspace");
  mkdirSync(mountPoint);
  execFileSync("mount", ["--bind", WORKSPACE, mountPoint]);
  execFileSync("mount", ["-o", "remount,bind,ro", mountPoint]);
  return {
    cli: join(mountPoint, relative(WORKSPACE, CLI)),
    release: () => {
      execFileSync("umount", [mountPoint]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

/** Run the built CLI as an operator would: a child process, no TTY, a clean environment. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: options.env?.HOME ?? process.env.HOME ?? "/root",
        ...options.env,
      },
      cwd: options.cwd ?? tmpdir(),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.stdin.end(options.input ?? "");
    child.on("close", (code) => {
      let json: any = null;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = null;
      }
      resolvePromise({ code: code ?? -1, stdout, stderr, json });
    });
  });
}

export interface Sandbox {
  dir: string;
  stateRoot: string;
  backupRoot: string;
  state: StateRoot;
  /** global flags pointing the CLI at this sandbox, plaintext snapshots unless a test adds keys */
  flags: string[];
  cleanup(): void;
}

export async function makeSandbox(
  contexts: ContextSpec[] = [{ name: "internal-dogfood", eventBytes: 200_000, releases: 2 }],
): Promise<Sandbox> {
  const dir = mkdtempSync(join(tmpdir(), "pb-e2e-"));
  const state = await createStateRoot({ fs: nodeFs, root: join(dir, "state"), contexts });
  const backupRoot = join(dir, "backups");
  return {
    dir,
    stateRoot: state.stateRoot,
    backupRoot,
    state,
    flags: ["--state-root", state.stateRoot, "--backup-root", backupRoot],
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Make a read-only offsite folder tree (0500 folders) removable again, for a test's cleanup. */
export function openUp(dir: string): void {
  if (!existsSync(dir)) return;
  chmodSync(dir, 0o700);
  for (const n of readdirSync(dir)) if (statSync(join(dir, n)).isDirectory()) openUp(join(dir, n));
}

/** path -> sha256 of every regular file below `root` */
export function treeHashes(root: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const abs = join(dir, name);
      const rel = relative(root, abs);
      if (skip(rel)) continue;
      const st = lstatSync(abs);
      if (st.isDirectory()) walk(abs);
      else if (st.isFile()) out.set(rel, createHash("sha256").update(readFileSync(abs)).digest("hex"));
    }
  };
  walk(root);
  return out;
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

export function sh(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

/** The files a snapshot must hold: the context minus what policy excludes (as the planted fixtures lay them out). */
export function expectedBackedUp(contextDir: string, include: string[] = []): Map<string, string> {
  return treeHashes(contextDir, (rel) => {
    const top = rel.split("/")[0]!;
    if (
      top === "vault" ||
      top === "addons" ||
      rel === "alerts/telegram.json" ||
      rel.endsWith(".secret") ||
      rel.endsWith(".env")
    )
      return true;
    if ((top === "releases" || top === "cache") && !include.includes(top)) return true;
    if (top === "cache" && (rel.endsWith(".key") || rel.includes("secrets-export"))) return true;
    return rel === "paas-backup.blocked.json";
  });
}

/**
 * Wait until a snapshot run is well into its archive: its staged artifact
 * (".<name>.tar.gz.<nonce>.partial" in `contextBackupDir`) has bytes. True then, false if the run
 * ended first. Tests that kill a run mid-archive wait for this, not a fixed delay, which a fast
 * snapshot outran.
 */
export async function untilArchiving(
  child: { exitCode: number | null },
  contextBackupDir: string,
): Promise<boolean> {
  const archiving = () =>
    existsSync(contextBackupDir) &&
    readdirSync(contextBackupDir).some(
      (n) =>
        /^\..*\.tar\.gz\..*\.partial$/.test(n) &&
        (statSync(join(contextBackupDir, n), { throwIfNoEntry: false })?.size ?? 0) > 0,
    );
  while (child.exitCode === null && !archiving()) await new Promise((r) => setTimeout(r, 2));
  return archiving();
}
