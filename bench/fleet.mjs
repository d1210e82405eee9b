// A fleet on one bucket, measured (issue 22 §3): N hosts (processes, each its own state root of C
// small contexts) tick into one Ceph RGW bucket at once, a full and then an hourly incremental,
// through packages/s3/test/fleet-host.mjs. Prints, per phase: wall time, each host's time and peak
// RSS, and the S3 requests per context by operation. After `pnpm run build`; needs Ceph RGW
// (scripts/ensure-tools.mjs installs it). BENCH_FLEET_HOSTS (3), BENCH_FLEET_CONTEXTS (100).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeFs } from "../packages/core/dist/fs/node-fs.js";
import { appendEvents, createStateRoot, startRgw } from "../packages/testing/dist/index.js";

const HOSTS = Number(process.env.BENCH_FLEET_HOSTS ?? 3);
const CONTEXTS = Number(process.env.BENCH_FLEET_CONTEXTS ?? 100);
const WORKER = join(import.meta.dirname, "../packages/s3/test/fleet-host.mjs");
const work = mkdtempSync(join(tmpdir(), "pb-bench-fleet-"));
const rgw = await startRgw();
try {
  const bucket = await rgw.createBucket({ prefix: "bench" });
  const hosts = Array.from({ length: HOSTS }, (_, h) => `host-${h + 1}`);
  const contextsOf = (h) => Array.from({ length: CONTEXTS }, (_, i) => `${h}-ctx-${i + 1}`);
  for (const h of hosts)
    await createStateRoot({
      fs: nodeFs,
      root: join(work, h, "state"),
      contexts: contextsOf(h).map((name) => ({ name, eventBytes: 20_000 })),
      plantSecrets: false,
    });
  const run = (h, firstTick) =>
    new Promise((resolve) => {
      const child = spawn(
        process.execPath,
        [
          WORKER,
          JSON.stringify({
            endpoint: rgw.endpoint,
            bucket,
            prefix: "repo",
            host: h,
            role: "tick",
            stateRoot: join(work, h, "state"),
            scratch: join(work, h, "scratch"),
            contexts: contextsOf(h),
            ticks: 1,
            firstTick,
            hourMs0: Date.parse("2026-12-01T00:00:00Z"),
            ttlMs: 300_000,
          }),
        ],
        { env: { PATH: process.env.PATH, ...rgw.env }, stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      child.stdout.on("data", (c) => (out += c));
      child.on("close", (code) => {
        const events = out
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l));
        resolve({
          code,
          summary: events.find((e) => e.event === "summary"),
          errors: events.filter((e) => e.event === "error"),
        });
      });
    });
  for (const [phase, firstTick] of [
    ["full", 0],
    ["hourly incremental", 1],
  ]) {
    if (firstTick === 1)
      for (const h of hosts)
        for (const c of contextsOf(h))
          await appendEvents(
            nodeFs,
            join(work, h, "state", "contexts", c, "events", "audit.jsonl"),
            "audit",
            c,
            2_000,
            new Date(),
            50_000_000,
          );
    const t0 = Date.now();
    const results = await Promise.all(hosts.map((h) => run(h, firstTick)));
    const wall = Date.now() - t0;
    console.log(
      `\n## ${phase}: ${HOSTS} hosts x ${CONTEXTS} contexts into one RGW bucket, at once: ${(wall / 1000).toFixed(1)} s wall`,
    );
    for (const [i, r] of results.entries()) {
      const s = r.summary;
      const total = Object.values(s.requests).reduce((a, b) => a + b, 0);
      console.log(
        `${hosts[i]}: exit ${r.code}, ${(s.ms / 1000).toFixed(1)} s (${(s.ms / CONTEXTS).toFixed(0)} ms a context), peak RSS ${s.maxRssMiB} MiB, ${(total / CONTEXTS).toFixed(1)} requests a context: ` +
          Object.entries(s.requests)
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k.replace(/Command$/, "")} ${(v / CONTEXTS).toFixed(1)}`)
            .join(", "),
      );
      if (r.errors.length) console.log(`  errors: ${JSON.stringify(r.errors.slice(0, 3))}`);
    }
  }
} finally {
  await rgw.stop();
  rmSync(work, { recursive: true, force: true });
}
