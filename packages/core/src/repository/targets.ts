import type { FileSystem } from "../fs/types.js";
import { UsageError } from "../errors.js";
import { LocalStorage } from "./drivers/local.js";
import { assertOutsideWorkTree } from "../policy/work-tree.js";
import { parseTargetUrl, type ObjectStorage, type TargetSpec } from "./storage.js";

/** What opening a target may need besides its URL; credentials are never among them. */
export interface OpenTargetOptions {
  fs: FileSystem;
  /** S3-compatible servers: the endpoint URL, region and path-style addressing */
  endpoint?: string | undefined;
  region?: string | undefined;
  pathStyle?: boolean | undefined;
  /** multipart part size in bytes (S3) */
  partSize?: number | undefined;
  /** told once per request a remote driver sends, by operation (e.g. PutObject): for measuring */
  onRequest?: ((operation: string) => void) | undefined;
}

export type StorageDriverFactory = (spec: TargetSpec, options: OpenTargetOptions) => Promise<ObjectStorage>;

/**
 * The target URL → driver registry. file:// is built in; other schemes come from a package
 * (s3:// from @paas-backup/s3) that is registered by whoever depends on it, or loaded by name
 * (`@paas-backup/<scheme>`, exporting `storageDriver`) the first time such a target is opened,
 * so core itself installs without any cloud SDK.
 */
type Registration = { factory: StorageDriverFactory } | { load: () => Promise<StorageDriverFactory> };

const registry = new Map<string, Registration>([
  [
    "file",
    {
      factory: async (spec, options) => {
        await assertOutsideWorkTree(
          options.fs,
          spec.location,
          "offsite target",
          "Point the offsite target at a folder outside any repository (policy §7.1).",
        );
        return new LocalStorage(options.fs, spec.location);
      },
    },
  ],
]);

/** Register a driver for a scheme: a factory, or a loader that imports one when first needed. */
export function registerStorageDriver(scheme: string, driver: Registration): void {
  registry.set(scheme, driver);
}

async function factoryFor(scheme: string): Promise<StorageDriverFactory> {
  const registered = registry.get(scheme);
  if (registered && "factory" in registered) return registered.factory;
  const name = `@paas-backup/${scheme}`;
  try {
    const factory = registered
      ? await registered.load()
      : ((await import(name)) as { storageDriver?: StorageDriverFactory }).storageDriver;
    if (typeof factory !== "function") throw new TypeError(`${name} exports no storageDriver`);
    registry.set(scheme, { factory });
    return factory;
  } catch (err) {
    throw new UsageError(
      "PAAS_BACKUP_PACKAGE_MISSING",
      `${scheme}:// targets need the package ${name}, which could not be loaded: ${(err as Error).message}`,
      {
        remediation: `Install it beside @paas-backup/core (npm install ${name}), or register a driver with registerStorageDriver("${scheme}", ...).`,
        stage: "arguments",
        cause: err,
      },
    );
  }
}

/** Open the storage a target URL names (file:///abs/path, s3://bucket/prefix). */
export async function openTarget(url: string, options: OpenTargetOptions): Promise<ObjectStorage> {
  const spec = parseTargetUrl(url);
  return (await factoryFor(spec.kind))(spec, options);
}
