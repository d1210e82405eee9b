import { Readable } from "node:stream";
import type { SigningKey } from "../signing/sshsig.js";
import { writeSnapshotSignatures } from "../signing/verify.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../fs/types.js";
import { SafetyError } from "../errors.js";
import { ArchiveWriter, DEFAULT_GZIP_LEVEL, type GzipMembers } from "../archive/writer.js";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import type { Manifest, ManifestEntryNote, ManifestFile } from "../manifest/schema.js";
import { canonicalJson, MANIFEST_FORMAT } from "../manifest/format.js";
import type { OptionalFolder } from "../policy/selection.js";
import { SCANNER_RULES_VERSION, type SecretAllowance } from "../policy/secrets.js";
import { validateContextName } from "../policy/context.js";
import { assertSafeLocations } from "../policy/work-tree.js";
import {
  artifactNames,
  backupRootStorage,
  openRepository,
  type SnapshotRef,
} from "../repository/repository.js";
import type { ObjectStorage, StagedObject } from "../repository/storage.js";
import { formatChecksumLine } from "../repository/checksum.js";
import { formatSnapshotId } from "../repository/ids.js";
import { contextDir } from "../util/paths.js";
import { HashingStream, sha256Hex } from "../util/hash.js";
import { planSnapshotContents, requireContextDir, type SnapshotContents } from "./plan.js";
import { defaultScanLane, inlineScanLane, ScanWorkerFailed, type ScanLane } from "./scan-lane.js";
import { chooseParent, type ParentRef, type SnapshotKind } from "./parent.js";
import {
  isAcknowledged,
  RedactionNeeded,
  SnapshotArchiver,
  type SecretAcknowledgement,
  type SnapshotRedaction,
} from "./archiver.js";
import { MemberCache, memberCacheDir } from "./member-cache.js";
import { TOOL_NAME, TOOL_VERSION } from "../version.js";

export type { SnapshotKind } from "./parent.js";
export { isAcknowledged, type SecretAcknowledgement, type SnapshotRedaction } from "./archiver.js";

export interface SnapshotProgress {
  phase: "plan" | "archive" | "commit";
  path?: string;
  doneBytes: number;
  totalBytes: number;
}

export interface CreateSnapshotOptions extends ContextCallOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  /**
   * Where the snapshot is written; by default the backup root through the local driver. Any
   * driver works: the artifact is staged and committed, the sidecars are small objects.
   */
  repository?: ObjectStorage;
  /**
   * Where the verified-chain cache is kept (the object `<context>/.verified-chain.json`): the
   * repository by default (repository/chain-check.ts says why); a host cache's storage saves a
   * bucket a GET and a PUT per incremental. The CLI's s3:// root passes its cache folder.
   */
  chainCache?: ObjectStorage;
  context: string;
  clock: () => Date;
  kind?: SnapshotKind;
  /** this host's signing key: the manifest and the checksum file are signed (SSHSIG) before the commit */
  signer?: SigningKey;
  include?: readonly OptionalFolder[];
  /** age recipients wrapper; required unless insecurePlaintext is set */
  encryptor?: ArtifactEncryptor;
  insecurePlaintext?: boolean;
  /** known false positives of the secret scanner: a file and a rule (not findings, not redacted) */
  secretAllow?: readonly SecretAllowance[];
  /** labels recorded in the manifest (`restore --snapshot tag:NAME` picks the newest with one; retention can keep them) */
  tags?: readonly string[];
  /** a note recorded in the manifest */
  note?: string;
  /** si's SI_PAAS_ALLOW_REPO_STATE: a state root inside a git work tree is allowed (the backup root never is) */
  allowRepoState?: boolean;
  /** findings the operator has seen (and rotated): still redacted, but no longer a reason for exit 9 */
  secretAcknowledged?: readonly SecretAcknowledgement[];
  onProgress?: (progress: SnapshotProgress) => void;
  sleep?: (ms: number) => Promise<void>;
  /**
   * Keep a full's gzip members of each event log in the member cache beside the contexts
   * (`<stateRoot>/.paas-backup/member-cache/<context>/`), and copy those of bytes a log still
   * holds into the next full instead of compressing them again: a daily full then costs about
   * what the day added. The CLI sets it; off by default for SDK callers, who may not want the
   * tool to write into the state root.
   */
  memberCache?: boolean;
  /** deflate level of the gzip members; DEFAULT_GZIP_LEVEL (4, chosen by measurement) when not given */
  gzipLevel?: number;
  /**
   * Where included bytes are scanned for secrets on their way into the archive: by default a
   * worker thread for ranges of 16 MiB and more (inline below that), so a large snapshot scans on
   * one core while it reads, hashes and compresses on the other. `inlineScanLane()` keeps it all
   * on the calling thread.
   */
  scanLane?: ScanLane;
}

export interface SnapshotResult {
  id: string;
  kind: SnapshotKind;
  context: string;
  artifact: string;
  checksumFile: string;
  manifestFile: string;
  sha256: string;
  /** files the snapshot describes (all of them, for an incremental too) */
  files: number;
  /** size of the artifact on disk */
  bytes: number;
  /** bytes of state the snapshot describes */
  sourceBytes: number;
  /** bytes of file content stored in this artifact (before compression) */
  storedBytes: number;
  /** of storedBytes, log bytes whose gzip members were copied from the member cache, not compressed again */
  reusedBytes: number;
  encrypted: boolean;
  parent?: { id: string; sha256: string };
  /** set when an incremental was asked for but a full was taken */
  promotedToFull?: string;
  absent: string[];
  excluded: ManifestEntryNote[];
  skipped: ManifestEntryNote[];
  warnings: ManifestEntryNote[];
  /**
   * Every secret value the stored copy holds as `<redacted>` (file, line, rule; never the value),
   * including those an incremental carries over from its parent. Any one not acknowledged in the
   * config means the leaked credential still needs rotating (exit 9).
   */
  redactions: SnapshotRedaction[];
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A small object (manifest, checksum file) written whole, atomically, through the repository's driver. */
async function putSmall(repo: ObjectStorage, key: string, text: string): Promise<void> {
  const data = Buffer.from(text, "utf8");
  await repo.put(key, Readable.from([data]), { sha256: sha256Hex(data), size: data.length });
}

/**
 * Take a snapshot. A secret in an included file never stops it: the stored copy holds the value
 * as `<redacted>` and the manifest records each redaction and both hashes (source and stored).
 * Files known to need redaction (from the newest snapshot's manifest) are redacted from the
 * start; a new leak found mid-file restarts the snapshot once with that file redacted, as the
 * bytes before it are already in the archive.
 */
export async function createSnapshot(options: CreateSnapshotOptions): Promise<SnapshotResult> {
  // In the context's session: locked, and a swap a crash interrupted finished or undone before reading.
  return inContext({ ...options, command: "snapshot" }, async () => {
    const redact = new Set<string>();
    let run = options;
    for (;;) {
      try {
        return await createSnapshotOnce(run, redact);
      } catch (err) {
        // A scan worker that failed costs a second run with every file scanned inline, not a backup.
        if (err instanceof ScanWorkerFailed && !options.scanLane && !run.scanLane) {
          run = { ...options, scanLane: inlineScanLane() };
          continue;
        }
        if (!(err instanceof RedactionNeeded) || redact.has(err.path)) throw err;
        redact.add(err.path);
      }
    }
  });
}

/** Refuse before reading anything: no recipient (and no --insecure-plaintext), or unsafe locations. */
async function checkPreconditions(options: CreateSnapshotOptions): Promise<void> {
  if (!options.encryptor && !options.insecurePlaintext) {
    throw new SafetyError(
      "PAAS_BACKUP_NO_RECIPIENT",
      "no age recipient configured: snapshots are encrypted by default",
      {
        remediation:
          "Make a key with `paas-backup keygen --out ~/.config/paas-backup/identity.txt` and pass its recipient with --recipient, or set recipients in the config file; --insecure-plaintext writes an unencrypted snapshot.",
        stage: "plan",
      },
    );
  }
  await assertSafeLocations({
    fs: options.fs,
    backupRoot: options.backupRoot,
    stateRoot: options.stateRoot,
    allowRepoState: options.allowRepoState === true,
  });
}

/**
 * Step 2: the snapshot's id, from its start time, with a sequence number when that id is taken
 * (listed, or an artifact of either kind already present under it).
 */
async function allocateSnapshotId(
  repo: ObjectStorage,
  context: string,
  existing: readonly SnapshotRef[],
  started: Date,
  encrypted: boolean,
): Promise<string> {
  const keyOf = (name: string) => `${context}/${name}`;
  const taken = new Set(existing.map((s) => s.id));
  let sequence = 0;
  let id = formatSnapshotId(started);
  while (
    taken.has(id) ||
    (await repo.head(keyOf(artifactNames(id, encrypted).artifactName))) ||
    (await repo.head(keyOf(artifactNames(id, !encrypted).artifactName)))
  ) {
    sequence += 1;
    id = formatSnapshotId(started, sequence);
  }
  return id;
}

/**
 * Where the archive's bytes go: gzip members from the writer, through the encryptor if any and a
 * hash, into an object staged in the repository. Nothing is visible until commit.
 */
interface ArtifactSink {
  writer: ArchiveWriter;
  /** the artifact's last entry (the manifest) and its end; resolves once every byte is staged */
  finish(
    manifestJson: string,
    mtime: Date,
  ): Promise<{ sha256: string; bytes: number; payloadSha256: string }>;
  staged: StagedObject;
  abort(): Promise<void>;
}

/** Step 3: open the artifact sink. */
async function openArtifactSink(
  repo: ObjectStorage,
  key: string,
  encryptor: ArtifactEncryptor | undefined,
  gzipLevel: number,
): Promise<ArtifactSink> {
  const staged = await repo.stage(key);
  const artifactHash = new HashingStream();
  // the plaintext .tar.gz, before age: what a key rotation keeps and new chains link by (issue 24 §3)
  const payloadHash = encryptor ? new HashingStream() : artifactHash;
  const stages: NodeJS.ReadWriteStream[] = encryptor ? [payloadHash] : [];
  const encryptStream = encryptor?.encrypt();
  if (encryptStream) stages.push(encryptStream);
  stages.push(artifactHash);
  const head = stages[0] as unknown as NodeJS.WritableStream & Readable;
  const written = pipeline([...stages, staged.stream] as unknown as [Readable, NodeJS.WritableStream]);
  written.catch(() => undefined);
  const writer = new ArchiveWriter(head as never, gzipLevel);
  return {
    writer,
    staged,
    async finish(manifestJson, mtime) {
      await writer.finish(manifestJson, mtime);
      await written;
      const sha256 = artifactHash.digest();
      return { sha256, bytes: artifactHash.bytes, payloadSha256: encryptor ? payloadHash.digest() : sha256 };
    },
    async abort() {
      writer.abort();
      await staged.abort();
      await written.catch(() => undefined);
    },
  };
}

/** Step 5: the manifest, from what the archiver recorded and where each gzip member starts. */
function buildManifest(args: {
  id: string;
  context: string;
  kind: SnapshotKind;
  started: Date;
  include: string[];
  parent: ParentRef | null;
  parentFiles: ReadonlyMap<string, ManifestFile>;
  encryptor: ArtifactEncryptor | undefined;
  contents: SnapshotContents;
  archiver: SnapshotArchiver;
  gzipMembers: GzipMembers;
  secretAllow: readonly SecretAllowance[];
  tags: readonly string[];
  note: string | undefined;
}): Manifest {
  const { parent, archiver, contents } = args;
  const files = archiver.files;
  const present = new Set(files.map((f) => f.path));
  const deleted = parent ? [...args.parentFiles.keys()].filter((p) => !present.has(p)).sort() : [];
  return {
    format: MANIFEST_FORMAT,
    id: args.id,
    context: args.context,
    kind: args.kind,
    createdAt: args.started.toISOString(),
    tool: { name: TOOL_NAME, version: TOOL_VERSION },
    include: args.include,
    ...(parent
      ? {
          parent: {
            id: parent.id,
            sha256: parent.sha256,
            ...(parent.manifest?.payloadSha256 ? { payloadSha256: parent.manifest.payloadSha256 } : {}),
          },
        }
      : {}),
    encryption: args.encryptor ? { type: "age", recipients: args.encryptor.recipients } : { type: "none" },
    files,
    absent: contents.absent,
    deleted,
    excluded: contents.excluded,
    skipped: contents.skipped,
    warnings: archiver.warnings,
    totals: {
      files: files.length,
      bytes: files.reduce((n, f) => n + f.size, 0),
      storedBytes: archiver.storedBytes,
    },
    ...(args.tags.length ? { tags: [...args.tags] } : {}),
    ...(args.note ? { note: args.note } : {}),
    scannerRules: SCANNER_RULES_VERSION,
    gzipMembers: args.gzipMembers,
    scannerAllow: args.secretAllow
      .filter((a) => present.has(a.path))
      .map((a) => ({ path: a.path, rule: a.rule })),
  };
}

/**
 * Step 6: commit. The sidecars go first and the artifact's commit comes last: until it lands,
 * `list` shows nothing, and leftovers are only staged objects and orphan sidecars that prune sweeps.
 */
async function commitSnapshot(
  repo: ObjectStorage,
  context: string,
  names: ReturnType<typeof artifactNames>,
  manifestJson: string,
  staged: StagedObject,
  sha256: string,
  signing: { signer: SigningKey; createdAt: Date } | null,
): Promise<void> {
  const manifestKey = `${context}/${names.manifestName}`;
  const checksumKey = `${context}/${names.checksumName}`;
  const checksumText = formatChecksumLine(sha256, names.artifactName);
  await putSmall(repo, manifestKey, `${manifestJson}\n`);
  await putSmall(repo, checksumKey, checksumText);
  if (signing)
    await writeSnapshotSignatures(
      repo,
      { manifestKey, checksumKey },
      { manifest: `${manifestJson}\n`, checksum: checksumText },
      signing.signer,
      signing.createdAt,
    );
  await staged.commit(sha256);
}

/**
 * One attempt: recover, choose the parent, allocate the id, plan, open the sink, archive every
 * file, build the manifest, commit. A restart (a new leak, a failed worker) discards the staged
 * artifact and calls this again.
 */
async function createSnapshotOnce(
  options: CreateSnapshotOptions,
  redact: Set<string>,
): Promise<SnapshotResult> {
  const start = await startSnapshot(options);
  const work = await openArchiving(options, start, redact);
  const { sink, archiver, memberCache, scanLane } = work;
  try {
    for (const file of work.contents.files) await archiver.store(file, work.parentFiles.get(file.path));
    const { manifest, sha256, bytes } = await finishAndCommit(options, start, work);
    // The cache is a speed-up that can be rebuilt: failing to keep it never fails a committed snapshot.
    await memberCache?.commit(start.id, archiver.files).catch(() => memberCache.discard());
    return snapshotResult(options, start, work, manifest, sha256, bytes);
  } catch (err) {
    await sink.abort();
    await memberCache?.discard();
    throw err;
  } finally {
    if (!options.scanLane) await scanLane.close();
  }
}

/** Steps 1-2 of an attempt: where from and to, the parent chosen, the id allocated. */
interface SnapshotStart {
  context: string;
  include: string[];
  srcDir: string;
  repo: ObjectStorage;
  existing: SnapshotRef[];
  parent: ParentRef | null;
  kind: SnapshotKind;
  promotedToFull: string | undefined;
  started: Date;
  encrypted: boolean;
  id: string;
  names: ReturnType<typeof artifactNames>;
}

/**
 * The preconditions and the folder checked, the parent chosen from what the repository holds
 * (an incremental may be promoted to a full), and the id allocated at the start time.
 */
async function startSnapshot(options: CreateSnapshotOptions): Promise<SnapshotStart> {
  const { fs, clock } = options;
  const context = validateContextName(options.context);
  // createSnapshot runs this in the context's session: locked, and an interrupted swap already recovered.
  const include = [...new Set(options.include ?? [])].sort();
  await checkPreconditions(options);
  const srcDir = contextDir(options.stateRoot, context);
  await requireContextDir(fs, srcDir, context);
  const repo = options.repository ?? backupRootStorage(fs, options.backupRoot);

  const existing = await openRepository(repo).snapshots(context);
  const { parent, kind, promotedToFull } = await chooseParent({
    existing,
    chainCache: options.chainCache,
    requested: options.kind ?? "full",
    include,
    now: clock(),
  });

  const started = clock();
  const encrypted = options.encryptor !== undefined;
  const id = await allocateSnapshotId(repo, context, existing, started, encrypted);
  const names = artifactNames(id, encrypted);
  return {
    context,
    include,
    srcDir,
    repo,
    existing,
    parent,
    kind,
    promotedToFull,
    started,
    encrypted,
    id,
    names,
  };
}

/** Steps 3-4: what is archived, and the sink and archiver it goes through. */
interface Archiving {
  contents: SnapshotContents;
  totalBytes: number;
  sink: ArtifactSink;
  scanLane: ScanLane;
  parentFiles: Map<string, ManifestFile>;
  memberCache: MemberCache | undefined;
  archiver: SnapshotArchiver;
}

/**
 * Plan the contents, open the staged artifact, and set up the archiver: with the parent's files
 * to compare against, the files the newest snapshot had to redact (redacted from the start: no
 * restart for a known leak), and the member cache for a full that asks for it.
 */
async function openArchiving(
  options: CreateSnapshotOptions,
  start: SnapshotStart,
  redact: Set<string>,
): Promise<Archiving> {
  const { fs } = options;
  const { context, srcDir, repo, existing, parent, kind, started } = start;
  options.onProgress?.({ phase: "plan", doneBytes: 0, totalBytes: 0 });
  const contents = await planSnapshotContents(fs, srcDir, start.include as OptionalFolder[]);
  const totalBytes = contents.files.reduce((n, f) => n + f.stat.size, 0);

  const gzipLevel = options.gzipLevel ?? DEFAULT_GZIP_LEVEL;
  const sink = await openArtifactSink(
    repo,
    `${context}/${start.names.artifactName}`,
    options.encryptor,
    gzipLevel,
  );
  const scanLane = options.scanLane ?? defaultScanLane();
  const parentFiles = new Map<string, ManifestFile>((parent?.manifest?.files ?? []).map((f) => [f.path, f]));
  for (const f of existing[existing.length - 1]?.manifest?.files ?? [])
    if (f.redactions?.length) redact.add(f.path);
  const mtime = started;
  const memberCache =
    options.memberCache && kind === "full"
      ? await MemberCache.open({ fs, dir: memberCacheDir(options.stateRoot, context), existing, gzipLevel })
      : undefined;
  const archiver = new SnapshotArchiver({
    fs,
    srcDir,
    writer: sink.writer,
    scanLane,
    allow: options.secretAllow ?? [],
    acks: options.secretAcknowledged ?? [],
    redact,
    mtime,
    sleep: options.sleep ?? defaultSleep,
    totalBytes,
    ...(memberCache ? { memberCache } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  return { contents, totalBytes, sink, scanLane, parentFiles, memberCache, archiver };
}

/** Steps 5-6: end the last member, build the manifest, finish the artifact and commit it with its sidecars. */
async function finishAndCommit(
  options: CreateSnapshotOptions,
  start: SnapshotStart,
  work: Archiving,
): Promise<{ manifest: Manifest; sha256: string; bytes: number }> {
  const { id, context, kind, started, include, parent, names, repo } = start;
  const { sink, archiver, contents, totalBytes } = work;
  // Every file is in; end the member so the manifest can say where each one starts.
  const gzipMembers = await sink.writer.cut();
  const manifest = buildManifest({
    id,
    context,
    kind,
    started,
    include,
    parent,
    parentFiles: work.parentFiles,
    encryptor: options.encryptor,
    contents,
    archiver,
    gzipMembers,
    secretAllow: options.secretAllow ?? [],
    tags: [...new Set(options.tags ?? [])],
    note: options.note?.trim() || undefined,
  });
  options.onProgress?.({ phase: "commit", doneBytes: totalBytes, totalBytes });
  const { sha256, bytes, payloadSha256 } = await sink.finish(canonicalJson(manifest), started);
  // the sidecar knows what the artifact cannot say of itself: the hash of the bytes that carry it
  const manifestJson = canonicalJson({ ...manifest, payloadSha256 }, 2);
  await commitSnapshot(
    repo,
    context,
    names,
    manifestJson,
    sink.staged,
    sha256,
    options.signer ? { signer: options.signer, createdAt: started } : null,
  );
  return { manifest, sha256, bytes };
}

/** What createSnapshot returns for a committed snapshot; a name that holds a credential is reported like a value. */
function snapshotResult(
  options: CreateSnapshotOptions,
  start: SnapshotStart,
  work: Archiving,
  manifest: Manifest,
  sha256: string,
  bytes: number,
): SnapshotResult {
  const { id, kind, context, repo, names, encrypted, promotedToFull } = start;
  const { archiver, contents } = work;
  return {
    id,
    kind,
    context,
    artifact: repo.locate(`${context}/${names.artifactName}`),
    checksumFile: repo.locate(`${context}/${names.checksumName}`),
    manifestFile: repo.locate(`${context}/${names.manifestName}`),
    sha256,
    files: archiver.files.length,
    bytes,
    sourceBytes: manifest.totals.bytes,
    storedBytes: archiver.storedBytes,
    reusedBytes: archiver.reusedBytes,
    encrypted,
    ...(manifest.parent ? { parent: manifest.parent } : {}),
    ...(promotedToFull ? { promotedToFull } : {}),
    absent: contents.absent,
    excluded: contents.excluded,
    skipped: contents.skipped,
    warnings: archiver.warnings,
    // its file is not in the snapshot
    redactions: [
      ...contents.secretNames.map((path) => ({
        path,
        line: 0,
        rule: "secret-in-name",
        acknowledged: isAcknowledged(options.secretAcknowledged ?? [], path, 0, "secret-in-name"),
      })),
      ...archiver.redactions,
    ],
  };
}
