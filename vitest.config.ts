import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts"],
    // End-to-end tests spawn the built CLI, GNU tar, age and an S3 server: give them room.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
