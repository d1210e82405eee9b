// Bench state written from the shapes si documents (/work/shared/reference/si-paas-state.md §2, §3),
// independently of @paas-backup/core/sample: the project's own sample is what the code was tuned
// on (every audit line with `"api_token": "<redacted>"`, lines of one regular shape), so it flatters.
//
// What is varied here, as si writes it: audit lines with and without `fields`; hex ids of random
// length and ULIDs; error messages of varied length on failures only; a redacted field on some
// lines only; deployment events (free-form, si's timestamp/context/source plus error_* on failure)
// and alert events ({timestamp, command, severity, status, target?, message, guidance?, context,
// fields?}). Bytes split 60/30/10 across audit/deployments/alerts. Shape "long" has the same
// records with very long lines (build logs, stack traces, JSON payloads in a field: 4-96 KiB).
// Deterministic: a seeded generator, so rounds and runs compare like for like.
import { closeSync, mkdirSync, openSync, writeSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** xorshift128+: fast, seeded, good enough for shapes (not for keys). */
function rng(seed) {
  let s0 = BigInt(seed) | 1n,
    s1 = 0x9e3779b97f4a7c15n ^ BigInt(seed);
  const mask = (1n << 64n) - 1n;
  let buf = 0,
    have = 0;
  const next32 = () => {
    if (have === 0) {
      let x = s0;
      const y = s1;
      s0 = y;
      x ^= (x << 23n) & mask;
      s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
      buf = Number((s1 + y) & 0xffffffffn);
      have = 1;
      return buf >>> 0;
    }
    have = 0;
    return Math.imul(buf ^ (buf >>> 15), 0x2c1b3c6d) >>> 0;
  };
  // A cheap 32-bit stream on top: BigInt per call is slow, so mix with a plain LCG between reseeds.
  let state = next32();
  const u32 = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    let t = state ^ (state >>> 16);
    t = Math.imul(t, 0x45d9f3b) >>> 0;
    return (t ^ (t >>> 16)) >>> 0;
  };
  return {
    int: (n) => u32() % n,
    float: () => u32() / 4294967296,
    reseed: () => (state = next32()),
  };
}

const HEX = "0123456789abcdef";
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const WORDS =
  "deploy release target app health check compose image pull push rollout slot blue green ingress acme certificate dns proxy timeout connect refused retry queue webhook branch commit vault trust recipient addon service volume network restart container registry manifest layer digest upstream downstream latency budget disk memory cpu load balancer".split(
    " ",
  );
const APPS = ["api", "web", "worker", "billing", "search", "auth-gateway", "reports", "notifier"];
const TARGETS = ["edge-1", "edge-2", "prod-eu-1", "prod-us-2", "staging", "db-primary", "cache-a"];
const COMMANDS = [
  "deploy",
  "rollback",
  "target add",
  "target check",
  "app status",
  "events list",
  "alert send",
  "addon apply",
  "webhook ingest",
  "context show",
  "doctor",
  "secret rotate",
];
const ERROR_CODES = [
  "PAAS_INVALID_ARGUMENT",
  "PAAS_PRECHECK_PLAINTEXT_SECRETS",
  "PAAS_PRECHECK_VAULT_TRUST",
  "PAAS_UNKNOWN_FAILURE",
  "PAAS_REMOTE_TIMEOUT",
  "PAAS_COMPOSE_FAILED",
];
const STAGES = ["precheck", "build", "upload", "apply", "verify", "health"];

export function makeWriter(seed, shape) {
  const r = rng(seed);
  const pick = (a) => a[r.int(a.length)];
  // Random hex and base-32 text cut from pools at random offsets: one character at a time was
  // most of the generation time; 4 MiB pools are far beyond deflate's 32 KiB window.
  const POOL = 4 << 20;
  const hexPool = Array.from({ length: POOL }, () => HEX[r.int(16)]).join("");
  const b32Pool = Array.from({ length: POOL }, () => CROCKFORD[r.int(32)]).join("");
  const hex = (min, max) => {
    const n = min + r.int(max - min + 1);
    const at = r.int(POOL - n);
    return hexPool.slice(at, at + n);
  };
  let ulidClock = Date.UTC(2026, 10, 1);
  const ulid = () => {
    ulidClock += 1 + r.int(40);
    let t = ulidClock,
      time = "";
    for (let i = 0; i < 10; i++) {
      time = CROCKFORD[t % 32] + time;
      t = Math.floor(t / 32);
    }
    const at = r.int(POOL - 16);
    return time + b32Pool.slice(at, at + 16);
  };
  const id = () => (r.int(2) ? hex(7, 40) : ulid());
  const sentence = (min, max) => {
    const n = min + r.int(max - min + 1);
    const w = [];
    for (let i = 0; i < n; i++) w.push(pick(WORDS));
    return w.join(" ");
  };
  /** A long, line-free text: a build log or a stack trace as si would put in one JSON string. */
  const longText = () => {
    const target = 4096 + r.int(92 * 1024);
    const parts = [];
    let n = 0;
    while (n < target) {
      const p =
        r.int(3) === 0
          ? `at ${pick(APPS)}.${pick(WORDS)} (/srv/${pick(APPS)}/${hex(4, 12)}.js:${r.int(900)}:${r.int(80)})`
          : `step ${r.int(40)}/${40}: ${sentence(3, 14)} ${id()}`;
      parts.push(p);
      n += p.length + 2;
    }
    return parts.join("\n");
  };
  let clock = Date.UTC(2026, 10, 1, 0, 0, 0);
  let second = -1;
  let prefix = "";
  const timestamp = () => {
    clock += r.int(4000);
    const sec = Math.floor(clock / 1000);
    // The date part changes once a second at most: format it then, not per line.
    if (sec !== second) {
      second = sec;
      prefix = new Date(sec * 1000).toISOString().slice(0, 19);
    }
    return `${prefix}.${String(clock % 1000).padStart(3, "0")}${String(r.int(1e6)).padStart(6, "0")}Z`;
  };
  const long = shape === "long";

  function audit(context) {
    const failed = r.int(6) === 0;
    const rec = {
      timestamp: timestamp(),
      context,
      source: "audit",
      command: pick(COMMANDS),
      status: failed ? "failed" : pick(["succeeded", "succeeded", "succeeded", "accepted"]),
      mode: r.int(5) ? "live" : "scaffold",
      severity: failed ? "critical" : "info",
    };
    if (r.int(3)) {
      const fields = { app: pick(APPS), request_id: id() };
      if (r.int(2)) fields.target = pick(TARGETS);
      if (r.int(3) === 0) fields.release = `rel-${id()}`;
      if (r.int(4) === 0) fields.duration_ms = String(r.int(120000));
      // si stores a sensitive-looking field's value as <redacted>: on some lines only.
      if (r.int(7) === 0) fields[pick(["api_token", "registry_password", "webhook_secret"])] = "<redacted>";
      if (long && r.int(2) === 0) fields.output = longText();
      rec.fields = fields;
    }
    if (failed) errorFields(rec);
    return rec;
  }
  function errorFields(rec) {
    rec.error_code = pick(ERROR_CODES);
    rec.error_stage = pick(STAGES);
    if (r.int(2)) rec.error_target = pick(TARGETS);
    rec.error_message = long ? longText() : sentence(2, r.int(4) === 0 ? 60 : 12);
    rec.error_remediation = `${sentence(4, 16)}.`;
  }
  function deployment(context) {
    const failed = r.int(5) === 0;
    const rec = {
      app: pick(APPS),
      release: `${id()}`,
      target: pick(TARGETS),
      command: pick(["deploy", "rollback", "deploy --bluegreen"]),
      status: failed ? "failed" : pick(["succeeded", "succeeded", "retrying", "degraded"]),
      strategy: pick(["rolling", "bluegreen", "recreate"]),
      image: `registry.example.com/${pick(APPS)}@sha256:${hex(64, 64)}`,
      timestamp: timestamp(),
      context,
      source: "si paas",
    };
    if (r.int(2)) rec.commit = hex(40, 40);
    if (long) rec.build_log = longText();
    if (failed) errorFields(rec);
    return rec;
  }
  function alert(context) {
    const severity = pick(["info", "warning", "critical"]);
    const rec = {
      timestamp: timestamp(),
      command: "alert send",
      severity,
      status: pick(["sent", "sent", "failed", "accepted"]),
      message: long ? longText() : sentence(4, r.int(5) === 0 ? 80 : 20),
      context,
    };
    if (r.int(2)) rec.target = pick(TARGETS);
    if (r.int(2)) rec.guidance = `${sentence(5, 25)}.`;
    if (r.int(2)) rec.fields = { app: pick(APPS), alert_id: id(), channel: pick(["ops", "oncall", "email"]) };
    return rec;
  }
  return { audit, deployment, alert, timestamp, reseed: r.reseed };
}

/** Byte shares of the three logs, as the measurement split them. */
export const SHARES = { "audit.jsonl": 0.6, "deployments.jsonl": 0.3, "alerts.jsonl": 0.1 };

/** Append about `bytes` of lines to each log by SHARES; returns the bytes written per file. */
export function appendLogs(contextDir, gen, context, bytes) {
  const written = {};
  for (const [file, share] of Object.entries(SHARES)) {
    const make =
      file === "audit.jsonl" ? gen.audit : file === "deployments.jsonl" ? gen.deployment : gen.alert;
    const fd = openSync(join(contextDir, "events", file), "a", 0o600);
    const target = Math.round(bytes * share);
    // Lines encoded straight into one reused buffer: arrays of strings joined per batch kept the
    // garbage collector busy for a third of the time.
    const out = Buffer.allocUnsafe(8 << 20);
    let used = 0;
    let n = 0;
    while (n < target) {
      const line = `${JSON.stringify(make(context))}\n`;
      if (used + line.length * 3 > out.length) {
        writeSync(fd, out, 0, used);
        used = 0;
      }
      const len = out.write(line, used);
      used += len;
      n += len;
    }
    if (used) writeSync(fd, out, 0, used);
    closeSync(fd);
    written[file] = n;
  }
  return written;
}

const json = (v) => `${JSON.stringify(v, null, 2)}\n`;

/** One context as `si paas` lays it out: the protected JSON files, the three logs, an empty vault. */
export function writeContext(stateRoot, context, { logBytes, shape = "mixed", seed = 1 }) {
  const dir = join(stateRoot, "contexts", context);
  for (const sub of ["events", "cache", "vault", "releases", "addons", "webhooks", "alerts"])
    mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
  const created = "2026-11-01T08:00:00Z";
  const w = (p, v) => writeFileSync(join(dir, p), json(v), { mode: 0o600 });
  w("config.json", { name: context, type: "internal-dogfood", created_at: created, updated_at: created });
  w("targets.json", {
    current_target: "edge-1",
    targets: TARGETS.map((name, i) => ({
      name,
      host: `10.0.${i}.${10 + i}`,
      port: 22,
      user: "deploy",
      auth_method: "ssh-key",
      labels: ["role=" + (i % 2 ? "app" : "edge")],
      created_at: created,
    })),
  });
  w("deployments.json", {
    apps: Object.fromEntries(
      APPS.map((a, i) => [
        a,
        {
          current_release: `rel-${i}`,
          current_remote_dir: `/srv/${a}/rel-${i}`,
          history: [`rel-${i}`],
          updated_at: created,
        },
      ]),
    ),
  });
  w("addons.json", { apps: {} });
  w("bluegreen.json", {
    apps: { api: { targets: { "edge-1": { active_slot: "blue", updated_at: created } } } },
  });
  w("webhooks/mappings.json", {
    mappings: [{ provider: "github", repo: "example/api", branch: "main", app: "api", created_at: created }],
  });
  w("alerts/policy.json", { default_channel: "ops", severity: { critical: "oncall" }, updated_at: created });
  writeFileSync(join(dir, "vault", "secrets.env"), "# si-vault:v2\n", { mode: 0o600 });
  const gen = makeWriter(seed, shape);
  appendLogs(dir, gen, context, logBytes);
  return { dir, gen };
}
