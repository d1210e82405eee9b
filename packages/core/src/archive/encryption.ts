import type { Duplex } from "node:stream";

/**
 * The seam for encryption at rest: the archive stream passes through `encrypt()` before it is
 * hashed and written, so the checksum covers what is on disk and anyone can check it without a key.
 */
export interface ArtifactEncryptor {
  type: "age";
  recipients: string[];
  encrypt(): Duplex;
}

export interface ArtifactDecryptor {
  decrypt(): Duplex;
  /** the file the identities came from, so core can refuse one inside a work tree or the backup root */
  identityFile?: string;
}
