import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  diffSnapshots,
  dumpSnapshotFile,
  findInSnapshots,
  listSnapshotFiles,
} from "@paas-backup/core/inspect";
import { UsageError } from "@paas-backup/core/errors";
import type { Runtime } from "../runtime.js";
import { humanBytes, table } from "../render/text.js";
import { cleanUpOnInterrupt, registerScratch, removeScratch } from "../host/interrupt.js";
import { printEnvelope } from "../envelope.js";
import { requireContext, requireKnownContext } from "../options/context.js";
import { resolveDecryptor, type KeyFlags } from "../options/keys.js";

/**
 * ls, dump, diff, find: thin over core's snapshot reader (core/src/snapshot/inspect.ts). Nothing
 * here prints file contents except dump, which prints exactly the one file asked for.
 */
interface InspectFlags extends KeyFlags {
  context?: string;
  snapshot?: string;
  long?: boolean;
  live?: boolean;
  maxExpansion?: number;
}

/** An s3:// root: the snapshots committed in the bucket, read from there; otherwise the folder. */
async function repositoryFor(rt: Runtime, context: string) {
  return rt.shared
    ? { repository: await (await import("../host/shared-root.js")).committedView(rt.shared, context) }
    : {};
}

async function common(rt: Runtime, flags: InspectFlags) {
  const context = requireContext(flags.context);
  await requireKnownContext(rt, context);
  const decryptor = await resolveDecryptor(rt, flags);
  return {
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    ...(await repositoryFor(rt, context)),
    context,
    // latest as restore resolves it: never a snapshot from the future (core warns when it passes one)
    clock: rt.clock,
    ...(decryptor ? { decryptor } : {}),
    ...(flags.maxExpansion ? { maxExpansion: flags.maxExpansion } : {}),
  };
}

/** The warning restore gives, on stderr (stdout carries the listing, the diff or dump's bytes). */
function warn(warnings: readonly string[]): void {
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
}

/**
 * A private scratch folder for replaying a chain (0700 under the temp dir), removed with its
 * parent when the command ends, however it ends (Ctrl-C included): core removes only "chain".
 */
async function withScratch<T>(command: string, use: (scratch: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "paas-backup-inspect-"));
  registerScratch(dir);
  cleanUpOnInterrupt(command, null);
  try {
    return await use(join(dir, "chain"));
  } finally {
    removeScratch(dir);
  }
}

export async function lsCommand(rt: Runtime, flags: InspectFlags): Promise<number> {
  const opts = await common(rt, flags);
  const { snapshot, files, warnings } = await listSnapshotFiles({
    ...opts,
    snapshot: flags.snapshot ?? "latest",
  });
  warn(warnings);
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      context: opts.context,
      mode: "live",
      snapshot: snapshot.id,
      ...(warnings.length ? { warnings } : {}),
      data: files,
    });
  else {
    rt.write(
      `snapshot ${snapshot.id} (${snapshot.kind}${snapshot.parent ? ` on ${snapshot.parent.id}` : ""}), ${files.length} files\n`,
    );
    if (flags.long) {
      rt.write(
        table([
          ["MODE", "SIZE", "STORED", "PATH"],
          ...files.map((f) => [
            f.mode === null ? "-" : f.mode.toString(8).padStart(4, "0"),
            String(f.size),
            f.stored,
            f.path,
          ]),
        ]),
      );
      // The digests below the table, in sha256sum's format (check a dumped or restored copy with sha256sum -c).
      rt.write(`\nsha256:\n${files.map((f) => `${f.sha256}  ${f.path}\n`).join("")}`);
    } else {
      rt.write(table([["SIZE", "PATH"], ...files.map((f) => [humanBytes(f.size), f.path])]));
    }
  }
  return 0;
}

export async function dumpCommand(rt: Runtime, flags: InspectFlags, args: string[]): Promise<number> {
  if (rt.json) {
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      "dump writes the file's bytes to stdout and takes no --json",
      {
        remediation: "Drop --json; use `paas-backup --json ls` for the file's size and sha256.",
        stage: "arguments",
      },
    );
  }
  const opts = await common(rt, flags);
  const path = args[0]!;
  const { warnings } = await withScratch("dump", (scratch) =>
    dumpSnapshotFile({
      ...opts,
      snapshot: flags.snapshot ?? "latest",
      path,
      scratch,
      out: process.stdout,
    }),
  );
  warn(warnings);
  return 0;
}

export async function diffCommand(rt: Runtime, flags: InspectFlags, args: string[]): Promise<number> {
  const opts = await common(rt, flags);
  const [from, second] = args;
  if (flags.live && second) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "diff takes a second snapshot or --live, not both", {
      remediation: "Compare two snapshots (ID1 ID2) or one snapshot with the live context (ID1 --live).",
      stage: "arguments",
    });
  }
  const to = flags.live ? "live" : (second ?? "latest");
  const result = await withScratch("diff", (scratch) =>
    diffSnapshots({
      ...opts,
      stateRoot: rt.stateRoot,
      from: from!,
      to,
      scratch,
    }),
  );
  warn(result.warnings);
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      context: opts.context,
      mode: "live",
      from: result.from,
      to: result.to,
      unchanged: result.unchanged,
      ...(result.warnings.length ? { warnings: result.warnings } : {}),
      data: result.entries,
    });
  else {
    rt.write(
      `${result.from} -> ${result.to}: ${result.entries.filter((e) => e.change === "added").length} added, ${result.entries.filter((e) => e.change === "changed").length} changed, ${result.entries.filter((e) => e.change === "removed").length} removed, ${result.unchanged} unchanged\n`,
    );
    const mark = { added: "+", changed: "M", removed: "-" } as const;
    for (const e of result.entries) {
      const sizes =
        e.change === "changed"
          ? ` (${humanBytes(e.before!.size)} -> ${humanBytes(e.after!.size)}${e.appendedLines !== null ? `, ${e.appendedLines} lines appended` : ""})`
          : "";
      rt.write(`${mark[e.change]}  ${e.path}${sizes}\n`);
    }
  }
  return 0;
}

export async function findCommand(rt: Runtime, flags: InspectFlags, args: string[]): Promise<number> {
  const context = requireContext(flags.context);
  await requireKnownContext(rt, context);
  const found = await findInSnapshots({
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    ...(await repositoryFor(rt, context)),
    context,
    path: args[0]!,
  });
  if (rt.json) printEnvelope(rt, { ok: true, context, mode: "live", path: args[0], data: found });
  else if (found.length === 0) rt.write(`${args[0]} is in no snapshot of ${context}\n`);
  else
    rt.write(
      table([
        ["SNAPSHOT", "KIND", "SIZE", "SHA256"],
        ...found.map((f) => [f.snapshot, f.kind, String(f.size), f.sha256]),
      ]),
    );
  return 0;
}
