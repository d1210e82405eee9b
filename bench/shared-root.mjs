// The CLI on an s3:// root, measured (issue 22 §3): N hosts (processes of the built CLI, each its
// own state root of C small contexts, HOME and cache) run `tick --all-contexts` into one Ceph RGW
// bucket at once: the first tick (fulls), a tick in the same hour (nothing due), and the next
// hour's (incrementals, after each context's audit log grew), each followed by the run's
// maintenance (prune, sweep) under the bucket's maintenance lease. Prints per phase and host the
// wall time, peak RSS and the S3 requests per context by operation, counted in the S3 driver
// (PAAS_BACKUP_S3_REQUEST_LOG). After `pnpm run build`; needs Ceph RGW (scripts/ensure-tools.mjs).
// BENCH_HOSTS (3), BENCH_CONTEXTS (100).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { nodeFs } from "../packages/core/dist/fs/node-fs.js";
import { appendEvents, createStateRoot, startRgw } from "../packages/testing/dist/index.js";

const HOSTS = Number(process.env.BENCH_HOSTS ?? 3);
const CONTEXTS = Number(process.env.BENCH_CONTEXTS ?? 100);
const CLI = resolve(import.meta.dirname, "../packages/cli/dist/bin.cjs");
// Peak RSS read by GNU time (%M), as bench/lib.mjs does: it forks the CLI from its own small process.
const TIME = "/usr/bin/time";
const work = mkdtempSync(join(tmpdir(), "pb-bench-shared-root-"));
const rgw = await startRgw();
try {
  const bucket = await rgw.createBucket({ prefix: "bench" });
  const root = `s3://${bucket}/repo`;
  const hosts = Array.from({ length: HOSTS }, (_, h) => `host-${h + 1}`);
  const contextsOf = (h) => Array.from({ length: CONTEXTS }, (_, i) => `${h}-ctx-${i + 1}`);
  for (const h of hosts) {
    mkdirSync(join(work, h, "home"), { recursive: true });
    await createStateRoot({
      fs: nodeFs,
      root: join(work, h, "state"),
      contexts: contextsOf(h).map((name) => ({ name, eventBytes: 20_000 })),
      plantSecrets: false,
    });
  }
  const run = (h, phase, now) =>
    new Promise((done) => {
      const log = join(work, h, `${phase}.requests.jsonl`);
      const rss = join(work, h, `${phase}.rss`);
      const t0 = Date.now();
      const child = spawn(
        TIME,
        [
          "-f",
          "%M",
          "-o",
          rss,
          process.execPath,
          CLI,
          "--state-root",
          join(work, h, "state"),
          "--backup-root",
          root,
          "--root-endpoint",
          rgw.endpoint,
          "--root-path-style",
          "--json",
          "tick",
          "--all-contexts",
          "--insecure-plaintext",
        ],
        {
          env: {
            PATH: process.env.PATH,
            ...rgw.env,
            HOME: join(work, h, "home"),
            XDG_CACHE_HOME: join(work, h, "cache"),
            PAAS_BACKUP_HOST: h,
            PAAS_BACKUP_NOW: now,
            PAAS_BACKUP_S3_REQUEST_LOG: log,
          },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      let err = "";
      child.stdout.on("data", (c) => (out += c));
      child.stderr.on("data", (c) => (err += c));
      child.on("close", (code) => {
        const requests = {};
        // A run that died before it counted (it never reached the bucket, or was killed) leaves no
        // log: say so in its row, with its stderr, rather than stop the bench.
        const lines = existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : [];
        for (const line of lines)
          for (const [k, v] of Object.entries(JSON.parse(line).requests))
            requests[k] = (requests[k] ?? 0) + v;
        let json = null;
        try {
          json = JSON.parse(out);
        } catch {}
        done({
          code,
          ms: Date.now() - t0,
          // GNU time: KiB, on the last line (a killed child's line comes first)
          rssMiB: existsSync(rss)
            ? Math.round(Number(readFileSync(rss, "utf8").trim().split("\n").pop()) / 1024)
            : null,
          logged: lines.length > 0,
          requests,
          actions: json?.data?.map((d) => d.action) ?? [],
          stderr: err.slice(-1500),
        });
      });
    });
  const phases = [
    ["first tick (fulls)", "2026-12-01T00:10:00Z"],
    ["same hour (nothing due)", "2026-12-01T00:40:00Z"],
    ["next hour (incrementals)", "2026-12-01T01:10:00Z"],
  ];
  for (const [phase, now] of phases) {
    if (phase.startsWith("next hour"))
      for (const h of hosts)
        for (const c of contextsOf(h))
          await appendEvents(
            nodeFs,
            join(work, h, "state", "contexts", c, "events", "audit.jsonl"),
            "audit",
            c,
            2_000,
            new Date(now),
            50_000_000,
          );
    const t0 = Date.now();
    const results = await Promise.all(hosts.map((h) => run(h, phase.split(" ")[0], now)));
    const wall = Date.now() - t0;
    console.log(
      `\n## ${phase}: ${HOSTS} hosts x ${CONTEXTS} contexts, tick --all-contexts into one RGW bucket at once: ${(wall / 1000).toFixed(1)} s wall`,
    );
    for (const [i, r] of results.entries()) {
      const total = Object.values(r.requests).reduce((a, b) => a + b, 0);
      const actions = {};
      for (const a of r.actions) actions[a] = (actions[a] ?? 0) + 1;
      console.log(
        `${hosts[i]}: exit ${r.code} (${JSON.stringify(actions)}), ${(r.ms / 1000).toFixed(1)} s, peak RSS ${r.rssMiB} MiB, ${(total / CONTEXTS).toFixed(1)} requests a context: ` +
          Object.entries(r.requests)
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k} ${(v / CONTEXTS).toFixed(1)}`)
            .join(", "),
      );
      if (!r.logged) console.log(`  no request log: the run never counted a request`);
      if (r.code !== 0) console.log(`  stderr: ${r.stderr}`);
    }
  }
} finally {
  await rgw.stop();
  rmSync(work, { recursive: true, force: true });
}
