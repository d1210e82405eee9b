import { posix } from "node:path";
import { contextStatus, runDrill, fleetContexts, type ContextStatus } from "@paas-backup/core/governance";
import { createSnapshot } from "@paas-backup/core/snapshot";
import { backupRootStorage, openRepository } from "@paas-backup/core/repository";
import { pruneSnapshots } from "@paas-backup/core/retention";
import { pushOffsite, offsiteAfterTick } from "@paas-backup/core/offsite";
import {
  restoreSnapshot,
  rollbackRestore,
  unblockContext,
  type RestoreResult,
} from "@paas-backup/core/restore";
import { runTick, type TickResult } from "@paas-backup/core/tick";
import { withContextLock, type LockOwner } from "@paas-backup/core/context";
import { readBlock } from "@paas-backup/core/records";
import type { FileSystem } from "@paas-backup/core/fs";
import {
  BACKUP_ROOT,
  ELSEWHERE,
  KEEP_TAGS,
  POLICY_RETENTION,
  STATE_ROOT,
  World,
  describeRun,
  type ProcessFault,
  type ProcessRun,
} from "./world.js";

/**
 * The actors of the simulation, each what an operator's host really runs: cron's tick (with the
 * offsite target configured, as the CLI's tick), the daily maintenance, an SDK caller, an operator
 * at the console, and si appending events. Each returns what it observed for the invariants.
 */

export type Observation =
  | { actor: "tick"; run: ProcessRun<TickResult> }
  | { actor: "maintenance"; runs: ProcessRun<unknown>[] }
  | { actor: "sdk-snapshot"; context: string; run: ProcessRun<unknown> }
  | {
      actor: "restore";
      context: string;
      selector: string;
      mode: "snapshot" | "exact" | "path";
      run: ProcessRun<RestoreResult>;
    }
  | { actor: "rollback" | "unblock" | "drill"; context: string; run: ProcessRun<unknown> }
  | { actor: "damage"; context: string | null; what: string };

const LOCK_TIMEOUT_MS = 0;

function lock<T>(world: World, fs: FileSystem, owner: LockOwner, context: string, work: () => Promise<T>) {
  return withContextLock(
    { fs, backupRoot: BACKUP_ROOT, context, owner, clock: world.clock, timeoutMs: LOCK_TIMEOUT_MS },
    work,
  );
}

/** cron's `paas-backup tick --all-contexts` with the offsite target configured (as the CLI runs it) */
export async function cronTick(world: World, fault: ProcessFault): Promise<Observation> {
  const run = await world.run("tick --all-contexts", fault, (fs, owner) =>
    runTick({
      fs,
      stateRoot: STATE_ROOT,
      backupRoot: BACKUP_ROOT,
      allContexts: true,
      clock: world.clock,
      owner,
      lockTimeoutMs: LOCK_TIMEOUT_MS,
      insecurePlaintext: true,
      retention: POLICY_RETENTION,
      keepTags: KEEP_TAGS,
      afterEach: (context) =>
        offsiteAfterTick({
          fs,
          backupRoot: BACKUP_ROOT,
          context,
          targets: [world.target],
          clock: world.clock,
          // the push locks the context as this simulated process, which dies with a crash
          owner,
          lockTimeoutMs: LOCK_TIMEOUT_MS,
        }),
    }),
  );
  const summary = run.result
    ? `exit ${run.result.exitCode}: ${run.result.outcomes
        .map(
          (o) =>
            `${o.context} ${o.ok ? o.action : `FAILED ${o.error?.code}`}${o.snapshot ? ` ${o.snapshot.id}` : ""}${o.pruned.length ? ` pruned ${o.pruned.length}` : ""}`,
        )
        .join(", ")}`
    : "";
  world.log(describeRun(run, summary));
  return { actor: "tick", run };
}

/** the daily maintenance: `prune` with the policy's numbers and `offsite push`, per context */
export async function maintenance(world: World, fault: ProcessFault): Promise<Observation> {
  const runs: ProcessRun<unknown>[] = [];
  for (const context of world.contexts) {
    const prune = await world.run(
      `prune --context ${context} --keep-hourly 0 --keep-daily 7 --keep-weekly 4 --keep-monthly 3`,
      world.prng.chance(0.5) ? fault : null,
      (fs, owner) =>
        lock(world, fs, owner, context, () =>
          pruneSnapshots({
            fs,
            backupRoot: BACKUP_ROOT,
            context,
            policy: POLICY_RETENTION,
            keepTags: KEEP_TAGS,
            clock: world.clock,
          }),
        ),
    );
    world.log(
      describeRun(
        prune,
        prune.result
          ? `removed ${(prune.result as { removed: string[] }).removed.join(" ") || "nothing"}`
          : "",
      ),
    );
    runs.push(prune);
    const push = await world.run(`offsite push --context ${context}`, null, (fs, owner) =>
      lock(world, fs, owner, context, () =>
        pushOffsite({ fs, backupRoot: BACKUP_ROOT, context, target: world.target, clock: world.clock }),
      ),
    );
    world.log(describeRun(push));
    runs.push(push);
  }
  return { actor: "maintenance", runs };
}

/** an SDK caller taking its own snapshot under the context's lock */
export async function sdkSnapshot(world: World, fault: ProcessFault): Promise<Observation> {
  const context = world.prng.pick(world.contexts);
  const kind = world.prng.pick(["full", "incremental"] as const);
  // an operator's "before the upgrade" snapshot now and then, which keepTags keeps beyond the slots
  const tags = world.prng.chance(0.2) ? [...KEEP_TAGS] : [];
  const run = await world.run(
    `sdk createSnapshot ${context} ${kind}${tags.length ? ` --tag ${tags[0]}` : ""}`,
    fault,
    (fs, owner) =>
      lock(world, fs, owner, context, () =>
        createSnapshot({
          fs,
          stateRoot: STATE_ROOT,
          backupRoot: BACKUP_ROOT,
          context,
          clock: world.clock,
          kind,
          tags,
          insecurePlaintext: true,
        }),
      ),
  );
  world.log(describeRun(run, run.result ? (run.result as { id: string }).id : ""));
  return { actor: "sdk-snapshot", context, run };
}

/** the operator restores: latest, an older id, or one file (--path config.json); sometimes --exact */
export async function operatorRestore(world: World, fault: ProcessFault): Promise<Observation> {
  const context = world.prng.pick(world.contexts);
  const snaps = await openRepository(backupRootStorage(world.mem, BACKUP_ROOT))
    .snapshots(context)
    .catch(() => []);
  const how = world.prng.weighted({ latest: 3, older: 2, path: 2 });
  const selector = how === "older" && snaps.length > 1 ? world.prng.pick(snaps.slice(0, -1)).id : "latest";
  const mode: "snapshot" | "exact" | "path" =
    how === "path" ? "path" : world.prng.chance(0.25) ? "exact" : "snapshot";
  const label = `restore --context ${context} --snapshot ${selector}${mode === "exact" ? " --exact" : mode === "path" ? " --path config.json" : ""}`;
  const run = await world.run(label, fault, (fs, owner) =>
    lock(world, fs, owner, context, () =>
      restoreSnapshot({
        fs,
        stateRoot: STATE_ROOT,
        backupRoot: BACKUP_ROOT,
        context,
        snapshot: selector,
        ticket: `INC-${world.step}`,
        operator: "sim-operator",
        clock: world.clock,
        ...(mode === "exact" ? { exact: true } : {}),
        ...(mode === "path" ? { paths: ["config.json"] } : {}),
      }),
    ),
  );
  world.log(describeRun(run, run.result ? `${run.result.outcome} from ${run.result.snapshot.id}` : ""));
  return { actor: "restore", context, selector, mode, run };
}

export async function operatorRollback(world: World, fault: ProcessFault): Promise<Observation> {
  const context = world.prng.pick(world.contexts);
  const run = await world.run(`rollback --context ${context}`, fault, (fs, owner) =>
    lock(world, fs, owner, context, () =>
      rollbackRestore({
        fs,
        stateRoot: STATE_ROOT,
        backupRoot: BACKUP_ROOT,
        context,
        ticket: `INC-${world.step}`,
        operator: "sim-operator",
        clock: world.clock,
      }),
    ),
  );
  world.log(describeRun(run));
  return { actor: "rollback", context, run };
}

export async function operatorUnblock(world: World, fault: ProcessFault): Promise<Observation | null> {
  const blocked: string[] = [];
  for (const c of world.contexts)
    if (await readBlock(world.mem, STATE_ROOT, c).catch(() => null)) blocked.push(c);
  if (blocked.length === 0) return null;
  const context = world.prng.pick(blocked);
  const run = await world.run(`unblock --context ${context}`, fault, (fs, owner) =>
    lock(world, fs, owner, context, () =>
      unblockContext({
        fs,
        stateRoot: STATE_ROOT,
        backupRoot: BACKUP_ROOT,
        context,
        ticket: `INC-${world.step}`,
        operator: "sim-operator",
        clock: world.clock,
      }),
    ),
  );
  world.log(describeRun(run));
  return { actor: "unblock", context, run };
}

export async function operatorDrill(world: World, fault: ProcessFault): Promise<Observation> {
  const context = world.prng.pick(world.contexts);
  const run = await world.run(`drill --context ${context}`, fault, (fs, owner) =>
    lock(world, fs, owner, context, () =>
      runDrill({
        fs,
        backupRoot: BACKUP_ROOT,
        context,
        scratchParent: "/tmp",
        clock: world.clock,
        operator: "sim-operator",
      }),
    ),
  );
  world.log(describeRun(run, run.result ? ((run.result as { outcome?: string }).outcome ?? "") : ""));
  return { actor: "drill", context, run };
}

/** `paas-backup status` as the CLI runs it: every context of the state root and of the backup root */
export async function fleetStatus(world: World): Promise<ContextStatus[]> {
  const out: ContextStatus[] = [];
  for (const context of await fleetContexts(world.mem, STATE_ROOT, BACKUP_ROOT))
    out.push(
      await contextStatus({
        fs: world.mem,
        backupRoot: BACKUP_ROOT,
        stateRoot: STATE_ROOT,
        context,
        now: world.clock(),
        mandatoryDrills: [],
        targets: [world.target],
      }),
    );
  return out;
}

/** The faults of the world that are not a process's: bit rot, a lost file, a clock, a folder. */
export async function damage(world: World): Promise<Observation | null> {
  const kind = world.prng.weighted({
    flip: 3,
    "lose-sha256": 2,
    "clock-forward": 1,
    "clock-back": 1,
    "clock-correct": 2,
    vanish: 1,
    symlink: 1,
    repair: 3,
  });
  const context = world.prng.pick(world.contexts);
  const dir = posix.join(BACKUP_ROOT, context);
  const artifacts = (await world.mem.readdir(dir).catch(() => []))
    .filter((e) => e.kind === "file" && /\.tar\.gz(\.age)?$/.test(e.name))
    .map((e) => e.name)
    .sort();
  const live = world.contextDir(context);
  const liveKind = await world.mem
    .lstat(live)
    .then((s) => s.kind)
    .catch(() => "missing" as const);
  let what: string;
  switch (kind) {
    case "flip": {
      if (artifacts.length === 0) return null;
      // the newest full half the time: the one status and tick lean on
      const name = world.prng.chance(0.5) ? artifacts[artifacts.length - 1]! : world.prng.pick(artifacts);
      const path = posix.join(dir, name);
      const size = (await world.mem.lstat(path)).size;
      const offset = world.prng.int(0, size - 1);
      world.mem.flipByte(path, offset, 1 << world.prng.int(0, 7));
      what = `bit rot: one byte of ${context}/${name} flipped at ${offset} (size and mtime kept)`;
      break;
    }
    case "lose-sha256": {
      if (artifacts.length === 0) return null;
      const name = world.prng.chance(0.5) ? artifacts[artifacts.length - 1]! : world.prng.pick(artifacts);
      await world.mem.rm(posix.join(dir, `${name}.sha256`), { force: true });
      what = `lost ${context}/${name}.sha256`;
      break;
    }
    case "clock-forward":
      world.setClockOffset(world.prng.int(1, 4) * 30 * 86_400_000 + world.prng.int(0, 23) * 3600_000);
      what = `clock jumps forward to ${world.clock().toISOString()}`;
      break;
    case "clock-back":
      world.setClockOffset(-(world.prng.int(1, 4) * 30 * 86_400_000 + world.prng.int(0, 23) * 3600_000));
      what = `clock jumps back to ${world.clock().toISOString()}`;
      break;
    case "clock-correct":
      if (world.clockOffset === 0) return null;
      world.setClockOffset(0);
      what = `clock corrected to ${world.clock().toISOString()}`;
      break;
    case "vanish": {
      // one displacement at a time: the world tracks a single moved folder per context (a second
      // one, of a context a restore recreated meanwhile, would lose track of the first and its vault)
      if (liveKind !== "directory" || world.movedAway.has(context)) return null;
      const away = `/lost/${context}-${world.step}`;
      await world.mem.mkdir("/lost", { recursive: true });
      await world.mem.rename(live, away);
      world.movedAway.set(context, away);
      what = `context folder ${live} vanished`;
      break;
    }
    case "symlink": {
      if (liveKind !== "directory" || world.movedAway.has(context)) return null;
      const away = posix.join(ELSEWHERE, `${context}-${world.step}`);
      await world.mem.mkdir(ELSEWHERE, { recursive: true });
      await world.mem.rename(live, away);
      world.mem.symlink(away, live);
      world.movedAway.set(context, away);
      what = `context folder ${live} became a symbolic link to ${away}`;
      break;
    }
    case "repair": {
      // the operator puts a moved folder back (the link replaced by the folder itself)
      const away = world.movedAway.get(context);
      if (!away || liveKind === "directory") return null;
      if (liveKind === "symlink") await world.mem.rm(live);
      else if (liveKind !== "missing") return null;
      await world.mem.rename(away, live);
      world.movedAway.delete(context);
      what = `operator put the folder ${live} back in place`;
      break;
    }
  }
  world.log(`fault: ${what}`);
  return { actor: "damage", context: kind.startsWith("clock") ? null : context, what };
}
