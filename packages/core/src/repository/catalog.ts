/**
 * `@paas-backup/core/catalog`: deprecated, kept for callers of the README's earlier listing entry.
 * It is the repository's entry (`@paas-backup/core/repository`, which loads no archiver, restorer,
 * age, S3 driver or zod) plus the names below the line, which came from other folders when this
 * was a hand-kept subset of the root: import them from the entry each note names.
 */
export * from "./index.js";

import * as contextName from "../policy/context.js";
import * as paths from "../util/paths.js";
import * as manifestIo from "../manifest/io.js";
import * as manifestFormat from "../manifest/format.js";

/** @deprecated import from "@paas-backup/core/policy" */
export const validateContextName = contextName.validateContextName;
/** @deprecated import from "@paas-backup/core/policy" */
export const contextDir = paths.contextDir;
/** @deprecated import from "@paas-backup/core/policy" */
export const contextsDir = paths.contextsDir;
/** @deprecated import from "@paas-backup/core/manifest" */
export const parseManifest = manifestIo.parseManifest;
/** @deprecated import from "@paas-backup/core/manifest" */
export const canonicalJson = manifestFormat.canonicalJson;
/** @deprecated import from "@paas-backup/core/manifest" */
export const MANIFEST_FORMAT = manifestFormat.MANIFEST_FORMAT;
