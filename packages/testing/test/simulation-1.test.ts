import { describe, it, expect } from "vitest";
import { formatTrace, runSimulation } from "../src/index.js";
import { simulateSeeds } from "./simulation-suite.js";

// Seeds 1-10 of the fleet simulation (the other half runs in simulation-2, on the other core).
describe("the fleet simulation, seeds 1-10 (issue 20 §1)", () => {
  it("a seed replays exactly: the same trace twice", async () => {
    const a = await runSimulation({ seed: 7, days: 4, stopAtFirst: false });
    const b = await runSimulation({ seed: 7, days: 4, stopAtFirst: false });
    expect(a.steps).toBeGreaterThan(10);
    expect(formatTrace(b)).toBe(formatTrace(a));
  });
  simulateSeeds([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});
