import type { Runtime } from "./runtime.js";
import type { ExitName } from "./exit-codes.js";

export type Handler = (rt: Runtime, flags: Record<string, unknown>, args: string[]) => Promise<number>;

export interface FlagSpec {
  /** commander syntax: "--context <name>", "--dry-run", "--recipient <age1...>" */
  flags: string;
  description: string;
  required?: boolean;
  repeatable?: boolean;
  defaultValue?: string;
  /** validates and converts the value; throwing InvalidArgumentError makes it a usage error (exit 2) */
  parse?: (value: string) => unknown;
}

export interface ArgSpec {
  name: string;
  description: string;
  required: boolean;
}

export interface CommandSpec {
  /** ["snapshot"], ["offsite", "push"], ["drill", "status"] */
  path: string[];
  summary: string;
  args?: ArgSpec[];
  flags: FlagSpec[];
  examples: string[];
  /** the exit codes this command can end with (besides 0, which all have) */
  exitCodes: ExitName[];
  /** what `data` (or `checks`) holds under --json: the stable field set */
  json: string;
  /** touches a context: first finish or undo a swap a crash interrupted (crash-safety, issue 9) */
  recover?: boolean;
  /**
   * archives large logs: the secret scanner's worker thread starts while the command loads
   * (true); a function decides once the runtime is made, from the flags and the state root
   * (an incremental, or a full that copies the members of its last full, scans only what was
   * appended: the worker would be started for nothing, and a lane still starts it if a large
   * range comes)
   */
  prestartScanner?: boolean | ((flags: Record<string, unknown>, rt: Runtime) => Promise<boolean>);
  /**
   * works with an s3:// backup root (issue 22): "read" only reads the bucket, "write" takes leases
   * there (the bucket is probed for create-only writes first, once). Other commands refuse such a
   * root with PAAS_BACKUP_REMOTE_ROOT_UNSUPPORTED.
   */
  sharedRoot?: "read" | "write";
  /** writes snapshots: Ctrl-C removes this run's lock and staged files and says "nothing was kept" */
  writesSnapshots?: boolean;
  load: () => Promise<Handler>;
}
