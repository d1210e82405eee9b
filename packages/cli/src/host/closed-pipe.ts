/**
 * The reader of our output went away (`paas-backup offsite list | head -1`): a closed pipe is how
 * such a run ends, not a failure. Node reports it as EPIPE on a write (or on the stream, once it
 * was destroyed by the first one).
 */
export function isClosedPipe(err: unknown): boolean {
  const seen = new Set<unknown>();
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined;
    e && typeof e === "object" && !seen.has(e);
    e = e.cause as typeof e
  ) {
    seen.add(e);
    // Only our own output going away counts: an EPIPE from any other pipe (a child process, a
    // socket) is a failure like any other, and must never turn into a quiet exit 0.
    if ((e.code === "EPIPE" || e.code === "ERR_STREAM_DESTROYED") && outputClosed()) return true;
  }
  return false;
}

function outputClosed(): boolean {
  return stdoutClosed || process.stdout.destroyed || process.stderr.destroyed;
}

/** set once stdout or stderr reported its reader gone */
let stdoutClosed = false;

/**
 * One place for every command: when stdout's reader closes the pipe, later writes are dropped and
 * the run ends quietly with its own exit code (0 when it had nothing else to report), never with
 * a stack trace or PAAS_BACKUP_UNEXPECTED. stderr the same (`2>&1 | head`).
 */
export function endQuietlyOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE" || err.code === "ERR_STREAM_DESTROYED") {
        stdoutClosed = true;
        return;
      }
      throw err;
    });
  }
}
