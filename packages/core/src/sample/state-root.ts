import { randomBytes } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { posix } from "node:path";

const join = posix.join;

export interface PlantedSecret {
  /** path relative to the state root */
  path: string;
  /** a distinct value that must never appear in anything paas-backup writes */
  marker: string;
  /** why paas-backup must not carry it: "excluded" files are skipped, "scanned" ones fail a snapshot */
  how: "excluded" | "scanned";
}

export interface ContextSpec {
  name: string;
  type?: "internal-dogfood" | "oss-demo" | "customer";
  /** approximate bytes of event lines spread over the three logs */
  eventBytes?: number;
  /** add releases/ and cache/ content */
  releases?: number;
  cacheBytes?: number;
  /** omit some protected files (a context may lack them) */
  omit?: string[];
}

export interface StateRootOptions {
  fs: FileSystem;
  root: string;
  contexts?: ContextSpec[];
  /** plant secret files that must never be backed up (default true) */
  plantSecrets?: boolean;
  /** a fixed time for the state's timestamps */
  now?: Date;
  seed?: string;
}

export interface StateRoot {
  stateRoot: string;
  contexts: string[];
  planted: PlantedSecret[];
  /** where each context's files live */
  contextDir(name: string): string;
}

function marker(label: string): string {
  return `PLANTED-${label}-${randomBytes(6).toString("hex")}`;
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** One si event line of each kind, realistic in shape (reference §3). */
export function eventLine(
  kind: "deploy" | "alert" | "audit",
  context: string,
  time: Date,
  i: number,
): string {
  const timestamp = new Date(time.getTime() + i * 1000).toISOString().replace("Z", "123456Z");
  if (kind === "deploy")
    return JSON.stringify({
      timestamp,
      context,
      source: "si paas",
      command: "deploy",
      status: i % 17 === 0 ? "failed" : "succeeded",
      app: `app-${i % 7}`,
      release: `r-${i}`,
      target: `edge-${i % 3}`,
      ...(i % 17 === 0
        ? {
            error_code: "PAAS_DEPLOY_HEALTHCHECK",
            error_stage: "verify",
            error_target: `edge-${i % 3}`,
            error_message: "health check timed out after 30s",
            error_remediation: "Inspect the app logs with si paas logs.",
          }
        : {}),
    });
  if (kind === "alert")
    return JSON.stringify({
      timestamp,
      command: "alert send",
      severity: i % 5 === 0 ? "critical" : "warning",
      status: "sent",
      target: `edge-${i % 3}`,
      message: `disk usage ${60 + (i % 40)}% on edge-${i % 3}`,
      guidance: "Prune old releases.",
      context,
      fields: { channel: "telegram", bot_token: "<redacted>" },
    });
  return JSON.stringify({
    timestamp,
    context,
    source: "audit",
    command: ["deploy", "target list", "events list", "doctor"][i % 4],
    status: i % 23 === 0 ? "failed" : "succeeded",
    mode: "live",
    severity: i % 23 === 0 ? "critical" : "info",
    fields: { app: `app-${i % 7}`, api_token: "<redacted>", request_id: `req-${i}` },
  });
}

/** Append about `bytes` of event lines to a log, in batches so memory stays flat. */
export async function appendEvents(
  fs: FileSystem,
  path: string,
  kind: "deploy" | "alert" | "audit",
  context: string,
  bytes: number,
  start: Date,
  firstIndex = 0,
): Promise<number> {
  let written = 0;
  let i = firstIndex;
  while (written < bytes) {
    const batch: string[] = [];
    let size = 0;
    while (size < 1024 * 1024 && written + size < bytes) {
      const line = `${eventLine(kind, context, start, i++)}\n`;
      batch.push(line);
      size += Buffer.byteLength(line);
    }
    await fs.appendFile(path, batch.join(""), { mode: 0o600 });
    written += size;
  }
  return i;
}

/**
 * Build a realistic si paas state root: contexts with all ten protected files in the shapes of
 * the reference, event logs of the chosen size, releases/ and cache/, and planted secrets
 * (vault/secrets.env, alerts/telegram.json, *.secret, .env, key files) that must never be backed up.
 */
export async function createStateRoot(options: StateRootOptions): Promise<StateRoot> {
  const { fs, root } = options;
  const now = options.now ?? new Date("2026-11-20T10:00:00Z");
  const specs = options.contexts ?? [{ name: "internal-dogfood", eventBytes: 64 * 1024, releases: 2 }];
  const planted: PlantedSecret[] = [];
  await fs.mkdir(join(root, "contexts"), { recursive: true, mode: 0o700 });
  for (const spec of specs) {
    const ctx: SampleContext = {
      fs,
      root,
      spec,
      dir: join(root, "contexts", spec.name),
      now,
      iso: now.toISOString(),
    };
    for (const d of ["", "events", "cache", "vault", "releases", "addons", "webhooks", "alerts"])
      await fs.mkdir(join(ctx.dir, d), { recursive: true, mode: 0o700 });
    const files = { ...settingsFiles(ctx), ...appFiles(ctx) };
    for (const [path, content] of Object.entries(files)) {
      if (spec.omit?.includes(path)) continue;
      await fs.writeFile(join(ctx.dir, path), content, { mode: 0o600 });
    }
    await writeEventLogs(ctx);
    await writeReleasesAndCache(ctx);
    if (options.plantSecrets !== false) planted.push(...(await plantSecrets(ctx)));
  }
  await fs.writeFile(join(root, "current_context"), `${specs[0]?.name ?? "default"}\n`, { mode: 0o600 });
  return {
    stateRoot: root,
    contexts: specs.map((s) => s.name),
    planted,
    contextDir: (name) => join(root, "contexts", name),
  };
}

/** One context being written: where, its spec, and the time its timestamps name. */
interface SampleContext {
  fs: FileSystem;
  root: string;
  spec: ContextSpec;
  dir: string;
  now: Date;
  iso: string;
}

/** The context's own settings and where its targets are: config.json and targets.json. */
function settingsFiles({ spec, root, dir: ctx, iso }: SampleContext): Record<string, string> {
  return {
    "config.json": json({
      name: spec.name,
      type:
        spec.type ??
        (spec.name.startsWith("customer-")
          ? "customer"
          : spec.name === "oss-demo"
            ? "oss-demo"
            : "internal-dogfood"),
      state_root: root,
      vault_file: join(ctx, "vault", "secrets.env"),
      created_at: iso,
      updated_at: iso,
    }),
    "targets.json": json({
      current_target: "edge-0",
      targets: [0, 1, 2].map((i) => ({
        name: `edge-${i}`,
        host: `10.0.0.${10 + i}`,
        port: i === 0 ? 0 : 22,
        user: "deploy",
        auth_method: "ssh-agent",
        labels: ["edge", `zone-${i}`],
        ingress_provider: "traefik",
        ingress_domain: `edge-${i}.example.test`,
        ingress_lb_mode: i === 2 ? "l4" : "dns",
        ingress_acme_email: "ops@example.test",
        created_at: iso,
        updated_at: iso,
      })),
    }),
  };
}

/** What is deployed and how: deployments, add-ons, blue/green slots, webhook mappings, alert policy. */
function appFiles({ iso }: SampleContext): Record<string, string> {
  return {
    "deployments.json": json({
      apps: {
        web: {
          current_release: "r-42",
          current_remote_dir: "/srv/si/web/r-42",
          history: ["r-40", "r-41", "r-42"],
          updated_at: iso,
        },
        worker: { current_release: "r-7", history: ["r-7"], updated_at: iso },
      },
    }),
    "addons.json": json({
      apps: {
        web: [
          {
            app: "web",
            name: "db",
            pack: "postgres",
            class: "database",
            service: "postgres",
            version: "16",
            merge_strategy: "merge",
            fragment_path: "addons/web/db.yaml",
            vars: { POSTGRES_DB: "web", POSTGRES_PASSWORD: "${POSTGRES_PASSWORD}" },
            updated_at: iso,
          },
        ],
      },
    }),
    "bluegreen.json": json({
      apps: {
        web: {
          targets: {
            "edge-0": { active_slot: "blue", slots: { blue: "r-42", green: "r-41" }, updated_at: iso },
          },
        },
      },
    }),
    "webhooks/mappings.json": json({
      mappings: [
        {
          provider: "github",
          repo: "acme/web",
          branch: "main",
          app: "web",
          compose_file: "compose.yaml",
          targets: "edge-0,edge-1",
          strategy: "rolling",
          max_parallel: 2,
          continue_on_error: false,
          apply: true,
          remote_dir: "/srv/si/web",
          allow_untrusted_vault: false,
          created_at: iso,
          updated_at: iso,
        },
      ],
    }),
    "alerts/policy.json": json({
      default_channel: "telegram",
      severity: { critical: "telegram", warning: "telegram" },
      updated_at: iso,
    }),
  };
}

/** The three event logs, about a third of the spec's event bytes each, from a day before `now`. */
async function writeEventLogs({ fs, spec, dir: ctx, now }: SampleContext): Promise<void> {
  const perLog = Math.floor((spec.eventBytes ?? 64 * 1024) / 3);
  const logs: ["deployments.jsonl" | "alerts.jsonl" | "audit.jsonl", "deploy" | "alert" | "audit"][] = [
    ["deployments.jsonl", "deploy"],
    ["alerts.jsonl", "alert"],
    ["audit.jsonl", "audit"],
  ];
  for (const [file, kind] of logs) {
    if (spec.omit?.includes(`events/${file}`)) continue;
    await fs.writeFile(join(ctx, "events", file), "", { mode: 0o600 });
    await appendEvents(
      fs,
      join(ctx, "events", file),
      kind,
      spec.name,
      perLog,
      new Date(now.getTime() - 86_400_000),
    );
  }
}

/** releases/ (what a restore includes on request) and cache/ (what it never needs). */
async function writeReleasesAndCache({ fs, spec, dir: ctx, iso }: SampleContext): Promise<void> {
  for (let r = 0; r < (spec.releases ?? 0); r++) {
    const rel = join(ctx, "releases", `r-${40 + r}`);
    await fs.mkdir(rel, { recursive: true, mode: 0o700 });
    await fs.writeFile(
      join(rel, "compose.yaml"),
      `services:\n  web:\n    image: ghcr.io/acme/web:r-${40 + r}\n    environment:\n      DATABASE_URL: \${DATABASE_URL}\n`,
      { mode: 0o600 },
    );
    await fs.writeFile(join(rel, "release.json"), json({ id: `r-${40 + r}`, app: "web", created_at: iso }), {
      mode: 0o600,
    });
  }
  await fs.writeFile(join(ctx, "cache", "targets.probe.json"), json({ probed_at: iso, targets: 3 }), {
    mode: 0o600,
  });
  if (spec.cacheBytes)
    await fs.writeFile(join(ctx, "cache", "blob.bin"), Buffer.alloc(spec.cacheBytes, 7), { mode: 0o600 });
}

/** Secrets where si keeps them, each with a distinct marker that must never appear in anything paas-backup writes. */
async function plantSecrets({ fs, spec, dir: ctx, iso }: SampleContext): Promise<PlantedSecret[]> {
  const planted: PlantedSecret[] = [];
  const put = async (path: string, content: (m: string) => string, label: string) => {
    const m = marker(label);
    await fs.mkdir(posix.dirname(join(ctx, path)), { recursive: true, mode: 0o700 });
    await fs.writeFile(join(ctx, path), content(m), { mode: 0o600 });
    planted.push({ path: join("contexts", spec.name, path), marker: m, how: "excluded" });
  };
  await put(
    "vault/secrets.env",
    (m) =>
      `# si-vault:v2\n# si-vault:recipient age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\nDB_PASSWORD=encrypted:si:v2:${m}\nPLAIN_TOKEN=${m}-plain\n`,
    "VAULT",
  );
  await put(
    "alerts/telegram.json",
    (m) => json({ bot_token: `123456789:AA${m}`, chat_id: "-100200300", updated_at: iso }),
    "TELEGRAM",
  );
  await put("deploy.secret", (m) => `${m}\n`, "DOTSECRET");
  await put("releases/r-40/.env", (m) => `API_TOKEN=${m}\n`, "DOTENV");
  await put("cache/secrets-export.txt", (m) => `password=${m}\n`, "EXPORT");
  await put(
    "cache/tls.key",
    (m) => `-----BEGIN PRIVATE KEY-----\n${m}\n-----END PRIVATE KEY-----\n`,
    "KEYFILE",
  );
  return planted;
}
