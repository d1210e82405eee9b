import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { UsageError } from "../errors.js";
import type { ObjectStorage } from "./storage.js";

/**
 * The fleet seen from the bucket alone: each host writes `status/<host>.json` after its tick (only
 * that host writes that key, so a plain PUT is safe), and anyone reading the bucket sees every
 * host's contexts without reaching the hosts. A host whose status object is older than
 * `staleAfterMs` on the server's clock (Last-Modified against the Date of a fresh answer) is an
 * alert: it stopped ticking, or cannot reach the bucket.
 */
export interface HostContextStatus {
  context: string;
  ok: boolean;
  /** the newest snapshot this host committed for the context */
  lastSnapshot: { id: string; kind: string } | null;
  error: { code: string | null; message: string } | null;
}

export interface HostStatus {
  host: string;
  /** the host's own clock at the end of its tick, for people; staleness uses the server's */
  reportedAt: string;
  contexts: HostContextStatus[];
}

export interface FleetHost extends HostStatus {
  /** when the bucket last received this host's status (server time) */
  receivedAt: string | null;
  ageMs: number | null;
  stale: boolean;
}

export interface FleetStatus {
  /** the server's time of the reading */
  at: string;
  staleAfterMs: number;
  hosts: FleetHost[];
  alerts: string[];
}

/** Production default: two missed hourly ticks. */
export const DEFAULT_HOST_STALE_AFTER_MS = 2 * 3_600_000 + 15 * 60_000;

const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const statusKey = (host: string) => `status/${host}.json`;

export async function writeHostStatus(storage: ObjectStorage, status: HostStatus): Promise<void> {
  if (!HOST_NAME.test(status.host))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      `host name ${JSON.stringify(status.host)} cannot name a status object`,
      {
        remediation: "Name the host with letters, digits, '.', '_' and '-' (its short hostname).",
        stage: "status",
      },
    );
  const body = Buffer.from(`${JSON.stringify(status)}\n`);
  await storage.put(statusKey(status.host), Readable.from([body]), {
    sha256: createHash("sha256").update(body).digest("hex"),
    size: body.length,
  });
}

export async function readFleetStatus(
  storage: ObjectStorage,
  options: {
    staleAfterMs?: number;
    /** the clock for a driver that cannot tell the server's time (the caller's, as everywhere in core) */
    clock?: () => Date;
  } = {},
): Promise<FleetStatus> {
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_HOST_STALE_AFTER_MS;
  const now = storage.serverTime
    ? await storage.serverTime()
    : (options.clock ?? (() => new Date(Number.NaN)))();
  if (Number.isNaN(now.getTime()))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "readFleetStatus needs a clock for a driver without the server's time",
      {
        remediation: "Pass options.clock (core takes the clock as a parameter).",
        stage: "arguments",
      },
    );
  const hosts: FleetHost[] = [];
  const alerts: string[] = [];
  for await (const o of storage.list("status/", { shallow: true, keysOnly: true })) {
    if (!o.key.endsWith(".json")) continue;
    const chunks: Buffer[] = [];
    for await (const c of await storage.get(o.key)) chunks.push(c as Buffer);
    let reported: HostStatus;
    try {
      reported = JSON.parse(Buffer.concat(chunks).toString("utf8")) as HostStatus;
    } catch {
      alerts.push(
        `${storage.locate(o.key)} is not a host status (not JSON): a host wrote it half, or something else did`,
      );
      continue;
    }
    const ageMs = o.lastModified ? now.getTime() - o.lastModified.getTime() : null;
    const stale = ageMs === null || ageMs > staleAfterMs;
    hosts.push({
      host: reported.host,
      reportedAt: reported.reportedAt,
      contexts: reported.contexts ?? [],
      receivedAt: o.lastModified?.toISOString() ?? null,
      ageMs,
      stale,
    });
    if (stale)
      alerts.push(
        `host ${reported.host} last reported ${ageMs === null ? "at an unknown time" : `${Math.round(ageMs / 60_000)} min ago`} (server time; stale after ${Math.round(staleAfterMs / 60_000)} min): it stopped ticking or cannot reach the bucket`,
      );
    for (const c of reported.contexts ?? [])
      if (!c.ok)
        alerts.push(
          `host ${reported.host}, context ${c.context}: last tick failed (${c.error?.code ?? "error"})`,
        );
  }
  return {
    at: now.toISOString(),
    staleAfterMs,
    hosts: hosts.sort((a, b) => a.host.localeCompare(b.host)),
    alerts,
  };
}
