import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

/** How long a ping may take: a monitoring service that hangs must never hold up a backup. */
export const PING_TIMEOUT_MS = 3000;

export interface PingResult {
  event: "start" | "success" | "fail";
  ok: boolean;
  /** status code or failure; never the URL (a healthchecks.io URL is a credential for that check) */
  detail: string;
}

/**
 * healthchecks.io's convention: GET <url>/start before the run, <url> on success, <url>/fail on
 * failure. A ping never throws and never waits longer than PING_TIMEOUT_MS.
 */
export function ping(
  url: string,
  event: PingResult["event"],
  timeoutMs = PING_TIMEOUT_MS,
): Promise<PingResult> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ event, ok, detail });
    };
    let target: URL;
    try {
      target = new URL(url.replace(/\/+$/, "") + (event === "success" ? "" : `/${event}`));
      if (target.protocol !== "http:" && target.protocol !== "https:") throw new Error("not http(s)");
    } catch {
      resolve({ event, ok: false, detail: "ping URL is not an http(s) URL" });
      return;
    }
    const req = (target.protocol === "https:" ? httpsRequest : httpRequest)(
      target,
      { method: "GET", agent: false, headers: { "user-agent": "paas-backup" } },
      (res) => {
        res.resume();
        res.on("end", () => done((res.statusCode ?? 0) < 400, `HTTP ${res.statusCode}`));
        res.on("error", (err) => done(false, err.message));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      done(false, `no answer within ${timeoutMs / 1000} s`);
    }, timeoutMs);
    req.on("error", (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
    req.end();
  });
}
