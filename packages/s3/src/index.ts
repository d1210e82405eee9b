/**
 * @paas-backup/s3: the S3 storage driver. Core opens s3:// targets through this package's
 * `storageDriver`: registered by whoever depends on it (the CLI, lazily), or loaded by name.
 */
import type { OpenTargetOptions, StorageDriverFactory, TargetSpec } from "@paas-backup/core/repository";
import { S3Storage } from "./s3-storage.js";

export { S3Storage, type S3StorageOptions } from "./s3-storage.js";

/** Credentials come from the AWS SDK's default chain (environment, shared files, instance roles), never from options. */
export const storageDriver: StorageDriverFactory = async (spec: TargetSpec, options: OpenTargetOptions) =>
  new S3Storage({
    bucket: spec.location,
    prefix: spec.prefix,
    url: spec.url,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.region ? { region: options.region } : {}),
    pathStyle: options.pathStyle === true,
    ...(options.partSize ? { partSize: options.partSize } : {}),
    ...(options.onRequest ? { onRequest: options.onRequest } : {}),
  });
