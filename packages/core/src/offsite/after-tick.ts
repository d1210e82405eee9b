import type { FileSystem } from "../fs/types.js";
import type { ContextLockOptions } from "../context/session.js";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import { noRecipientRefusal, type PushSigner } from "./encrypt-on-push.js";
import { pushOffsite, type PushResult } from "./push.js";
import { pruneOffsite, type OffsitePruneResult } from "./prune.js";
import type { OffsiteTarget } from "./types.js";
import type { ObjectStorage } from "../repository/storage.js";

/** One target's part of a tick: the push, then the target's retention. */
export type TickOffsiteResult = PushResult & { prune: OffsitePruneResult };

/**
 * What `tick` does offsite for one context once its snapshot is taken and pruned (policy §4.4):
 * push every full not yet at each target, then apply that target's retention, so the target
 * holds the policy's set and never grows without bound (issue 20 §2). The CLI's tick and an SDK
 * caller's `afterEach` are this call. A push that fails stops before the prune of that target.
 * A plaintext snapshot refused for want of a recipient (issue 21 §5) does not stop the other
 * targets nor the prune: the refusal (PAAS_BACKUP_OFFSITE_NO_RECIPIENT) is thrown after them.
 */
export async function offsiteAfterTick(
  options: {
    fs: FileSystem;
    backupRoot: string;
    context: string;
    targets: readonly OffsiteTarget[];
    clock: () => Date;
    host?: string | null;
    /** as pushOffsite's: the repository, where the push records are, the encryption scratch */
    repository?: ObjectStorage;
    records?: ObjectStorage;
    scratch?: string;
    encryptor?: ArtifactEncryptor | (() => Promise<ArtifactEncryptor | undefined>) | undefined;
    copySigner?: PushSigner | (() => Promise<PushSigner | undefined>) | undefined;
  } & ContextLockOptions,
): Promise<TickOffsiteResult[]> {
  const out: TickOffsiteResult[] = [];
  for (const target of options.targets) {
    const push = await pushOffsite({ ...options, target, refusal: "report" });
    const prune = await pruneOffsite({ ...options, target });
    out.push({ ...push, prune });
  }
  const refused = out.find((r) => r.refused.length > 0);
  if (refused) throw noRecipientRefusal(refused.context, refused.target, refused.refused);
  return out;
}
