import { z } from "zod";

/**
 * The shapes of si paas's state files (reference §2). si re-serialises known fields only, so
 * unknown fields are tolerated here (loose objects); wrong types of known fields are not.
 */
const str = z.string();
const opt = <T extends z.ZodType>(t: T) => t.optional().nullable();

export const ConfigShape = z.looseObject({
  name: str,
  type: opt(str),
  state_root: opt(str),
  vault_file: opt(str),
  created_at: opt(str),
  updated_at: opt(str),
});

const Target = z.looseObject({
  name: str,
  host: str,
  port: opt(z.number().int()),
  user: opt(str),
  auth_method: opt(str),
  labels: opt(z.array(str)),
  ingress_provider: opt(str),
  ingress_domain: opt(str),
  ingress_lb_mode: opt(z.enum(["dns", "l4", ""])),
  ingress_acme_email: opt(str),
  created_at: opt(str),
  updated_at: opt(str),
});
export const TargetsShape = z.looseObject({ current_target: opt(str), targets: opt(z.array(Target)) });

export const DeploymentsShape = z.looseObject({
  apps: opt(
    z.record(
      str,
      z.looseObject({
        current_release: opt(str),
        current_remote_dir: opt(str),
        history: opt(z.array(str)),
        updated_at: opt(str),
      }),
    ),
  ),
});

const Addon = z.looseObject({
  app: opt(str),
  name: str,
  pack: opt(str),
  class: opt(str),
  service: opt(str),
  version: opt(str),
  merge_strategy: opt(str),
  fragment_path: opt(str),
  vars: opt(z.record(str, str)),
  updated_at: opt(str),
});
export const AddonsShape = z.looseObject({ apps: opt(z.record(str, z.array(Addon))) });

export const BluegreenShape = z.looseObject({
  apps: opt(
    z.record(
      str,
      z.looseObject({
        targets: opt(
          z.record(
            str,
            z.looseObject({ active_slot: opt(str), slots: opt(z.record(str, str)), updated_at: opt(str) }),
          ),
        ),
      }),
    ),
  ),
});

const Mapping = z.looseObject({
  provider: str,
  repo: str,
  branch: str,
  app: str,
  compose_file: opt(str),
  targets: opt(str),
  strategy: opt(str),
  max_parallel: opt(z.number().int()),
  continue_on_error: opt(z.boolean()),
  apply: opt(z.boolean()),
  remote_dir: opt(str),
  allow_untrusted_vault: opt(z.boolean()),
  created_at: opt(str),
  updated_at: opt(str),
});
export const MappingsShape = z.looseObject({ mappings: z.array(Mapping).nullable() });

export const AlertPolicyShape = z.looseObject({
  default_channel: str,
  severity: opt(z.record(str, str)),
  updated_at: str,
});

export const STATE_FILE_SHAPES: Record<string, z.ZodType> = {
  "config.json": ConfigShape,
  "targets.json": TargetsShape,
  "deployments.json": DeploymentsShape,
  "addons.json": AddonsShape,
  "bluegreen.json": BluegreenShape,
  "webhooks/mappings.json": MappingsShape,
  "alerts/policy.json": AlertPolicyShape,
};

export const CONTEXT_TYPES = ["internal-dogfood", "oss-demo", "customer"] as const;
