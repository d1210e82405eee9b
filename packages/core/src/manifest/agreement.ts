import { canonicalJson } from "./format.js";
import type { Manifest } from "./schema.js";

/**
 * The sidecar manifest and the one inside the artifact describe the same snapshot. They may
 * differ only where the sidecar knows more than the artifact can (issue 24 §3): its own
 * `payloadSha256` (the hash of the bytes that carry the inner manifest), the `rotations` that
 * re-encrypted it, the recipients in force now (the inner manifest keeps those at creation), and
 * `parent.sha256`, which a rotation of the parent updates. Everything else, files and hashes
 * included, must be equal.
 */
export function sidecarAgrees(embedded: Manifest, sidecar: Manifest): boolean {
  return canonicalJson(comparable(embedded)) === canonicalJson(comparable(sidecar));
}

function comparable(m: Manifest): unknown {
  const { payloadSha256: _payload, rotations: _rotations, ...rest } = m;
  return {
    ...rest,
    encryption: { type: m.encryption.type },
    ...(m.parent ? { parent: { ...m.parent, sha256: undefined } } : {}),
  };
}
