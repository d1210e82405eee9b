import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import { resolve, normalize } from "node:path";
import { nodeFs } from "@paas-backup/core/node";
import { UsageError } from "@paas-backup/core/errors";
import { redactText } from "@paas-backup/core/redact";
import type { FileSystem } from "@paas-backup/core/fs";
import type { ObjectStorage } from "@paas-backup/core/repository";
import type { ParseError } from "jsonc-parser";
import type { Envelope } from "./envelope.js";
import type { Config } from "./config-schema.js";

/** Everything a command needs from the outside world, resolved once: the CLI is where env, clock and disk come in. */
export interface Runtime {
  /** the command's own name, as the envelope carries it: "snapshot", "drill status", "offsite push" */
  command: string;
  /** the envelope the command hands over (printEnvelope); the runner prints it once */
  envelope: Envelope | null;
  fs: FileSystem;
  env: NodeJS.ProcessEnv;
  clock: () => Date;
  json: boolean;
  stateRoot: string;
  /**
   * A folder. With an s3:// backup root it is this host's cache of that bucket
   * ($XDG_CACHE_HOME/paas-backup/<root id>) once the command has connected (run.ts), and `shared`
   * is the bucket itself.
   */
  backupRoot: string;
  /** the s3:// backup root as given (flags > env > config), before connecting; null for a folder */
  remoteRoot: RemoteRootSettings | null;
  /** the connected s3:// backup root (host/shared-root.ts); null for a folder */
  shared: SharedRoot | null;
  config: Config;
  configPath: string | null;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  stdinIsTTY: boolean;
  write(text: string): void;
  progress(text: string): void;
}

export type { Config } from "./config-schema.js";

/**
 * What Config.parse({}) gives (no config file), written out so a command run without a config
 * file does not load zod (about 95 modules, most of `list`'s start-up); a test holds it equal to
 * the schema's defaults.
 */
export const DEFAULT_CONFIG: Config = {
  recipients: [],
  include: [],
  secretAllow: [],
  secretAcknowledged: [],
  retention: {},
  mandatoryDrillContexts: ["internal-dogfood"],
  lockTimeoutSeconds: 30,
  offsite: { targets: [], concurrency: 2 },
};

export function expandHome(path: string, env: NodeJS.ProcessEnv): string {
  if (path === "~" || path.startsWith("~/")) return resolve(env.HOME ?? homedir(), path.slice(2));
  return resolve(path);
}

async function loadConfig(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<{ config: Config; path: string | null }> {
  const fromEnv = env.PAAS_BACKUP_CONFIG?.trim();
  const candidate = explicit ?? (fromEnv || undefined);
  const defaultPath = resolve(env.HOME ?? homedir(), ".config/paas-backup/config.json");
  const path = candidate ? expandHome(candidate, env) : existsSync(defaultPath) ? defaultPath : null;
  if (!path) return { config: structuredClone(DEFAULT_CONFIG), path: null };
  let raw: unknown;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") throw err; // named as an environment problem, with the owner
    throw new UsageError(
      "PAAS_BACKUP_CONFIG_INVALID",
      `config file ${path} cannot be read (${code ?? "error"})`,
      {
        path,
        remediation: "Check the path and its permissions, or point --config elsewhere.",
        stage: "config",
      },
    );
  }
  try {
    raw = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the bytes around the error, and a config file can hold a
    // credential pasted by mistake: name the line and column only.
    throw new UsageError(
      "PAAS_BACKUP_CONFIG_INVALID",
      `config file ${path} is not valid JSON: ${await jsonSyntaxErrorAt(text)}`,
      {
        path,
        remediation:
          "Fix the file at that line and column (see the README's Configuration section) or point --config elsewhere.",
        stage: "config",
      },
    );
  }
  const { parseConfig } = await import("./config-schema.js");
  return { config: parseConfig(raw, path), path };
}

/** Where strict JSON first goes wrong, as "line L, column C (what)", without quoting the text. */
export async function jsonSyntaxErrorAt(text: string): Promise<string> {
  const { parse: parseJsonc, printParseErrorCode } = await import("jsonc-parser");
  const errors: ParseError[] = [];
  parseJsonc(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  const offset = first ? first.offset : text.length;
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - (before.lastIndexOf("\n") + 1) + 1;
  return `line ${line}, column ${column}${first ? ` (${printParseErrorCode(first.error)})` : ""}`;
}

/**
 * The wall clock, or PAAS_BACKUP_NOW (an ISO time) plus the time elapsed since start: lets tests
 * and rehearsals run tick, prune and drill status "at" another time without touching the system clock.
 */
function clockFrom(env: NodeJS.ProcessEnv): () => Date {
  const fixed = env.PAAS_BACKUP_NOW?.trim();
  if (!fixed) return () => new Date();
  const base = Date.parse(fixed);
  if (Number.isNaN(base)) {
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      `PAAS_BACKUP_NOW=${JSON.stringify(fixed)} is not an ISO time`,
      { remediation: "Unset it, or give a time like 2026-11-24T10:00:00Z.", stage: "arguments" },
    );
  }
  const started = Date.now();
  return () => new Date(base + (Date.now() - started));
}

/**
 * An s3:// backup root (issue 22): one bucket (and prefix) that a fleet of hosts shares as its
 * repository. Nothing of it is kept on the host but a cache, `$XDG_CACHE_HOME/paas-backup/<root
 * id>` (0700), named by the repository identity stored in the bucket, and holding only what the
 * bucket can give again: that identity, the result of the bucket's probe for create-only writes
 * (so it is probed once, not per command), and the chain-check cache. Delete it and the next
 * command rebuilds it.
 */
export interface SharedRoot {
  url: string;
  /** the bucket at the root's prefix */
  storage: ObjectStorage;
  /** the repository identity stored in the bucket (also the offsite keys' root id) */
  id: string;
  cacheDir: string;
  /** this host's name in status objects and lease records */
  host: string;
  leaseTtlMs: number;
  deleteAfterMs: number;
  /** maintenance writes a checkpoint of a context's commit log once this many entries follow the last */
  logCheckpointEvery: number;
  staleAfterMs: number;
}

/** How to reach an s3:// backup root: its own endpoint, region and addressing, distinct from an offsite target's. */
export interface RemoteRootSettings {
  url: string;
  endpoint?: string;
  region?: string;
  pathStyle: boolean;
}

export interface GlobalFlags {
  stateRoot?: string;
  backupRoot?: string;
  rootEndpoint?: string;
  rootRegion?: string;
  rootPathStyle?: boolean;
  json?: boolean;
  config?: string;
}

export async function createRuntime(
  flags: GlobalFlags,
  env: NodeJS.ProcessEnv = process.env,
  command = "",
): Promise<Runtime> {
  const { config, path } = await loadConfig(flags.config, env);
  const home = env.HOME ?? homedir();
  const envRoot = env.SI_PAAS_STATE_ROOT?.trim();
  const stateRoot = flags.stateRoot
    ? expandHome(flags.stateRoot, env)
    : envRoot
      ? normalize(resolve(envRoot))
      : config.stateRoot
        ? expandHome(config.stateRoot, env)
        : resolve(home, ".si/paas");
  const envBackup = env.PAAS_BACKUP_ROOT?.trim();
  const givenRoot = flags.backupRoot ?? (envBackup || undefined) ?? config.backupRoot;
  // An s3:// root is a bucket, never a path to resolve: the command connects to it (run.ts).
  const remoteRoot = givenRoot?.startsWith("s3://")
    ? remoteRootSettings(givenRoot, flags, env, config)
    : null;
  const backupRoot = remoteRoot
    ? remoteRoot.url
    : flags.backupRoot
      ? expandHome(flags.backupRoot, env)
      : envBackup
        ? resolve(envBackup)
        : config.backupRoot
          ? expandHome(config.backupRoot, env)
          : resolve(home, ".si/paas-backups");
  const json = flags.json === true;
  return {
    command,
    envelope: null,
    fs: nodeFs,
    env,
    clock: clockFrom(env),
    json,
    stateRoot,
    backupRoot,
    remoteRoot,
    shared: null,
    config,
    configPath: path,
    stdoutIsTTY: process.stdout.isTTY === true,
    stderrIsTTY: process.stderr.isTTY === true,
    stdinIsTTY: process.stdin.isTTY === true,
    // Under --json stdout carries the one envelope and nothing else: stray text goes to stderr.
    // Everything printed passes the secret scanner: state quoted in a message or listing never shows a value.
    write: (text) => (json ? process.stderr : process.stdout).write(redactText(text)),
    progress: (text) => {
      if (process.stderr.isTTY) process.stderr.write(text);
    },
  };
}

/** An s3:// backup root's connection: each setting from its flag, else its variable, else the config file. */
function remoteRootSettings(
  url: string,
  flags: GlobalFlags,
  env: NodeJS.ProcessEnv,
  config: Config,
): RemoteRootSettings {
  const endpoint =
    flags.rootEndpoint ?? (env.PAAS_BACKUP_ROOT_ENDPOINT?.trim() || undefined) ?? config.rootEndpoint;
  const region = flags.rootRegion ?? (env.PAAS_BACKUP_ROOT_REGION?.trim() || undefined) ?? config.rootRegion;
  const envPathStyle = env.PAAS_BACKUP_ROOT_PATH_STYLE?.trim().toLowerCase();
  const pathStyle =
    flags.rootPathStyle === true ||
    (envPathStyle ? ["1", "true", "yes"].includes(envPathStyle) : config.rootPathStyle === true);
  return {
    url: url.replace(/\/+$/, ""),
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    pathStyle,
  };
}

/** --operator, else PAAS_BACKUP_OPERATOR, else git's user.email, else the OS user. */
export function resolveOperator(explicit: string | undefined, env: NodeJS.ProcessEnv): string {
  if (explicit?.trim()) return explicit.trim();
  if (env.PAAS_BACKUP_OPERATOR?.trim()) return env.PAAS_BACKUP_OPERATOR.trim();
  try {
    const email = execFileSync("git", ["config", "user.email"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    if (email) return email;
  } catch {
    // no git, or no user.email: fall through
  }
  try {
    return userInfo().username;
  } catch {
    return env.USER ?? "unknown";
  }
}
