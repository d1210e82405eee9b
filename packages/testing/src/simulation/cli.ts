/**
 * `pnpm sim`: the fleet simulation from the command line.
 *   pnpm sim --seeds 500 --days 90     the long search: seeds 1..500
 *   pnpm sim --seed 17 --days 30       replay one seed, printing its whole trace
 *   --from N                           the first seed of a search (default 1)
 *   --all                              keep going after a seed's first finding
 *   --invariants a,b                   check only these invariants (by function name)
 * Exits 1 when any seed breaks an invariant, after naming each one with its replay command.
 */
import { formatTrace, runSimulation, type SimulationResult } from "./run.js";

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function count(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`sim: ${name} needs a whole number, got ${value}\n`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const days = count(flag(args, "--days"), "--days", 30);
  const one = flag(args, "--seed");
  const all = args.includes("--all");
  const only = flag(args, "--invariants")?.split(",");
  const seeds =
    one !== undefined
      ? [count(one, "--seed", 1)]
      : Array.from(
          { length: count(flag(args, "--seeds"), "--seeds", 20) },
          (_, i) => i + count(flag(args, "--from"), "--from", 1),
        );
  const failed: SimulationResult[] = [];
  const started = performance.now();
  let steps = 0;
  for (const seed of seeds) {
    const r = await runSimulation({ seed, days, stopAtFirst: !all, ...(only ? { invariants: only } : {}) });
    steps += r.steps;
    if (one !== undefined) process.stdout.write(`${formatTrace(r)}\n`);
    if (r.findings.length > 0) {
      failed.push(r);
      for (const f of r.findings)
        process.stdout.write(`seed ${seed} step ${f.step} (${f.at}): ${f.invariant}: ${f.detail}\n`);
      if (one === undefined) process.stdout.write(`${formatTrace(r, 8)}\n`);
    } else if (one === undefined && seeds.length <= 50)
      process.stdout.write(`seed ${seed}: ok (${r.steps} steps, ${r.ms} ms)\n`);
  }
  // Findings by kind (ids, numbers and context names left out): which seed finds each first.
  const kinds = new Map<string, { first: number; seeds: Set<number> }>();
  for (const r of failed)
    for (const f of r.findings) {
      const kind = `${f.invariant}: ${f.detail
        .replace(/\b\d{8}T\d{6}Z(-\d+)?\b/g, "<id>")
        .replace(/\b(alpha|beta|gamma)\b/g, "<ctx>")
        .replace(/\d+/g, "N")}`;
      const k = kinds.get(kind) ?? { first: r.seed, seeds: new Set<number>() };
      k.seeds.add(r.seed);
      kinds.set(kind, k);
    }
  if (kinds.size > 0 && one === undefined) {
    process.stdout.write("findings by kind (first seed, seeds):\n");
    for (const [kind, k] of [...kinds].sort((a, b) => a[1].first - b[1].first))
      process.stdout.write(`  ${k.first} (${k.seeds.size}) ${kind.slice(0, 220)}\n`);
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  process.stdout.write(
    `${seeds.length} seed(s) × ${days} days, ${steps} steps in ${secs} s: ${failed.length ? `${failed.length} seed(s) broke an invariant (${failed.map((f) => f.seed).join(", ")})` : "every invariant held"}\n`,
  );
  process.exitCode = failed.length ? 1 : 0;
}

await main();
