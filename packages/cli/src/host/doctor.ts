import { spawn, spawnSync } from "node:child_process";
import { UsageError } from "@paas-backup/core/errors";
import type { ExternalDoctorResult } from "@paas-backup/core/restore";

/**
 * An external doctor must be runnable before anything changes (issue 10 §3): its first word is
 * looked up as the shell would (builtins, PATH, or a path), and a missing one is a usage error.
 */
export function assertDoctorRunnable(command: string, env: NodeJS.ProcessEnv): void {
  const first = command.trim().split(/\s+/)[0] ?? "";
  const found =
    first !== "" &&
    spawnSync("sh", ["-c", 'command -v -- "$1" >/dev/null 2>&1', "sh", first], { env, stdio: "ignore" })
      .status === 0;
  if (!found) {
    throw new UsageError(
      "PAAS_BACKUP_DOCTOR_NOT_RUNNABLE",
      `--doctor-cmd ${JSON.stringify(command)}: ${JSON.stringify(first)} is not a command that can be run here`,
      {
        remediation:
          "Nothing was changed. Give a doctor that exists on this host, e.g. --doctor-cmd 'si paas doctor --json' with si on PATH.",
        stage: "arguments",
        data: { command: first },
      },
    );
  }
}

/** Run an external doctor (e.g. `si paas doctor --json`) against the state root; ok only on JSON `"ok": true`. */
export function externalDoctorRunner(
  command: string,
  env: NodeJS.ProcessEnv,
): (stateRoot: string) => Promise<ExternalDoctorResult> {
  return (stateRoot) =>
    new Promise((resolve) => {
      const child = spawn("sh", ["-c", command], {
        env: { ...env, SI_PAAS_STATE_ROOT: stateRoot },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (c: Buffer) => {
        if (out.length < 1_000_000) out += c.toString("utf8");
      });
      child.stderr.resume();
      const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
      child.on("error", (err) => {
        clearTimeout(timer);
        resolve({ command, ok: false, exitCode: null, detail: `could not run: ${err.message}` });
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        let parsed: { ok?: unknown } | null = null;
        try {
          parsed = JSON.parse(out) as { ok?: unknown };
        } catch {
          parsed = null;
        }
        const ok = parsed !== null && parsed.ok === true;
        resolve({
          command,
          ok,
          exitCode: code,
          detail:
            parsed === null
              ? `stdout is not JSON (exit ${code})`
              : ok
                ? `ok: true (exit ${code})`
                : `ok: ${JSON.stringify(parsed.ok)} (exit ${code})`,
        });
      });
    });
}
