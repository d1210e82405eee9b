// The commit log's compaction on an s3:// root, measured (issue 22): one context gets N committed
// snapshots in one Ceph RGW bucket, then `list` runs with a cold cache (a new host, or the cache
// removed) and with a warm one, before and after maintenance (`prune`, which keeps every snapshot
// here) wrote a checkpoint and removed the entries it covers. Requests are counted in the S3 driver
// (PAAS_BACKUP_S3_REQUEST_LOG). After `pnpm run build`; needs Ceph RGW (scripts/ensure-tools.mjs).
// BENCH_SNAPSHOTS (30).
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { nodeFs } from "../packages/core/dist/fs/node-fs.js";
import { createStateRoot, startRgw } from "../packages/testing/dist/index.js";

const SNAPSHOTS = Number(process.env.BENCH_SNAPSHOTS ?? 30);
const CLI = resolve(import.meta.dirname, "../packages/cli/dist/bin.cjs");
const work = mkdtempSync(join(tmpdir(), "pb-bench-log-compaction-"));
const rgw = await startRgw();
try {
  const bucket = await rgw.createBucket({ prefix: "compaction" });
  const root = `s3://${bucket}/repo`;
  const state = await createStateRoot({
    fs: nodeFs,
    root: join(work, "state"),
    contexts: [{ name: "c1", eventBytes: 2_000 }],
    plantSecrets: false,
  });
  const config = join(work, "config.json");
  writeFileSync(
    config,
    JSON.stringify({
      retention: { hourly: 1000, daily: 0, weekly: 0, monthly: 0 },
      // the checkpoint may go at once: this bench has no concurrent reader
      sharedRoot: { deleteAfterSeconds: 0, logCheckpointEvery: 24 },
    }),
  );
  const warmCache = join(work, "cache");
  let n = 0;
  /** the CLI with a request log; returns the requests it counted, by operation */
  const cli = (args, now, cache = warmCache) => {
    const log = join(work, `requests-${n++}.jsonl`);
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        "--state-root",
        state.stateRoot,
        "--backup-root",
        root,
        "--root-endpoint",
        rgw.endpoint,
        "--root-path-style",
        "--config",
        config,
        "--json",
        ...args,
      ],
      {
        encoding: "utf8",
        env: {
          PATH: process.env.PATH,
          ...rgw.env,
          HOME: work,
          XDG_CACHE_HOME: cache,
          PAAS_BACKUP_HOST: "bench",
          PAAS_BACKUP_NOW: now,
          PAAS_BACKUP_S3_REQUEST_LOG: log,
        },
      },
    );
    if (r.status !== 0) throw new Error(`${args.join(" ")} exited ${r.status}: ${r.stdout}${r.stderr}`);
    const requests = JSON.parse(readFileSync(log, "utf8").trim().split("\n").pop()).requests;
    return {
      requests,
      total: Object.values(requests).reduce((a, b) => a + b, 0),
      json: JSON.parse(r.stdout),
    };
  };
  const hour = (i) => new Date(Date.UTC(2026, 11, 1, 0, 10) + i * 3_600_000).toISOString();
  const show = (label, r) =>
    console.log(
      `${label}: ${r.total} requests (${Object.entries(r.requests)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")})`,
    );
  let lastSnapshot;
  for (let i = 0; i < SNAPSHOTS; i++)
    lastSnapshot = cli(["snapshot", "--context", "c1", "--kind", "full", "--insecure-plaintext"], hour(i));
  const now = hour(SNAPSHOTS);
  const cold = () => {
    const cache = join(work, `cold-${n}`);
    mkdirSync(cache);
    return cli(["list", "--context", "c1"], now, cache);
  };
  console.log(`## ${SNAPSHOTS} committed snapshots of one context, one RGW bucket`);
  show("snapshot (the last one, before any checkpoint)", lastSnapshot);
  const coldBefore = cold();
  show("list, cold cache, before compaction", coldBefore);
  show("list, warm cache, before compaction", cli(["list", "--context", "c1"], now));
  const first = cli(["prune", "--context", "c1"], now);
  const second = cli(["prune", "--context", "c1"], now);
  console.log(
    `prune: checkpoint up to entry ${first.json.data[0].log.checkpoint}; the next prune removed ${second.json.data[0].log.removed} log objects`,
  );
  const coldAfter = cold();
  show("list, cold cache, after compaction", coldAfter);
  show("list, warm cache, after compaction", cli(["list", "--context", "c1"], now));
  show(
    "snapshot after compaction",
    cli(["snapshot", "--context", "c1", "--kind", "full", "--insecure-plaintext"], hour(SNAPSHOTS + 1)),
  );
  const ids = (r) => r.json.data.map((s) => s.id).join(",");
  if (ids(coldBefore) !== ids(coldAfter)) throw new Error("list differs after compaction");
  console.log(`both lists show the same ${coldAfter.json.data.length} snapshots`);
} finally {
  await rgw.stop();
  rmSync(work, { recursive: true, force: true });
}
