// Restore before/after: the 4 restore rows of issue 23 (plaintext / tar -xzf, encrypted / restic
// restore, both shapes), for one or more builds of the CLI on the same data, interleaved per round.
// Every timed command runs after `sync`, under GNU time: wall, user+sys CPU and peak RSS.
//   node bench/restore.mjs [cliA/bin.cjs cliB/bin.cjs ...]   (default: this tree's build)
// BENCH_LOG_MB (256), BENCH_ROUNDS (3), BENCH_SHAPES (mixed,long), BENCH_KINDS (plain,enc).
// Snapshots are taken once per shape with the first CLI; each restore goes into the same changed
// context (the logs cut back to the snapshot's and diverged again before every run).
import { rmSync, writeFileSync, readFileSync, statSync, truncateSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { spawnSync } from "node:child_process";
import { writeContext, appendLogs } from "./si-state.mjs";
import { workdir, ensureRestic } from "./lib.mjs";

const LOG_MB = Number(process.env.BENCH_LOG_MB ?? 256);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SHAPES = (process.env.BENCH_SHAPES ?? "mixed,long").split(",");
const KINDS = (process.env.BENCH_KINDS ?? "plain,enc").split(",");
const CLIS = (process.argv.length > 2 ? process.argv.slice(2) : ["packages/cli/dist/bin.cjs"]).map((p) =>
  resolve(p),
);
const CTX = "internal-dogfood";
const LOGS = ["audit.jsonl", "deployments.jsonl", "alerts.jsonl"];
const restic = ensureRestic();

/** Run under GNU time after sync: wall s, CPU s (user+sys), peak RSS MiB. */
function timed(argv, env = {}) {
  spawnSync("sync");
  const out = join(workdirRoot, `time-${Math.random().toString(36).slice(2)}`);
  const t0 = process.hrtime.bigint();
  const r = spawnSync("/usr/bin/time", ["-f", "%U %S %M", "-o", out, ...argv], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}: ${r.stderr}${r.stdout}`);
  const [u, s, m] = readFileSync(out, "utf8").trim().split("\n").pop().split(" ").map(Number);
  rmSync(out, { force: true });
  return { wall, cpu: u + s, rss: m / 1024, stdout: r.stdout };
}

const workdirRoot = workdir("restore");
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const results = {};
for (const shape of SHAPES) {
  const dir = join(workdirRoot, shape);
  const stateRoot = join(dir, "state");
  const backups = join(dir, "backups");
  const { dir: ctxDir, gen } = writeContext(stateRoot, CTX, { logBytes: LOG_MB * 1048576, shape, seed: 23 });
  const flags = ["--state-root", stateRoot, "--backup-root", backups];
  const cli = (c, ...a) => ["node", c, ...flags, "--json", ...a];
  const key = join(dir, "identity.txt");
  const kg = JSON.parse(
    timed(["node", CLIS[0], "--backup-root", backups, "--json", "keygen", "--out", key]).stdout,
  );
  const recipient = kg.data[0].recipient;
  const snap = (...extra) =>
    JSON.parse(timed(cli(CLIS[0], "snapshot", "--context", CTX, ...extra)).stdout).data[0];
  const plain = snap("--insecure-plaintext");
  rmSync(join(stateRoot, ".paas-backup", "member-cache"), { recursive: true, force: true });
  const enc = snap("--recipient", recipient);
  const base = Object.fromEntries(LOGS.map((f) => [f, statSync(join(ctxDir, "events", f)).size]));
  const deployments = join(ctxDir, "deployments.json");
  const deploymentsText = readFileSync(deployments, "utf8");
  const resticRepo = join(dir, "restic-repo");
  const renv = { RESTIC_PASSWORD: "bench", RESTIC_CACHE_DIR: join(dir, "restic-cache") };
  if (KINDS.includes("enc")) {
    spawnSync(restic, ["-q", "-r", resticRepo, "init"], { env: { ...process.env, ...renv } });
    const b = spawnSync(
      "sh",
      ["-c", `cd "${ctxDir}" && ${restic} -q -r "${resticRepo}" backup --exclude vault . >/dev/null`],
      { env: { ...process.env, ...renv } },
    );
    if (b.status !== 0) throw new Error("restic backup failed");
  }
  /** back to the snapshot's context, then moved on as in an incident (bench/run.mjs's divergeContext) */
  const diverge = () => {
    rmSync(join(stateRoot, ".paas-backup", "moved-aside"), { recursive: true, force: true });
    for (const [f, n] of Object.entries(base)) {
      const p = join(ctxDir, "events", f);
      try {
        truncateSync(p, n);
      } catch {}
    }
    writeFileSync(deployments, deploymentsText.replace("rel-0", "rel-broken"));
    appendLogs(ctxDir, gen, CTX, LOG_MB * 1048576 * 0.005);
    rmSync(join(ctxDir, "events", "alerts.jsonl"));
  };
  const rows = {};
  const add = (k, r) => (rows[k] ??= []).push(r);
  console.log(
    `# ${shape}: ${LOG_MB} MiB, artifact ${(plain.bytes / 1048576).toFixed(1)} MiB (load ${load()})`,
  );
  for (let i = 0; i < ROUNDS; i++) {
    for (const kind of KINDS) {
      if (kind === "plain") {
        const x = join(dir, "x");
        mkdirSync(x);
        add("tar -xzf", timed(["tar", "-C", x, "-xzf", plain.artifact]));
        rmSync(x, { recursive: true, force: true });
      } else {
        const x = join(dir, "x");
        add(
          "restic restore",
          timed([restic, "-q", "-r", resticRepo, "restore", "latest", "--target", x], renv),
        );
        rmSync(x, { recursive: true, force: true });
      }
      CLIS.forEach((c, ci) => {
        diverge();
        const id = kind === "plain" ? plain.id : enc.id;
        const extra = kind === "plain" ? [] : ["--identity", key];
        const r = timed(
          cli(c, "restore", "--context", CTX, "--snapshot", id, "--ticket", "B", "--yes", ...extra),
        );
        add(`${kind} cli${ci}`, r);
      });
    }
    console.log(`# round ${i + 1} (load ${load()})`);
  }
  for (const [k, rs] of Object.entries(rows)) {
    const w = med(rs.map((r) => r.wall));
    const c = med(rs.map((r) => r.cpu));
    const m = Math.max(...rs.map((r) => r.rss));
    console.log(
      `${shape.padEnd(6)} ${k.padEnd(16)} wall ${w.toFixed(2)} s (${rs.map((r) => r.wall.toFixed(2)).join("/")})  cpu ${c.toFixed(2)} s (${rs.map((r) => r.cpu.toFixed(2)).join("/")})  rss ${m.toFixed(1)} MiB`,
    );
  }
  for (const kind of KINDS) {
    const ref = rows[kind === "plain" ? "tar -xzf" : "restic restore"];
    CLIS.forEach((_, ci) => {
      const rs = rows[`${kind} cli${ci}`];
      console.log(
        `${shape.padEnd(6)} ratio ${kind} cli${ci}: wall ${(med(rs.map((r) => r.wall)) / med(ref.map((r) => r.wall))).toFixed(2)}x, cpu ${(med(rs.map((r) => r.cpu)) / med(ref.map((r) => r.cpu))).toFixed(2)}x`,
      );
    });
  }
  results[shape] = rows;
  rmSync(dir, { recursive: true, force: true });
}
rmSync(workdirRoot, { recursive: true, force: true });
console.log(`# done (load ${load()}); clis: ${CLIS.join(" ")}`);
