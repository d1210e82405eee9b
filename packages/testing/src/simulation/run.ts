import {
  cronTick,
  damage,
  fleetStatus,
  maintenance,
  operatorDrill,
  operatorRestore,
  operatorRollback,
  operatorUnblock,
  sdkSnapshot,
  type Observation,
} from "./actors.js";
import { checkInvariants, observeTruth, type StepView, type Violation } from "./invariants.js";
import { World, type TraceLine } from "./world.js";

export interface SimulationOptions {
  seed: number;
  days: number;
  /** stop at the first step that breaks an invariant (the default): its trace is the replay */
  stopAtFirst?: boolean;
  /** check only these invariants (by name) */
  invariants?: readonly string[];
}

export interface SimulationFinding extends Violation {
  seed: number;
  step: number;
  /** true time of the step */
  at: string;
}

export interface SimulationResult {
  seed: number;
  days: number;
  steps: number;
  findings: SimulationFinding[];
  trace: TraceLine[];
  ms: number;
}

const HOUR = 3600_000;

/**
 * One seeded world, stepped until `days` of true time have passed. A step advances time (1 to 7
 * hours, rarely not at all: two runs in the same second), lets si append events, then draws what
 * happens from the seed: cron's tick, the day's maintenance, an SDK caller, the operator, a fault
 * of the world. After every step each invariant is checked against the bytes. Stepping coarsely
 * is sound for the schedule: tick decides from what is on disk and the time, never from how often
 * it ran.
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationResult> {
  const started = performance.now();
  const world = new World(options.seed);
  await world.setup();
  const end = world.start + options.days * 24 * HOUR;
  const findings: SimulationFinding[] = [];
  let lastMaintenanceDay = -1;
  let before = await observeTruth(world);
  while (world.trueTime < end) {
    world.step++;
    const p = world.prng;
    if (!p.chance(0.04)) world.advance(p.int(1, 7) * HOUR + p.int(0, 59) * 60_000);
    for (const c of world.contexts) if (p.chance(0.8)) await world.appendEvents(c);
    const observations: Observation[] = [];
    if (p.chance(0.1)) {
      const d = await damage(world);
      if (d) observations.push(d);
    }
    if (p.chance(0.85)) observations.push(await cronTick(world, world.drawFault(0.12)));
    const day = Math.floor((world.trueTime - world.start) / (24 * HOUR));
    if (day !== lastMaintenanceDay && p.chance(0.6)) {
      lastMaintenanceDay = day;
      observations.push(await maintenance(world, world.drawFault(0.15)));
    }
    if (p.chance(0.06)) observations.push(await sdkSnapshot(world, world.drawFault(0.15)));
    const operator = p.weighted({ none: 88, restore: 6, rollback: 2, unblock: 2, drill: 2 });
    if (operator === "restore") observations.push(await operatorRestore(world, world.drawFault(0.15)));
    else if (operator === "rollback") observations.push(await operatorRollback(world, world.drawFault(0.1)));
    else if (operator === "unblock") {
      const u = await operatorUnblock(world, world.drawFault(0.1));
      if (u) observations.push(u);
    } else if (operator === "drill") observations.push(await operatorDrill(world, world.drawFault(0.1)));
    if (observations.length === 0) continue;

    const after = await observeTruth(world);
    let status: StepView["status"];
    try {
      status = await fleetStatus(world);
    } catch (error) {
      status = { error };
    }
    const violations = await checkInvariants(
      { world, before, after, observations, status },
      options.invariants,
    );
    for (const v of violations) {
      findings.push({
        ...v,
        seed: options.seed,
        step: world.step,
        at: new Date(world.trueTime).toISOString(),
      });
      world.log(`VIOLATION ${v.invariant}: ${v.detail}`);
    }
    if (violations.length > 0 && options.stopAtFirst !== false) break;
    before = after;
  }
  return {
    seed: options.seed,
    days: options.days,
    steps: world.step,
    findings,
    trace: world.trace,
    ms: Math.round(performance.now() - started),
  };
}

/** The trace as text: one line a step's event, the replay command first. */
export function formatTrace(result: SimulationResult, lastSteps = Infinity): string {
  const first = result.findings[0];
  const from = first ? Math.max(0, first.step - lastSteps) : 0;
  const lines = result.trace
    .filter((t) => t.step >= from)
    .map((t) => `  #${t.step} ${t.at}${t.clock ? ` (clock ${t.clock})` : ""} ${t.text}`);
  return [`replay: pnpm sim --seed ${result.seed} --days ${result.days}`, ...lines].join("\n");
}
