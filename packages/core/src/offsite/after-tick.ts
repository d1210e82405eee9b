import type { FileSystem } from "../fs/types.js";
import type { ContextLockOptions } from "../context/session.js";
import { pushOffsite, type PushResult } from "./push.js";
import { pruneOffsite, type OffsitePruneResult } from "./prune.js";
import type { OffsiteTarget } from "./types.js";

/** One target's part of a tick: the push, then the target's retention. */
export type TickOffsiteResult = PushResult & { prune: OffsitePruneResult };

/**
 * What `tick` does offsite for one context once its snapshot is taken and pruned (policy §4.4):
 * push every full not yet at each target, then apply that target's retention, so the target
 * holds the policy's set and never grows without bound (issue 20 §2). The CLI's tick and an SDK
 * caller's `afterEach` are this call. A push that fails stops before the prune of that target.
 */
export async function offsiteAfterTick(
  options: {
    fs: FileSystem;
    backupRoot: string;
    context: string;
    targets: readonly OffsiteTarget[];
    clock: () => Date;
    host?: string | null;
  } & ContextLockOptions,
): Promise<TickOffsiteResult[]> {
  const out: TickOffsiteResult[] = [];
  for (const target of options.targets) {
    const push = await pushOffsite({ ...options, target });
    const prune = await pruneOffsite({ ...options, target });
    out.push({ ...push, prune });
  }
  return out;
}
