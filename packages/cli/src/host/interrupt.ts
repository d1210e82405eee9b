import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

/**
 * Ctrl-C (SIGINT) or SIGTERM in the middle of a run that writes snapshots: the run stops at once,
 * as before (exit 130 for SIGINT, 143 for SIGTERM), but says so and leaves nothing behind: the
 * context locks this process holds, the staged `.partial` and `.tmp` files beside them, and the
 * manifest and checksum files written for an artifact that was never committed. A snapshot whose
 * artifact was already renamed into place (the commit point) is kept, and named.
 *
 * The clean-up is synchronous on purpose: nothing else of this process runs while it does, and
 * the context's lock (held until the last line) keeps every other run out of these folders.
 */

const scratchFolders = new Set<string>();

/** A temporary folder this run made: removed when the run ends, interrupted or not. */
export function registerScratch(dir: string): void {
  scratchFolders.add(dir);
}

export function removeScratch(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  scratchFolders.delete(dir);
}

const ARTIFACT = /^(.+)\.tar\.gz(\.age)?$/;

function ownLock(dir: string): boolean {
  try {
    const record = JSON.parse(readFileSync(join(dir, ".lock"), "utf8")) as { pid?: unknown };
    return record.pid === process.pid;
  } catch {
    return false;
  }
}

/** What a context folder held before this run: anything else there that is not committed is this run's. */
function namesIn(dir: string): Set<string> {
  try {
    return new Set(readdirSync(dir));
  } catch {
    return new Set();
  }
}

/** Clean what this process left in one context folder of the backup root; the ids it committed. */
function cleanContextFolder(dir: string, before: ReadonlySet<string>): string[] {
  const names = readdirSync(dir);
  const committed = new Set<string>();
  for (const name of names) {
    const m = ARTIFACT.exec(name);
    if (m) committed.add(m[1]!);
  }
  const kept: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const staged = name.startsWith(".") && (name.endsWith(".partial") || name.endsWith(".tmp"));
    // Sidecars are renamed into place before their artifact: without it they describe nothing.
    const sidecar = /^(.+?)\.(manifest\.json|tar\.gz(?:\.age)?\.sha256)$/.exec(name);
    const artifact = ARTIFACT.exec(name);
    if (staged) rmSync(path, { force: true });
    else if (sidecar && !before.has(name) && !committed.has(sidecar[1]!)) rmSync(path, { force: true });
    else if (artifact && !before.has(name)) kept.push(artifact[1]!);
  }
  rmSync(join(dir, ".lock"), { force: true });
  return kept;
}

/** The clean-up of the run in progress, once cleanUpOnInterrupt installed it. */
let cleanUpThisRun: (() => string[]) | null = null;

/**
 * Install the handlers for one run. `backupRoot` is where this run may hold context locks; null
 * for a command that holds none (ls, dump, diff: only their scratch folders are removed).
 */
export function cleanUpOnInterrupt(command: string, backupRoot: string | null): void {
  // One listing per context folder now (a few ms for hundreds of contexts): what was there before.
  const before = new Map<string, Set<string>>();
  if (backupRoot) for (const name of namesIn(backupRoot)) before.set(name, namesIn(join(backupRoot, name)));
  cleanUpThisRun = () => {
    const kept: string[] = [];
    try {
      if (backupRoot) {
        for (const entry of readdirSync(backupRoot, { withFileTypes: true })) {
          const dir = join(backupRoot, entry.name);
          if (entry.isDirectory() && ownLock(dir))
            kept.push(
              ...cleanContextFolder(dir, before.get(entry.name) ?? new Set()).map(
                (id) => `${entry.name}/${id}`,
              ),
            );
        }
      }
    } catch {
      // a backup root that is not there (yet): nothing of this run to clean
    }
    return kept;
  };
  exitOnInterrupt(command);
}

/** Work a signal must finish before the process exits: giving back the leases an s3:// root's run holds. */
const beforeExit = new Set<() => Promise<void>>();

/** Run `hook` (bounded: 10 s in all) when a signal stops the run; returns its removal. */
export function onInterrupt(hook: () => Promise<void>): () => void {
  beforeExit.add(hook);
  return () => beforeExit.delete(hook);
}

let signalled: string | null = null;

/**
 * Ctrl-C or SIGTERM stops the run: what cleanUpOnInterrupt installed is cleaned (synchronously),
 * then the onInterrupt hooks run (a lease in the bucket is given back rather than left to its
 * ttl), then the process exits 130 (SIGINT) or 143 (SIGTERM). Installed once per process.
 */
export function exitOnInterrupt(command: string): void {
  if (signalled !== null) {
    signalled = command;
    return;
  }
  signalled = command;
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\npaas-backup ${signalled}: interrupted: ${keptText(cleanUpUnfinishedRun())}\n`);
    const code = signal === "SIGTERM" ? 143 : 130;
    const hooks = [...beforeExit];
    if (hooks.length === 0) process.exit(code);
    const limit = new Promise((r) => setTimeout(r, 10_000).unref());
    void Promise.race([Promise.allSettled(hooks.map((h) => h())), limit]).then(() => process.exit(code));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
}

/**
 * A run that stops before it finished (a signal, or a command that can never complete): remove
 * what it left, as for Ctrl-C. Returns the snapshots it had already committed ("context/id").
 */
export function cleanUpUnfinishedRun(): string[] {
  const kept = cleanUpThisRun?.() ?? [];
  for (const dir of scratchFolders) rmSync(dir, { recursive: true, force: true });
  return kept;
}

/** What an interrupted run says it kept. */
export function keptText(kept: readonly string[]): string {
  return kept.length
    ? `the snapshots committed before the interruption are kept (${kept.join(", ")}); nothing else was kept`
    : "nothing was kept";
}
