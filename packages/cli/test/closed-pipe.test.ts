import { describe, it, expect } from "vitest";
import { isClosedPipe } from "../src/host/closed-pipe.js";

describe("a closed pipe is our own output going away, nothing else", () => {
  it("an EPIPE from another pipe (a child process, a socket) while stdout is open is a failure, not a quiet exit 0", () => {
    const internal = Object.assign(new Error("write EPIPE"), { code: "EPIPE" });
    expect(process.stdout.destroyed).toBe(false);
    expect(isClosedPipe(internal)).toBe(false);
    expect(isClosedPipe(new Error("wrapped", { cause: internal }))).toBe(false);
  });
});
