// paas-backup benchmarks: every figure is measured in this run, ratios against GNU tools run
// and restic on the same data on the same machine. Sizes: BENCH_LOG_MB (default 1024), BENCH_SMALL_MB (64,
// the second size for peak RSS), BENCH_CONTEXTS (200). Run with `pnpm bench`; a quick run:
// BENCH_LOG_MB=128 BENCH_PARTS=full,incremental,rss,startup pnpm bench.
// Parts: BENCH_PARTS=full,incremental,rss,startup,tick,encryption,upload
import { rmSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { nodeFs } from "../packages/core/dist/fs/node-fs.js";
import { createStateRoot, appendEvents } from "../packages/testing/dist/index.js";
import {
  timeCli,
  timeShell,
  timeTool,
  timeNode,
  median,
  medianOf,
  ensureRestic,
  workdir,
  mib,
  secs,
  ratio,
  size,
  row,
} from "./lib.mjs";

const LOG_MB = Number(process.env.BENCH_LOG_MB ?? 1024);
const SMALL_MB = Number(process.env.BENCH_SMALL_MB ?? 64);
/**
 * Rounds of the full part: each round times every tool once, the tools interleaved, and each
 * figure is the median round's (peak RSS the largest). On the shared VM one run was not enough:
 * the first large write after memory was freed ran several times slower, whichever tool it hit.
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const parts = new Set(
  (process.env.BENCH_PARTS ?? "full,incremental,rss,startup,tick,encryption,upload").split(","),
);
const CTX = "internal-dogfood";
const restic = ensureRestic();

async function context(label, mb) {
  const dir = workdir(label);
  const t0 = Date.now();
  const state = await createStateRoot({
    fs: nodeFs,
    root: join(dir, "state"),
    contexts: [{ name: CTX, eventBytes: mb * 1048576 }],
    plantSecrets: false,
  });
  console.log(
    `# generated ${mb} MiB of event logs in ${((Date.now() - t0) / 1000).toFixed(1)} s under ${dir}`,
  );
  return { dir, state, flags: ["--state-root", state.stateRoot, "--backup-root", join(dir, "backups")] };
}

/** snapshot, restore and verify --deep of one context: times and peak RSS of each. */
function snapshotRestoreVerify(ctx) {
  const snapshot = timeCli([...ctx.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  const snap = snapshot.json.data[0];
  const restore = timeCli([
    ...ctx.flags,
    "--json",
    "restore",
    "--context",
    CTX,
    "--snapshot",
    snap.id,
    "--ticket",
    "BENCH",
    "--yes",
  ]);
  const verify = timeCli([
    ...ctx.flags,
    "--json",
    "verify",
    "--context",
    CTX,
    "--snapshot",
    snap.id,
    "--deep",
  ]);
  rmSync(join(ctx.state.stateRoot, ".paas-backup"), { recursive: true, force: true });
  return { snapshot, snap, restore, verify };
}

const T = {}; // every figure of issue 14's table, filled by the parts that ran
const big = await context("big", LOG_MB);
const ctxDir = big.state.contextDir(CTX);
const resticRepo = join(big.dir, "restic-repo");
const resticEnv = `RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="${join(big.dir, "restic-cache")}"`;
const resticBackup = () =>
  timeTool(
    `cd "${ctxDir}" && ${resticEnv} ${restic} -q -r "${resticRepo}" backup --exclude vault --exclude '*.secret' . >/dev/null`,
  );
timeShell(`${resticEnv} ${restic} -q -r "${resticRepo}" init >/dev/null`);

if (parts.has("full")) {
  console.log(
    `\n## full snapshot, restore and verify --deep, ${LOG_MB} MiB of event logs (median of ${ROUNDS} rounds)`,
  );
  const rounds = [];
  for (let round = 0; round < ROUNDS; round++) {
    const ours = snapshotRestoreVerify(big);
    const snap = ours.snap;
    const refOut = join(big.dir, "reference", CTX, "20260101T000000Z");
    mkdirSync(refOut, { recursive: true });
    // The policy's reference flow; its tar -czf is gzip -6, so its artifact is the size target's base.
    const ref = timeTool(
      `set -e; rsync -a --delete --exclude vault --exclude '*.secret' "${ctxDir}/" "${refOut}/"; tar -C "${refOut}" -czf "${refOut}.tar.gz" .; sha256sum "${refOut}.tar.gz" > "${refOut}.tar.gz.sha256"`,
    );
    const gzip6 = size(`${refOut}.tar.gz`);
    rmSync(join(big.dir, "reference"), { recursive: true, force: true });
    // A fresh repository each round: a second backup into the same one only adds what changed.
    rmSync(resticRepo, { recursive: true, force: true });
    timeShell(`${resticEnv} ${restic} -q -r "${resticRepo}" init >/dev/null`);
    const rb = resticBackup();
    const extractDir = join(big.dir, "gnu-extract");
    mkdirSync(extractDir);
    const gnuExtract = timeTool(`tar -C "${extractDir}" -xzf "${snap.artifact}"`);
    rmSync(extractDir, { recursive: true, force: true });
    const resticOut = join(big.dir, "restic-restore");
    const rr = timeTool(
      `${resticEnv} ${restic} -q -r "${resticRepo}" restore latest --target "${resticOut}" >/dev/null`,
    );
    rmSync(resticOut, { recursive: true, force: true });
    rounds.push({ ours, gzip6, ref, rb, gnuExtract, rr });
  }
  const pick = (f) => medianOf(rounds.map(f));
  const ours = {
    snapshot: pick((r) => r.ours.snapshot),
    restore: pick((r) => r.ours.restore),
    verify: pick((r) => r.ours.verify),
    snap: rounds[0].ours.snap,
  };
  const snap = ours.snap;
  const gzip6 = rounds[0].gzip6;
  const ref = pick((r) => r.ref);
  const rb = pick((r) => r.rb);
  const gnuExtract = pick((r) => r.gnuExtract);
  const rr = pick((r) => r.rr);
  row(
    "paas-backup snapshot (full)",
    secs(ours.snapshot.seconds),
    `peak RSS ${mib(ours.snapshot.rss)}, artifact ${mib(snap.bytes)}`,
  );
  row("restic backup (first)", secs(rb.seconds), `peak RSS ${mib(rb.rss)}`);
  row("reference flow (rsync + tar -czf + sha256sum)", secs(ref.seconds), `artifact (gzip -6) ${mib(gzip6)}`);
  row("ratio snapshot / restic backup", ratio(ours.snapshot.seconds, rb.seconds), "target <= 1.00x");
  row("ratio snapshot / reference flow", ratio(ours.snapshot.seconds, ref.seconds), "target <= 0.80x");
  row("ratio artifact / gzip -6", ratio(snap.bytes, gzip6), "target <= 1.10x");
  row(
    "paas-backup restore (verify, stage, swap, doctor)",
    secs(ours.restore.seconds),
    `peak RSS ${mib(ours.restore.rss)}`,
  );
  row("tar -xzf of the same artifact", secs(gnuExtract.seconds), `peak RSS ${mib(gnuExtract.rss)}`);
  row("restic restore", secs(rr.seconds), `peak RSS ${mib(rr.rss)}`);
  row("ratio restore / tar -xzf", ratio(ours.restore.seconds, gnuExtract.seconds), "target <= 1.00x");
  row("ratio restore / restic restore", ratio(ours.restore.seconds, rr.seconds), "stretch <= 1.00x");
  row("paas-backup verify --deep", secs(ours.verify.seconds), `peak RSS ${mib(ours.verify.rss)}`);
  T.full = { ours, gzip6, ref, rb, gnuExtract, rr };
}

if (parts.has("incremental")) {
  const newMb = LOG_MB / 100;
  console.log(
    `\n## incremental after ${newMb.toFixed(1)} MiB (1 %) of new event lines on ${LOG_MB} MiB of logs`,
  );
  // Fresh baselines for both tools: a restore rewrites the context, which neither should pay for here.
  const full = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  resticBackup();
  await appendEvents(
    nodeFs,
    join(ctxDir, "events", "audit.jsonl"),
    "audit",
    CTX,
    newMb * 1048576,
    new Date(),
    50_000_000,
  );
  const inc = timeCli([
    ...big.flags,
    "--json",
    "snapshot",
    "--context",
    CTX,
    "--kind",
    "incremental",
    "--insecure-plaintext",
  ]);
  const rb = resticBackup();
  const f = full.json.data[0];
  const i = inc.json.data[0];
  row(
    "paas-backup incremental snapshot",
    secs(inc.seconds),
    `artifact ${mib(i.bytes)} (${((i.bytes / f.bytes) * 100).toFixed(2)} % of the full), peak RSS ${mib(inc.rss)}`,
  );
  row("restic backup (same change)", secs(rb.seconds), `peak RSS ${mib(rb.rss)}`);
  row("ratio incremental / restic", ratio(inc.seconds, rb.seconds), "target <= 0.50x");
  const chain = timeCli([...big.flags, "--json", "verify", "--context", CTX, "--snapshot", i.id, "--deep"]);
  row(
    "verify --deep of the incremental (replays the chain)",
    secs(chain.seconds),
    `peak RSS ${mib(chain.rss)}`,
  );
  T.incremental = { inc, rb };
}

if (parts.has("rss")) {
  console.log(
    `\n## peak RSS at ${SMALL_MB} MiB of event logs (the ${LOG_MB} MiB figures are in the full part)`,
  );
  const small = await context("small", SMALL_MB);
  const r = snapshotRestoreVerify(small);
  row("paas-backup snapshot", secs(r.snapshot.seconds), `peak RSS ${mib(r.snapshot.rss)}`);
  row("paas-backup restore", secs(r.restore.seconds), `peak RSS ${mib(r.restore.rss)}`);
  row("paas-backup verify --deep", secs(r.verify.seconds), `peak RSS ${mib(r.verify.rss)}`);
  T.small = r;
  if (parts.has("startup")) T.listFlags = small.flags;
  else rmSync(small.dir, { recursive: true, force: true });
}

if (parts.has("startup")) {
  console.log("\n## CLI start (median of 7 runs)");
  let flags = T.listFlags;
  if (!flags) {
    const small = await context("list", 8);
    timeCli([...small.flags, "snapshot", "--context", CTX, "--insecure-plaintext"]);
    flags = small.flags;
  }
  const node = median(7, () => timeNode(["-e", "0"]));
  const version = median(7, () => timeCli(["--version"]));
  const list = median(7, () => timeCli([...flags, "list", "--context", CTX]));
  row("node -e 0", secs(node.seconds), `peak RSS ${mib(node.rss)}`);
  row("paas-backup --version", secs(version.seconds), `peak RSS ${mib(version.rss)}`);
  row("paas-backup list", secs(list.seconds), `peak RSS ${mib(list.rss)}`);
  row(
    "ratio --version / node -e 0",
    ratio(version.seconds, node.seconds),
    `RSS ${ratio(version.rss, node.rss)}; target <= 3x time, <= 1.6x RSS`,
  );
  row(
    "ratio list / node -e 0",
    ratio(list.seconds, node.seconds),
    `RSS ${ratio(list.rss, node.rss)}; target <= 3x time, <= 1.6x RSS`,
  );
  T.startup = { node, version, list };
}

if (parts.has("encryption")) {
  console.log(`\n## encryption cost on ${LOG_MB} MiB of event logs`);
  const keyFile = join(big.dir, "identity.txt");
  const kg = timeCli(["--backup-root", join(big.dir, "backups"), "--json", "keygen", "--out", keyFile]);
  const recipient = kg.json.data[0].recipient;
  const plain = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--insecure-plaintext"]);
  const enc = timeCli([...big.flags, "--json", "snapshot", "--context", CTX, "--recipient", recipient]);
  const tarAge = timeShell(
    `tar -C "${ctxDir}" --exclude vault --exclude '*.secret' -czf - . | age -r ${recipient} > "${join(big.dir, "tar-age.tar.gz.age")}"`,
  );
  row("paas-backup snapshot, plaintext", secs(plain.seconds), `peak RSS ${mib(plain.rss)}`);
  row(
    "paas-backup snapshot, age-encrypted",
    secs(enc.seconds),
    `peak RSS ${mib(enc.rss)}, artifact ${mib(enc.json.data[0].bytes)}`,
  );
  row("tar -czf - | age -r (GNU tar + age CLI)", secs(tarAge));
  row("ratio encrypted / plaintext", ratio(enc.seconds, plain.seconds));
  row("ratio encrypted / tar | age", ratio(enc.seconds, tarAge));
  const restoreEnc = timeCli([
    ...big.flags,
    "--json",
    "verify",
    "--context",
    CTX,
    "--snapshot",
    enc.json.data[0].id,
    "--deep",
    "--identity",
    keyFile,
  ]);
  row("verify --deep of the encrypted snapshot", secs(restoreEnc.seconds), `peak RSS ${mib(restoreEnc.rss)}`);
}

if (parts.has("tick")) {
  const n = Number(process.env.BENCH_CONTEXTS ?? 200);
  console.log(`\n## tick over ${n} small contexts`);
  const dir = workdir("tick");
  const contexts = Array.from({ length: n }, (_, i) => ({ name: `customer-${i}`, eventBytes: 30_000 }));
  const state = await createStateRoot({
    fs: nodeFs,
    root: join(dir, "state"),
    contexts,
    plantSecrets: false,
  });
  const flags = ["--state-root", state.stateRoot, "--backup-root", join(dir, "backups")];
  const first = timeCli([...flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"], {
    PAAS_BACKUP_NOW: "2026-11-24T00:05:00Z",
  });
  const again = timeCli([...flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"], {
    PAAS_BACKUP_NOW: "2026-11-24T00:06:00Z",
  });
  const hourly = timeCli([...flags, "--json", "tick", "--all-contexts", "--insecure-plaintext"], {
    PAAS_BACKUP_NOW: "2026-11-24T01:05:00Z",
  });
  const count = (r, action) => r.json.data.filter((o) => o.action === action).length;
  row(
    `tick, first run (${count(first, "full")} fulls)`,
    secs(first.seconds),
    `${((first.seconds / n) * 1000).toFixed(1)} ms/context, peak RSS ${mib(first.rss)}`,
  );
  row(
    `tick, again at once (${count(again, "none")} no-ops)`,
    secs(again.seconds),
    `${((again.seconds / n) * 1000).toFixed(1)} ms/context`,
  );
  row(
    `tick, an hour later (${count(hourly, "incremental")} incrementals)`,
    secs(hourly.seconds),
    `${((hourly.seconds / n) * 1000).toFixed(1)} ms/context, peak RSS ${mib(hourly.rss)}`,
  );
  const gnu = timeShell(
    `cd "${state.stateRoot}/contexts" && for c in *; do tar -C "$c" --exclude vault --exclude '*.secret' -czf "${dir}/$c.tar.gz" . && sha256sum "${dir}/$c.tar.gz" > "${dir}/$c.tar.gz.sha256"; done`,
  );
  row(`reference flow loop over ${n} contexts (tar + sha256sum)`, secs(gnu));
  row("ratio first tick / reference loop", ratio(first.seconds, gnu));
  rmSync(dir, { recursive: true, force: true });
}

if (parts.has("upload")) {
  const MB = Number(process.env.BENCH_UPLOAD_MB ?? 512);
  console.log(
    `\n## offsite upload of a ${MB} MiB artifact to a local S3-compatible server (s3rver on 127.0.0.1)`,
  );
  const { spawn } = await import("node:child_process");
  const { randomBytes } = await import("node:crypto");
  const dir = workdir("upload");
  const s3dir = join(dir, "s3");
  mkdirSync(s3dir);
  const server = spawn(
    process.execPath,
    ["--openssl-legacy-provider", join(import.meta.dirname, "../packages/cli/test/s3-server.mjs"), s3dir],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const { port } = await new Promise((resolve) =>
    server.stdout.once("data", (c) => resolve(JSON.parse(String(c).split("\n")[0]))),
  );
  // An incompressible artifact: what an encrypted snapshot looks like to the network.
  const state = await createStateRoot({
    fs: nodeFs,
    root: join(dir, "state"),
    contexts: [{ name: CTX, eventBytes: 10_000 }],
    plantSecrets: false,
  });
  const rel = join(state.contextDir(CTX), "releases", "r-1");
  mkdirSync(rel, { recursive: true });
  const { openSync, writeSync, closeSync } = await import("node:fs");
  const fd = openSync(join(rel, "bundle.bin"), "w");
  for (let i = 0; i < MB; i++) writeSync(fd, randomBytes(1048576));
  closeSync(fd);
  const flags = ["--state-root", state.stateRoot, "--backup-root", join(dir, "backups")];
  const snap = timeCli([
    ...flags,
    "--json",
    "snapshot",
    "--context",
    CTX,
    "--include",
    "releases",
    "--insecure-plaintext",
  ]).json.data[0];
  const { S3Client, CreateBucketCommand } = await import("@aws-sdk/client-s3");
  const client = new S3Client({
    endpoint: `http://127.0.0.1:${port}`,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
  });
  await client.send(new CreateBucketCommand({ Bucket: "bench-bucket" }));
  const env = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1" };
  const push = timeCli(
    [
      ...flags,
      "--json",
      "offsite",
      "push",
      "--context",
      CTX,
      "--to",
      "s3://bench-bucket/si",
      "--endpoint",
      `http://127.0.0.1:${port}`,
      "--path-style",
    ],
    env,
  );
  const copy = timeShell(`cp "${snap.artifact}" "${join(dir, "copy.tar.gz")}" && sync`);
  const bytes = snap.bytes;
  row("artifact", mib(bytes));
  row(
    "offsite push (multipart upload + re-read confirmation)",
    secs(push.seconds),
    `${mib(bytes / push.seconds)}/s, peak RSS ${mib(push.rss)}`,
  );
  row("cp of the same file on disk (+ sync)", secs(copy), `${mib(bytes / copy)}/s`);
  row("ratio upload / disk copy", ratio(push.seconds, copy));
  server.stdin.end();
  rmSync(dir, { recursive: true, force: true });
}

printIssueTable(T);
rmSync(big.dir, { recursive: true, force: true });
if (T.listFlags) rmSync(join(T.listFlags[1], ".."), { recursive: true, force: true });

/** Issue 14's table in markdown, every cell from this run, with its target met or not. */
function printIssueTable(t) {
  const f = (r) => `${secs(r.seconds)}, ${mib(r.rss)}`;
  const met = (ok) => (ok ? "met" : "NOT met");
  const lines = [
    `| operation (${LOG_MB} MiB of logs) | paas-backup | GNU / reference | restic ${resticVersion()} | ratios (target) |`,
    "| --- | --- | --- | --- | --- |",
  ];
  if (t.full) {
    const { ours, gzip6, ref, rb, gnuExtract, rr } = t.full;
    const a = ours.snapshot.seconds / rb.seconds,
      b = ours.snapshot.seconds / ref.seconds,
      c = ours.snap.bytes / gzip6;
    lines.push(
      `| full snapshot | ${f(ours.snapshot)}; artifact ${mib(ours.snap.bytes)} | reference flow ${secs(ref.seconds)}; gzip -6 ${mib(gzip6)} | ${f(rb)} | ${a.toFixed(2)}x restic (<= 1, ${met(a <= 1)}); ${b.toFixed(2)}x reference (<= 0.8, ${met(b <= 0.8)}); size ${c.toFixed(2)}x gzip -6 (<= 1.1, ${met(c <= 1.1)}) |`,
    );
    const d = ours.restore.seconds / gnuExtract.seconds,
      e = ours.restore.seconds / rr.seconds;
    lines.push(
      `| restore | ${f(ours.restore)} | tar -xzf ${f(gnuExtract)} | ${f(rr)} | ${d.toFixed(2)}x tar -xzf (<= 1, ${met(d <= 1)}); ${e.toFixed(2)}x restic (stretch <= 1, ${met(e <= 1)}) |`,
    );
    lines.push(`| verify --deep | ${f(ours.verify)} | | | |`);
  }
  if (t.incremental) {
    const g = t.incremental.inc.seconds / t.incremental.rb.seconds;
    lines.push(
      `| incremental after 1% new lines | ${f(t.incremental.inc)} | | ${f(t.incremental.rb)} | ${g.toFixed(2)}x restic (<= 0.5, ${met(g <= 0.5)}) |`,
    );
  }
  const cap = 150 * 1048576;
  for (const [label, r] of [
    [`${LOG_MB} MiB`, t.full?.ours],
    [`${SMALL_MB} MiB`, t.small],
  ]) {
    if (!r) continue;
    const peak = Math.max(r.snapshot.rss, r.restore.rss, r.verify.rss);
    lines.push(
      `| peak RSS at ${label} of logs | snapshot ${mib(r.snapshot.rss)}, restore ${mib(r.restore.rss)}, verify ${mib(r.verify.rss)} | | | < 150 MiB: ${met(peak < cap)} |`,
    );
  }
  if (t.startup) {
    const { node, version, list } = t.startup;
    for (const [label, r] of [
      ["CLI start (`--version`)", version],
      ["`list`", list],
    ]) {
      const x = r.seconds / node.seconds,
        y = r.rss / node.rss;
      lines.push(
        `| ${label} | ${f(r)} | node -e 0: ${f(node)} | | ${x.toFixed(2)}x time (<= 3, ${met(x <= 3)}); ${y.toFixed(2)}x RSS (<= 1.6, ${met(y <= 1.6)}) |`,
      );
    }
  }
  console.log(`\n## issue 14 table (one run, ${new Date().toISOString()})\n${lines.join("\n")}`);
}

function resticVersion() {
  return String(spawnSync(restic, ["version"], { encoding: "utf8" }).stdout).split(" ")[1] ?? "?";
}
