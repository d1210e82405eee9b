import { randomUUID } from "node:crypto";
import type { SnapshotRef } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { expectedChecksum } from "../repository/checksum.js";
import { checkChainToExtend } from "../repository/chain-check.js";
import { presentSnapshots } from "../repository/timeline.js";

export type SnapshotKind = "full" | "incremental";

export type ParentRef = SnapshotRef & { sha256: string };

export interface ChosenParent {
  /** the snapshot an incremental extends; null for a full */
  parent: ParentRef | null;
  kind: SnapshotKind;
  /** set when an incremental was asked for but a full is taken, and why */
  promotedToFull?: string;
}

/**
 * Step 1: which snapshot, if any, this one extends. An incremental extends the context's newest
 * snapshot only when that one has a manifest with the same --include, a readable checksum file,
 * and a chain that verifies; otherwise a full is taken and the reason is given. The newest is the
 * newest the clock has reached: a snapshot from the future is never extended.
 */
export async function chooseParent(args: {
  existing: readonly SnapshotRef[];
  /** where the verified-chain cache is kept (CreateSnapshotOptions.chainCache) */
  chainCache?: ObjectStorage | undefined;
  requested: SnapshotKind;
  include: readonly string[];
  now: Date;
}): Promise<ChosenParent> {
  const { existing, requested, include, now } = args;
  if (requested !== "incremental") return { parent: null, kind: "full" };
  const present = presentSnapshots(existing, now);
  const newest = present[present.length - 1];
  const full = (promotedToFull: string): ChosenParent => ({ parent: null, kind: "full", promotedToFull });
  if (!newest)
    return full(
      present.length < existing.length
        ? "every earlier snapshot of this context is from the future (ahead of the clock)"
        : "no earlier snapshot of this context",
    );
  if (!newest.manifest) return full(`parent ${newest.id} has no manifest (made by hand)`);
  if (newest.manifest.include.join(",") !== include.join(","))
    return full(`parent ${newest.id} covers --include ${newest.manifest.include.join(",") || "(none)"}`);
  const sha = await expectedChecksum(newest);
  if (!sha) return full(`parent ${newest.id} has no readable checksum file`);
  // the verified-chain cache is in the repository, beside the snapshots, unless a host cache is given
  const chainProblem = await checkChainToExtend(
    newest,
    existing,
    randomUUID().slice(0, 8),
    now,
    args.chainCache,
  );
  if (chainProblem) return full(`the chain it would extend does not verify: ${chainProblem}`);
  return { parent: { ...newest, sha256: sha } as ParentRef, kind: "incremental" };
}
