/**
 * Snapshot ids are the policy's UTC timestamp, YYYYMMDDTHHMMSSZ, so our snapshots and those made
 * by the reference shell flow sit side by side. A second snapshot within the same second gets
 * a "-N" suffix rather than overwriting or waiting.
 */
const ID = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:-(\d{1,4}))?$/;

export function formatSnapshotId(time: Date, sequence = 0): string {
  const iso = time.toISOString(); // 2026-11-24T17:50:32.123Z
  const base = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return sequence > 0 ? `${base}-${sequence}` : base;
}

export function parseSnapshotId(id: string): { time: Date; sequence: number } | null {
  const m = ID.exec(id);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, seq] = m;
  const time = new Date(Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!));
  if (Number.isNaN(time.getTime())) return null;
  return { time, sequence: seq ? Number(seq) : 0 };
}

export function isSnapshotId(id: string): boolean {
  return parseSnapshotId(id) !== null;
}

/** Oldest first; same second ordered by sequence. */
export function compareSnapshotIds(a: string, b: string): number {
  const pa = parseSnapshotId(a);
  const pb = parseSnapshotId(b);
  if (!pa || !pb) return a < b ? -1 : a > b ? 1 : 0;
  return pa.time.getTime() - pb.time.getTime() || pa.sequence - pb.sequence;
}
