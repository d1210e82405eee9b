// paas-backup benchmarks: every figure is measured in this run, ratios against GNU tools run
// on the same data on the same machine. Sizes: BENCH_LOG_MB (default 1024), BENCH_CONTEXTS (200).
// Run with `pnpm bench` (after `pnpm install`). Parts: BENCH_PARTS=full,incremental,tick,encryption,upload
import { rmSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { nodeFs } from "../packages/core/dist/fs/node-fs.js";
import { createStateRoot, appendEvents } from "../packages/testing/dist/index.js";
import { timeCli, timeShell, workdir, mib, secs, ratio, size, row } from "./lib.mjs";

const LOG_MB = Number(process.env.BENCH_LOG_MB ?? 1024);
const parts = new Set((process.env.BENCH_PARTS ?? "full,incremental,tick,encryption,upload").split(","));
const CTX = "internal-dogfood";

async function bigContext() {
  const dir = workdir("big");
  const t0 = Date.now();
  const state = await createStateRoot({ fs: nodeFs, root: join(dir, "state"), contexts: [{ name: CTX, eventBytes: LOG_MB * 1048576 }], plantSecrets: false });
  console.log(`# generated ${LOG_MB} MiB of event logs in ${((Date.now() - t0) / 1000).toFixed(1)} s under ${dir}`);
  return { dir, state, flags: ["--state-root", state.stateRoot, "--backup-root", join(dir, "backups")] };
}

const results = {};
const big = await bigContext();
const ctxDir = big.state.contextDir(CTX);

if (parts.has("full")) {
  console.log(`\n## full snapshot and restore, ${LOG_MB} MiB of event logs`);
  const ours = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  const snap = ours.json.data[0];
  const refOut = join(big.dir, "reference", CTX, "20260101T000000Z");
  mkdirSync(refOut, { recursive: true });
  const ref = timeShell(`set -e; rsync -a --delete --exclude 'vault/secrets.env' --exclude '*.secret' "${ctxDir}/" "${refOut}/"; tar -C "${refOut}" -czf "${refOut}.tar.gz" .; sha256sum "${refOut}.tar.gz" > "${refOut}.tar.gz.sha256"`);
  row("paas-backup snapshot (full)", secs(ours.seconds), `peak RSS ${mib(ours.rss)}, artifact ${mib(snap.bytes)}`);
  row("reference flow (rsync + tar -czf + sha256sum)", secs(ref), `artifact ${mib(size(`${refOut}.tar.gz`))}`);
  row("ratio snapshot / reference flow", ratio(ours.seconds, ref));
  const extractDir = join(big.dir, "gnu-extract");
  mkdirSync(extractDir);
  const gnuExtract = timeShell(`tar -C "${extractDir}" -xzf "${snap.artifact}"`);
  rmSync(extractDir, { recursive: true, force: true });
  const restore = timeCli([...big.flags, "--json", "restore", "--context", CTX, "--snapshot", snap.id, "--ticket", "BENCH", "--yes"]);
  row("paas-backup restore (verify, stage, swap, doctor)", secs(restore.seconds), `peak RSS ${mib(restore.rss)}`);
  row("tar -xzf of the same artifact", secs(gnuExtract));
  row("ratio restore / tar -xzf", ratio(restore.seconds, gnuExtract));
  const verify = timeCli([...big.flags, "--json", "verify", "--context", CTX, "--deep"]);
  row("paas-backup verify --deep", secs(verify.seconds), `peak RSS ${mib(verify.rss)}`);
  rmSync(join(big.dir, "reference"), { recursive: true, force: true });
  rmSync(join(big.state.stateRoot, ".paas-backup"), { recursive: true, force: true });
  results.full = { snapshot: ours.seconds, reference: ref, restore: restore.seconds, gnuExtract, rssSnapshot: ours.rss, rssRestore: restore.rss };
}

if (parts.has("incremental")) {
  console.log(`\n## incremental after 10 MiB of new event lines on ${LOG_MB} MiB of logs`);
  const full = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  await appendEvents(nodeFs, join(ctxDir, "events", "audit.jsonl"), "audit", CTX, 10 * 1048576, new Date(), 50_000_000);
  const inc = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--kind", "incremental", "--insecure-plaintext"]);
  const f = full.json.data[0];
  const i = inc.json.data[0];
  row("full snapshot", secs(full.seconds), `artifact ${mib(f.bytes)}`);
  row("incremental snapshot", secs(inc.seconds), `artifact ${mib(i.bytes)}, stored ${mib(i.storedBytes)}, peak RSS ${mib(inc.rss)}`);
  row("incremental time as a fraction of the full", `${((inc.seconds / full.seconds) * 100).toFixed(1)} %`);
  row("incremental artifact as a fraction of the full", `${((i.bytes / f.bytes) * 100).toFixed(2)} %`);
  const chainRestore = timeCli([...big.flags, "--json", "verify", "--context", CTX, "--snapshot", i.id, "--deep"]);
  row("verify --deep of the incremental (replays the chain)", secs(chainRestore.seconds), `peak RSS ${mib(chainRestore.rss)}`);
}

if (globalThis.benchExtra) await globalThis.benchExtra({ big, ctxDir, parts, results });
rmSync(big.dir, { recursive: true, force: true });
