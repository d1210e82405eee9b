import { describe } from "vitest";
import { simulateSeeds } from "./simulation-suite.js";

// Seeds 11-20 of the fleet simulation (the first half runs in simulation-1, on the other core).
describe("the fleet simulation, seeds 11-20 (issue 20 §1)", () => {
  simulateSeeds([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
});
