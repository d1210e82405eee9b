import { beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryStorage } from "@paas-backup/testing";
import { describeStorageContract } from "@paas-backup/testing/storage-contract";
import { nodeFs } from "@paas-backup/core/node";
import { LocalStorage, backupRootStorage } from "@paas-backup/core/repository";

/**
 * One contract, every driver (restic's backend suite): the local driver as backup root and as
 * read-only offsite folder on a real disk, and the memory driver. The S3 driver runs the same
 * suite in @paas-backup/s3's own tests, against a real S3 server.
 */
let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "pb-conformance-"));
});
afterAll(() => {
  // The offsite driver leaves its folders read-only (0500): open them so a non-root run can clean up.
  execFileSync("chmod", ["-R", "u+rwx", work]);
  rmSync(work, { recursive: true, force: true });
});

let n = 0;
describeStorageContract("local (backup root)", async () =>
  backupRootStorage(nodeFs, join(work, `root-${++n}`)),
);
describeStorageContract(
  "local (offsite folder, read-only copies)",
  async () => new LocalStorage(nodeFs, join(work, `offsite-${++n}`)),
);
describeStorageContract("memory", async () => new MemoryStorage(`memory://conformance-${++n}`));
