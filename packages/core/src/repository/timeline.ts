/**
 * Snapshots "from the future" (issue 20 §2): a snapshot whose time is ahead of the clock by more
 * than a few minutes was taken while the clock was wrong (it jumped forward, or it has since been
 * corrected backwards). Such a snapshot is kept, listed and restorable by its id, but it is never
 * `latest`, never the newest for the schedule or for retention, and never the age of the newest:
 * trusting its date would stop hourly incrementals, hide a missed daily full, and make prune
 * delete the real newest. A few minutes of slack absorb clocks that differ slightly between hosts.
 */
export const FUTURE_SKEW_MS = 5 * 60_000;

export function isFromTheFuture(time: Date, now: Date): boolean {
  return time.getTime() > now.getTime() + FUTURE_SKEW_MS;
}

/** The snapshots whose time the clock has reached (oldest first, as given). */
export function presentSnapshots<T extends { time: Date }>(all: readonly T[], now: Date): T[] {
  return all.filter((s) => !isFromTheFuture(s.time, now));
}

/** The snapshots ahead of the clock. */
export function futureSnapshots<T extends { time: Date }>(all: readonly T[], now: Date): T[] {
  return all.filter((s) => isFromTheFuture(s.time, now));
}

/**
 * What every reader that resolves `latest` (restore, ls, dump, diff, verify, restore --from-offsite)
 * says when it passed over snapshots from the future: the same words everywhere, so an operator
 * who sees one knows the others chose the same way. null when none was passed over.
 */
export function futureSkippedWarning(
  skipped: readonly { id: string }[],
  latest: string,
  now: Date,
): string | null {
  if (skipped.length === 0) return null;
  const ids = skipped.map((s) => s.id).join(", ");
  return `latest is ${latest}: ${skipped.length} newer snapshot(s) are from the future (ahead of the clock ${now.toISOString()} by more than ${FUTURE_SKEW_MS / 60_000} minutes) and never latest: ${ids}; check the host's clock, or name one with --snapshot <id>`;
}
