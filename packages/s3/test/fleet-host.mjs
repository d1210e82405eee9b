// One host of a fleet sharing one bucket as its repository, in its own process (the built
// packages): "tick" snapshots each of its contexts under that context's lease and commits the
// snapshot through the lease's fenced log; "prune" takes the maintenance lease and prunes every
// context under its lease. Prints one JSON line per context and a summary with the S3 requests
// it sent (by operation), its time and its peak RSS.
// argv[2]: JSON {endpoint, bucket, prefix, host, role, stateRoot, scratch, contexts, ticks, hourMs0, ttlMs, policy}
import { S3Client } from "@aws-sdk/client-s3";
import {
  acquireLease,
  listSnapshotsIn,
  probeConditionalWrites,
  writeHostStatus,
} from "@paas-backup/core/repository";
import { createSnapshot } from "@paas-backup/core";
import { hideMarked, listMarks, pruneShared } from "@paas-backup/core/retention";
import { nodeFs } from "@paas-backup/core/node";
import { S3Storage } from "@paas-backup/s3";

const o = JSON.parse(process.argv[2]);
const started = Date.now();
const requests = {};
const client = new S3Client({
  endpoint: o.endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  requestChecksumCalculation: "WHEN_REQUIRED",
  responseChecksumValidation: "WHEN_REQUIRED",
});
client.middlewareStack.add(
  (next, context) => async (args) => {
    requests[context.commandName] = (requests[context.commandName] ?? 0) + 1;
    return next(args);
  },
  { step: "initialize", name: "countRequests" },
);
const storage = new S3Storage({
  bucket: o.bucket,
  prefix: o.prefix,
  url: `s3://${o.bucket}/${o.prefix}`,
  client,
});
const holder = { host: o.host, pid: process.pid, command: o.role };
const say = (e) => process.stdout.write(`${JSON.stringify({ host: o.host, ...e })}\n`);
const hour = 3_600_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `patience`: how many times to wait out another holder (a pruner holds a context briefly) */
async function underLease(name, work, patience = 0) {
  let lease;
  for (let attempt = 0; ; attempt++) {
    try {
      lease = await acquireLease({ storage, name, holder, ttlMs: o.ttlMs });
      break;
    } catch (err) {
      if (err.code !== "PAAS_BACKUP_LOCKED" || attempt >= patience) throw err;
      await sleep(100 + Math.random() * 200);
    }
  }
  lease.keepAlive();
  try {
    return await work(lease);
  } finally {
    await lease.release();
  }
}

let failed = 0;
try {
  await probeConditionalWrites(storage);
  if (o.role === "tick") {
    const status = new Map(
      o.contexts.map((context) => [context, { context, ok: true, lastSnapshot: null, error: null }]),
    );
    for (let tick = o.firstTick ?? 0; tick < (o.firstTick ?? 0) + o.ticks; tick++) {
      // simulated hours: tick N happens N hours after hourMs0, so ids and retention behave as in a day
      const clock = () => new Date(o.hourMs0 + tick * hour + ((Date.now() - started) % 1000));
      for (const context of o.contexts) {
        try {
          const snap = await underLease(
            `context/${context}`,
            async (lease) => {
              // snapshots marked for deletion are not listed: never a new incremental's parent
              const marked = new Set((await listMarks(storage, context)).keys());
              const s = await createSnapshot({
                fs: nodeFs,
                stateRoot: o.stateRoot,
                backupRoot: o.scratch,
                repository: hideMarked(storage, context, marked),
                context,
                clock,
                kind: tick % 2 === 0 ? "full" : "incremental",
                insecurePlaintext: true,
              });
              await lease.commit({ snapshot: s.id, sha256: s.sha256, kind: s.kind, host: o.host });
              return s;
            },
            50,
          );
          say({ event: "snapshot", context, tick, id: snap.id, kind: snap.kind });
          status.set(context, {
            context,
            ok: true,
            lastSnapshot: { id: snap.id, kind: snap.kind },
            error: null,
          });
        } catch (err) {
          failed++;
          status.set(context, {
            ...status.get(context),
            ok: false,
            error: { code: err.code ?? null, message: String(err.message).split("\n")[0] },
          });
          say({
            event: "error",
            context,
            tick,
            code: err.code ?? null,
            message: String(err.message).split("\n")[0],
          });
        }
      }
      // the fleet view: this host's contexts, readable from the bucket alone
      await writeHostStatus(storage, {
        host: o.host,
        reportedAt: new Date().toISOString(),
        contexts: [...status.values()],
      });
    }
  } else {
    await underLease("maintenance", async () => {
      for (let round = 0; round < (o.rounds ?? 1); round++) {
        for (const context of o.contexts) {
          try {
            const r = await underLease(`context/${context}`, (lease) =>
              pruneShared({
                fs: nodeFs,
                scratch: o.scratch,
                storage,
                lease,
                context,
                policy: o.policy,
                clock: () => new Date(o.hourMs0 + (o.ticks + 1) * hour),
                deleteAfterMs: o.deleteAfterMs,
              }),
            );
            say({ event: "pruned", context, marked: r.marked, removed: r.removed, unmarked: r.unmarked });
          } catch (err) {
            // a context being snapshotted right now is pruned next round
            if (err.code !== "PAAS_BACKUP_LOCKED") failed++;
            say({
              event: "error",
              context,
              code: err.code ?? null,
              message: String(err.message).split("\n")[0],
            });
          }
        }
        await sleep(o.pauseMs ?? 0);
      }
      say({
        event: "listed-with-marked",
        counts: Object.fromEntries(
          await Promise.all(o.contexts.map(async (c) => [c, (await listSnapshotsIn(storage, c)).length])),
        ),
      });
    });
  }
} catch (err) {
  failed++;
  say({ event: "error", code: err.code ?? null, message: String(err.message).split("\n")[0] });
}
say({
  event: "summary",
  role: o.role,
  contexts: o.contexts.length,
  ms: Date.now() - started,
  maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  requests,
  failed,
});
process.exit(failed ? 3 : 0);
