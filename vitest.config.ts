import { defineConfig } from "vitest/config";
import { fileURLToPath } from "node:url";

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the sources, so core's classes are one module whichever package imports them.
    // The end-to-end tests still run the built CLI (dist) as a child process.
    alias: [
      { find: /^@paas-backup\/core\/node$/, replacement: src("./packages/core/src/fs/node-fs.ts") },
      { find: /^@paas-backup\/core$/, replacement: src("./packages/core/src/index.ts") },
      { find: /^@paas-backup\/s3$/, replacement: src("./packages/s3/src/index.ts") },
      { find: /^@paas-backup\/testing$/, replacement: src("./packages/testing/src/index.ts") },
      {
        find: /^@paas-backup\/testing\/storage-contract$/,
        replacement: src("./packages/testing/src/storage-contract.ts"),
      },
    ],
  },
  test: {
    include: ["packages/*/test/**/*.test.ts"],
    // End-to-end tests spawn the built CLI, GNU tar, age and an S3 server: give them room.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    reporters: ["default", "./scripts/failures-last-reporter.mjs"],
  },
});
