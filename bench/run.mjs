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

if (parts.has("encryption")) {
  console.log(`\n## encryption cost on ${LOG_MB} MiB of event logs`);
  const keyFile = join(big.dir, "identity.txt");
  const kg = timeCli(["--backup-root", join(big.dir, "backups"), "--json", "keygen", "--out", keyFile]);
  const recipient = kg.json.data[0].recipient;
  const plain = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  const enc = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--recipient", recipient]);
  const tarAge = timeShell(`tar -C "${ctxDir}" --exclude vault --exclude '*.secret' -czf - . | age -r ${recipient} > "${join(big.dir, "tar-age.tar.gz.age")}"`);
  row("paas-backup snapshot, plaintext", secs(plain.seconds), `peak RSS ${mib(plain.rss)}`);
  row("paas-backup snapshot, age-encrypted", secs(enc.seconds), `peak RSS ${mib(enc.rss)}, artifact ${mib(enc.json.data[0].bytes)}`);
  row("tar -czf - | age -r (GNU tar + age CLI)", secs(tarAge));
  row("ratio encrypted / plaintext", ratio(enc.seconds, plain.seconds));
  row("ratio encrypted / tar | age", ratio(enc.seconds, tarAge));
  const restoreEnc = timeCli([...big.flags, "--json", "verify", "--context", CTX, "--snapshot", enc.json.data[0].id, "--deep", "--identity", keyFile]);
  row("verify --deep of the encrypted snapshot", secs(restoreEnc.seconds), `peak RSS ${mib(restoreEnc.rss)}`);
}

if (parts.has("tick")) {
  const n = Number(process.env.BENCH_CONTEXTS ?? 200);
  console.log(`\n## tick over ${n} small contexts`);
  const dir = workdir("tick");
  const contexts = Array.from({ length: n }, (_, i) => ({ name: `customer-${i}`, eventBytes: 30_000 }));
  const state = await createStateRoot({ fs: nodeFs, root: join(dir, "state"), contexts, plantSecrets: false });
  const flags = ["--state-root", state.stateRoot, "--backup-root", join(dir, "backups")];
  const first = timeCli([...flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"], { PAAS_BACKUP_NOW: "2026-11-24T00:05:00Z" });
  const again = timeCli([...flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"], { PAAS_BACKUP_NOW: "2026-11-24T00:06:00Z" });
  const hourly = timeCli([...flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"], { PAAS_BACKUP_NOW: "2026-11-24T01:05:00Z" });
  const count = (r, action) => r.json.data.filter((o) => o.action === action).length;
  row(`tick, first run (${count(first, "full")} fulls)`, secs(first.seconds), `${((first.seconds / n) * 1000).toFixed(1)} ms/context, peak RSS ${mib(first.rss)}`);
  row(`tick, again at once (${count(again, "none")} no-ops)`, secs(again.seconds), `${((again.seconds / n) * 1000).toFixed(1)} ms/context`);
  row(`tick, an hour later (${count(hourly, "incremental")} incrementals)`, secs(hourly.seconds), `${((hourly.seconds / n) * 1000).toFixed(1)} ms/context, peak RSS ${mib(hourly.rss)}`);
  const gnu = timeShell(`cd "${state.stateRoot}/contexts" && for c in *; do tar -C "$c" --exclude vault --exclude '*.secret' -czf "${dir}/$c.tar.gz" . && sha256sum "${dir}/$c.tar.gz" > "${dir}/$c.tar.gz.sha256"; done`);
  row(`reference flow loop over ${n} contexts (tar + sha256sum)`, secs(gnu));
  row("ratio first tick / reference loop", ratio(first.seconds, gnu));
  rmSync(dir, { recursive: true, force: true });
}

if (parts.has("upload")) {
  const MB = Number(process.env.BENCH_UPLOAD_MB ?? 512);
  console.log(`\n## offsite upload of a ${MB} MiB artifact to a local S3-compatible server (s3rver on 127.0.0.1)`);
  const { spawn } = await import("node:child_process");
  const { randomBytes } = await import("node:crypto");
  const dir = workdir("upload");
  const s3dir = join(dir, "s3");
  mkdirSync(s3dir);
  const server = spawn(process.execPath, ["--openssl-legacy-provider", join(import.meta.dirname, "../packages/cli/test/s3-server.mjs"), s3dir], { stdio: ["pipe", "pipe", "inherit"] });
  const { port } = await new Promise((resolve) => server.stdout.once("data", (c) => resolve(JSON.parse(String(c).split("\n")[0]))));
  // An incompressible artifact: what an encrypted snapshot looks like to the network.
  const state = await createStateRoot({ fs: nodeFs, root: join(dir, "state"), contexts: [{ name: CTX, eventBytes: 10_000 }], plantSecrets: false });
  const rel = join(state.contextDir(CTX), "releases", "r-1");
  mkdirSync(rel, { recursive: true });
  const { openSync, writeSync, closeSync } = await import("node:fs");
  const fd = openSync(join(rel, "bundle.bin"), "w");
  for (let i = 0; i < MB; i++) writeSync(fd, randomBytes(1048576));
  closeSync(fd);
  const flags = ["--state-root", state.stateRoot, "--backup-root", join(dir, "backups")];
  const snap = timeCli([...flags, "--json", "snapshot", "--context", CTX, "--include", "releases", "--insecure-plaintext"]).json.data[0];
  const { S3Client, CreateBucketCommand } = await import("@aws-sdk/client-s3");
  const client = new S3Client({ endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } });
  await client.send(new CreateBucketCommand({ Bucket: "bench-bucket" }));
  const env = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1" };
  const push = timeCli([...flags, "--json", "offsite", "push", "--context", CTX, "--to", "s3://bench-bucket/si", "--endpoint", `http://127.0.0.1:${port}`, "--path-style"], env);
  const copy = timeShell(`cp "${snap.artifact}" "${join(dir, "copy.tar.gz")}" && sync`);
  const bytes = snap.bytes;
  row("artifact", mib(bytes));
  row("offsite push (multipart upload + re-read confirmation)", secs(push.seconds), `${mib(bytes / push.seconds)}/s, peak RSS ${mib(push.rss)}`);
  row("cp of the same file on disk (+ sync)", secs(copy), `${mib(bytes / copy)}/s`);
  row("ratio upload / disk copy", ratio(push.seconds, copy));
  server.stdin.end();
  rmSync(dir, { recursive: true, force: true });
}

if (globalThis.benchExtra) await globalThis.benchExtra({ big, ctxDir, parts, results });
rmSync(big.dir, { recursive: true, force: true });
