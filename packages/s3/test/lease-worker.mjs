// One "host" of the fleet tests, in its own process: takes a lease in a real bucket, commits
// through it, and reports each step as a JSON line on stdout. Runs the BUILT packages (dist).
// argv[2]: JSON {endpoint, bucket, prefix, name, host, ttlMs, commits, holdMs, rounds, uploadBytes}
// Credentials come from the AWS_* environment, as in the CLI.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { acquireLease, probeConditionalWrites } from "@paas-backup/core/repository";
import { S3Storage } from "@paas-backup/s3";

const o = JSON.parse(process.argv[2]);
const say = (event) => process.stdout.write(`${JSON.stringify({ host: o.host, ...event })}\n`);
const storage = new S3Storage({
  bucket: o.bucket,
  prefix: o.prefix,
  url: `s3://${o.bucket}/${o.prefix}`,
  endpoint: o.endpoint,
  pathStyle: true,
  partSize: 5 * 1024 * 1024,
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

try {
  if (o.probe) {
    await probeConditionalWrites(storage);
    say({ event: "probed" });
  }
  for (let round = 0; round < (o.rounds ?? 1); round++) {
    let lease;
    for (;;) {
      try {
        lease = await acquireLease({
          storage,
          name: o.name,
          holder: { host: o.host, pid: process.pid, command: "lease-worker" },
          ttlMs: o.ttlMs,
        });
        break;
      } catch (err) {
        if (err.code !== "PAAS_BACKUP_LOCKED" || !o.waitForLease) throw err;
        await sleep(50 + Math.random() * 150);
      }
    }
    say({ event: "acquired", epoch: lease.epoch, tookOver: lease.tookOver });
    lease.keepAlive();
    if (o.uploadBytes) {
      // a large artifact streamed in as a multipart upload: the test kills us in the middle
      const staged = await storage.stage(`${o.name}/big-${lease.epoch}.bin`);
      say({ event: "uploading" });
      const chunk = Buffer.alloc(1024 * 1024, 7);
      await pipeline(
        Readable.from(
          (async function* () {
            for (let i = 0; i < o.uploadBytes / chunk.length; i++) {
              yield chunk;
              await sleep(20);
            }
          })(),
        ),
        staged.stream,
      );
      await staged.commit();
    }
    if (o.holdMs) {
      say({ event: "holding" });
      await sleep(o.holdMs);
    }
    for (let i = 0; i < (o.commits ?? 0); i++) {
      const e = await lease.commit({ host: o.host, round, i });
      say({ event: "committed", seq: e.seq, epoch: e.epoch });
    }
    await lease.release();
    say({ event: "released", epoch: lease.epoch });
  }
  process.exit(0);
} catch (err) {
  say({ event: "error", code: err.code ?? null, message: String(err.message).split("\n")[0] });
  process.exit(err.exitCode ?? 1);
}
