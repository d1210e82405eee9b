import type { Runtime } from "../runtime.js";
import { humanBytes } from "./text.js";

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export interface ProgressBar {
  /** `total` null when unknown: then bytes and rate only */
  update(done: number, total: number | null): void;
  /** success: draw the finished bar at 100% and keep it; failure: clear the line */
  done(success?: boolean): void;
}

/**
 * A progress line on stderr, only when stderr is a terminal (never in cron logs or under --json):
 * percent, bytes of the total, rate and time left; throttled to ten redraws a second.
 */
export function progressBar(rt: Runtime, label: string, clock: () => number = Date.now): ProgressBar {
  const started = clock();
  let last = 0;
  let drawn = false;
  let lastTotal: number | null = null;
  let lastDone = 0;
  const draw = (done: number, total: number | null, final: boolean) => {
    const elapsed = Math.max(0.001, (clock() - started) / 1000);
    const rate = done / elapsed;
    const width = 24;
    if (total && total > 0) {
      const ratio = final ? 1 : Math.min(1, done / total);
      const filled = Math.round(ratio * width);
      const left = final
        ? `done in ${duration(elapsed)}`
        : `${duration((total - done) / Math.max(rate, 1))} left`;
      rt.progress(
        `\r\u001b[2K${label} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${humanBytes(final ? total : done)} of ${humanBytes(total)}, ${humanBytes(rate)}/s, ${left}`,
      );
    } else {
      rt.progress(
        `\r\u001b[2K${label} ${humanBytes(done)}, ${humanBytes(rate)}/s${final ? `, done in ${duration(elapsed)}` : ""}`,
      );
    }
    drawn = true;
  };
  return {
    update(done, total) {
      lastDone = done;
      lastTotal = total;
      if (!rt.stderrIsTTY) return;
      const now = clock();
      if (now - last < 100) return;
      last = now;
      draw(done, total, false);
    },
    done(success = false) {
      if (!rt.stderrIsTTY) return;
      if (success && (drawn || lastDone > 0)) {
        draw(lastDone, lastTotal, true);
        rt.progress("\n");
      } else if (drawn) rt.progress("\r\u001b[2K");
      drawn = false;
    },
  };
}
