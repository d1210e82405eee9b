import { createHash, randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import {
  S3Client,
  CopyObjectCommand,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  AbortMultipartUploadCommand,
  GetObjectLockConfigurationCommand,
  PutObjectRetentionCommand,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { ExitCode, PaasBackupError } from "@paas-backup/core/errors";
import {
  HashingStream,
  ObjectNotFoundError,
  isStagedKey,
  stagedKey,
  stagedMismatch,
} from "@paas-backup/core/repository";
import type {
  CreateOnlyResult,
  Immutability,
  ObjectStorage,
  PutOptions,
  PutResult,
  StagedObject,
  StorageFlags,
  StoredObject,
  StoredVersion,
  VersionStart,
} from "@paas-backup/core/repository";

export interface S3StorageOptions {
  bucket: string;
  prefix: string;
  url: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  /** objects larger than this go up as multipart uploads, streamed in parts of this size */
  partSize?: number;
  queueSize?: number;
  /** keys per ListObjectsV2 page (MaxKeys; the server may send fewer) */
  pageSize?: number;
  /** credentials come from the AWS default chain (environment, shared files, instance roles); tests may inject */
  client?: S3Client;
  /** told once per request sent (retries included), by operation without "Command": for measuring */
  onRequest?: (operation: string) => void;
}

/** The HTTP Date header of an S3 answer, kept in $metadata by the middleware the constructor adds. */
function serverDate(output: unknown): Date | null {
  const date = (output as { $metadata?: { serverDate?: string } })?.$metadata?.serverDate;
  if (!date) return null;
  const at = new Date(date);
  return Number.isNaN(at.getTime()) ? null : at;
}

function errorName(err: unknown): string {
  return (err as { name?: string; Code?: string })?.name ?? (err as { Code?: string })?.Code ?? "";
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** What an operator should do about an S3 failure, by its kind; the message names the target, never a credential. */
function storageFailure(err: unknown, what: string, where: string): PaasBackupError {
  const name = errorName(err);
  const message = (err as Error)?.message ?? String(err);
  const code = (err as { code?: string })?.code ?? "";
  const remediation =
    name === "CredentialsProviderError" || /credential/i.test(message)
      ? "Give credentials the AWS way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials, or an instance role); paas-backup never reads them from flags or its config."
      : name === "NoSuchBucket"
        ? "Create the bucket, or fix the bucket in the target URL (s3://<bucket>/<prefix>)."
        : name === "AccessDenied" || httpStatus(err) === 403
          ? "The credentials lack permission for this bucket and prefix (s3:PutObject, GetObject, ListBucket, DeleteObject, GetBucketObjectLockConfiguration)."
          : ["ECONNREFUSED", "ENOTFOUND", "ETIMEDOUT", "ECONNRESET"].includes(code) ||
              /ECONNREFUSED|ENOTFOUND|getaddrinfo/.test(message)
            ? "The server did not answer: check --endpoint (or the target's endpoint in the config file) and the network."
            : "Check the target URL, --endpoint, --region and --path-style, then run the command again; an interrupted push resumes.";
  return new PaasBackupError(
    "PAAS_BACKUP_STORAGE_FAILED",
    ExitCode.environment,
    `${what} at ${where} failed: ${name || code || "error"}: ${message.split("\n")[0]}`,
    {
      path: where,
      remediation,
      stage: "storage",
      cause: err,
    },
  );
}

/**
 * S3 and S3-compatible servers (MinIO, Ceph RGW, R2, B2) through @aws-sdk/client-s3, with
 * @aws-sdk/lib-storage for streamed multipart uploads of large artifacts.
 * Every object carries x-amz-meta-sha256; a single-part upload also sends x-amz-checksum-sha256
 * so a server that checks it refuses corrupted bytes. A copy counts only once confirmed: by the
 * server's own full-object sha256 when it returns one, else by reading it back and hashing.
 */
export class S3Storage implements ObjectStorage {
  readonly kind = "s3";
  readonly flags: StorageFlags = { cheapReads: false, permissions: false, retention: true };
  readonly url: string;
  private readonly client: S3Client;
  private readonly partSize: number;

  constructor(private readonly options: S3StorageOptions) {
    this.url = options.url;
    const config: S3ClientConfig = {
      region: options.region ?? "us-east-1",
      forcePathStyle: options.pathStyle ?? false,
      // S3-compatible servers often reject aws-chunked trailers; we send our own sha256 instead.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    };
    this.client = options.client ?? new S3Client(config);
    // Keep each answer's Date header where serverDate() finds it: leases are judged on the server's clock.
    this.client.middlewareStack.add(
      (next) => async (args) => {
        const result = await next(args);
        const date = (result.response as { headers?: Record<string, string> })?.headers?.date;
        const metadata = (result.output as { $metadata?: Record<string, unknown> })?.$metadata;
        if (date && metadata) metadata.serverDate = date;
        return result;
      },
      { step: "deserialize", name: "paasBackupServerDate", priority: "high", override: true },
    );
    const onRequest = options.onRequest;
    if (onRequest)
      this.client.middlewareStack.add(
        (next, context) => async (args) => {
          onRequest(String(context.commandName ?? "unknown").replace(/Command$/, ""));
          return next(args);
        },
        { step: "finalizeRequest", name: "paasBackupCountRequests", override: true },
      );
    this.partSize = Math.max(5 * 1024 * 1024, options.partSize ?? 16 * 1024 * 1024);
  }

  private async send<T>(what: string, key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof PaasBackupError) throw err;
      throw storageFailure(err, what, this.locate(key));
    }
  }

  private key(key: string): string {
    return this.options.prefix ? `${this.options.prefix}/${key}` : key;
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const Key = this.key(key);
    const lock = options.lock
      ? { ObjectLockMode: options.lock.mode, ObjectLockRetainUntilDate: options.lock.retainUntil }
      : {};
    const multipart = options.size > this.partSize;
    if (multipart) {
      const upload = new Upload({
        client: this.client,
        params: {
          Bucket: this.options.bucket,
          Key,
          Body: body,
          Metadata: { sha256: options.sha256 },
          ...lock,
        },
        partSize: this.partSize,
        queueSize: this.options.queueSize ?? 2,
        leavePartsOnError: false,
      });
      await this.send("multipart upload", key, () => upload.done());
    } else {
      await this.send("upload", key, () =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.options.bucket,
            Key,
            Body: body,
            ContentLength: options.size,
            Metadata: { sha256: options.sha256 },
            ChecksumSHA256: Buffer.from(options.sha256, "hex").toString("base64"),
            ...lock,
          }),
        ),
      );
    }
    // Confirm: the server's full-object checksum if it keeps one, else read the object back.
    const head = await this.send("confirming the upload", key, () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key, ChecksumMode: "ENABLED" })),
    );
    const serverSha =
      head.ChecksumSHA256 && !head.ChecksumSHA256.includes("-")
        ? Buffer.from(head.ChecksumSHA256, "base64").toString("hex")
        : null;
    if (serverSha && head.ContentLength === options.size) {
      return {
        key,
        size: head.ContentLength ?? options.size,
        sha256: serverSha,
        confirmedBy: "server-checksum",
        multipart,
      };
    }
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of await this.get(key)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { key, size, sha256: hash.digest("hex"), confirmedBy: "reread", multipart };
  }

  /**
   * Streamed in under a staging key (multipart when large: nothing is visible until the upload
   * completes), then copied to its key with its sha256 as metadata, which was not known when the
   * upload began. Single-request copies reach 5 GB, far above a context's state.
   */
  async stage(key: string): Promise<StagedObject> {
    const staging = stagedKey(key, randomUUID().slice(0, 8));
    const hashing = new HashingStream();
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.options.bucket, Key: this.key(staging), Body: hashing },
      partSize: this.partSize,
      queueSize: this.options.queueSize ?? 2,
      leavePartsOnError: false,
    });
    const uploaded = this.send("staged upload", staging, () => upload.done());
    uploaded.catch(() => undefined);
    return {
      stream: hashing,
      commit: async (expectSha256?: string) => {
        await uploaded;
        const sha256 = hashing.digest();
        try {
          if (expectSha256 !== undefined && sha256 !== expectSha256)
            throw stagedMismatch(this.locate(key), sha256, expectSha256);
          await this.send("committing", key, () =>
            this.client.send(
              new CopyObjectCommand({
                Bucket: this.options.bucket,
                Key: this.key(key),
                CopySource: `${this.options.bucket}/${this.key(staging).split("/").map(encodeURIComponent).join("/")}`,
                MetadataDirective: "REPLACE",
                Metadata: { sha256 },
              }),
            ),
          );
        } finally {
          await this.delete(staging);
        }
        const head = await this.head(key);
        if (!head || head.size !== hashing.bytes)
          throw stagedMismatch(this.locate(key), `${head?.size ?? "no"} bytes`, `${hashing.bytes} bytes`);
        return {
          key,
          size: head.size,
          sha256,
          confirmedBy: "reread",
          multipart: hashing.bytes > this.partSize,
        };
      },
      abort: async () => {
        if (!hashing.destroyed && !hashing.writableFinished) hashing.destroy();
        await upload.abort().catch(() => undefined);
        await uploaded.catch(() => undefined);
        await this.delete(staging).catch(() => undefined);
      },
    };
  }

  /**
   * `If-None-Match: *` on a single PUT (never multipart: RGW 16 ignores conditions on
   * CompleteMultipartUpload). 412 means the key exists; AWS answers 409 when another conditional
   * write to the key is in flight, which is the same answer: someone else is creating it.
   */
  async createOnly(key: string, body: Buffer): Promise<CreateOnlyResult> {
    try {
      const r = await this.client.send(
        new PutObjectCommand({
          Bucket: this.options.bucket,
          Key: this.key(key),
          Body: body,
          ContentLength: body.length,
          IfNoneMatch: "*",
          Metadata: { sha256: createHash("sha256").update(body).digest("hex") },
        }),
      );
      return { created: true, at: serverDate(r) ?? new Date() };
    } catch (err) {
      const status = httpStatus(err);
      if (status === 412 || status === 409 || errorName(err) === "PreconditionFailed")
        return { created: false };
      throw storageFailure(err, "create-only upload", this.locate(key));
    }
  }

  /** The Date header of a one-key listing under the prefix: one cheap request on the server's clock. */
  async serverTime(): Promise<Date> {
    const r = await this.send("reading the server's clock", "", () =>
      this.client.send(
        new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.key(""), MaxKeys: 1 }),
      ),
    );
    const at = serverDate(r);
    if (!at)
      throw new PaasBackupError(
        "PAAS_BACKUP_STORAGE_FAILED",
        ExitCode.environment,
        `${this.url} answered without a Date header, so leases cannot be judged on the server's clock`,
        {
          path: this.url,
          remediation: "Use an S3 server (or proxy) that sends the HTTP Date header on every answer.",
          stage: "storage",
        },
      );
    return at;
  }

  async get(key: string): Promise<Readable> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }),
      );
      return r.Body as Readable;
    } catch (err) {
      if (["NoSuchKey", "NotFound"].includes(errorName(err)) || httpStatus(err) === 404)
        throw new ObjectNotFoundError(this.locate(key), err);
      throw storageFailure(err, "download", this.locate(key));
    }
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      const h = await this.client.send(
        new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }),
      );
      return {
        key,
        size: h.ContentLength ?? 0,
        sha256: h.Metadata?.sha256 ?? null,
        lastModified: h.LastModified ?? null,
        retainUntil: h.ObjectLockRetainUntilDate ? h.ObjectLockRetainUntilDate.toISOString() : null,
        lockMode: h.ObjectLockMode ?? null,
      };
    } catch (err) {
      if (["NotFound", "NoSuchKey"].includes(errorName(err)) || httpStatus(err) === 404) return null;
      throw storageFailure(err, "looking up", this.locate(key));
    }
  }

  locate(key: string): string {
    return `${this.url.replace(/\/+$/, "")}/${key}`;
  }

  /** keys and times under a prefix, page by page, staged keys included */
  private async *listKeys(
    prefix: string,
    shallow: boolean,
  ): AsyncGenerator<{ key: string; size: number; lastModified: Date | null }> {
    let ContinuationToken: string | undefined;
    const full = this.key(prefix);
    const strip = this.options.prefix ? this.options.prefix.length + 1 : 0;
    do {
      const page = await this.send("listing", prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.options.bucket,
            Prefix: full,
            ContinuationToken,
            MaxKeys: this.options.pageSize ?? 1000,
            ...(shallow ? { Delimiter: "/" } : {}),
          }),
        ),
      );
      for (const o of page.Contents ?? [])
        yield { key: (o.Key ?? "").slice(strip), size: o.Size ?? 0, lastModified: o.LastModified ?? null };
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async *list(
    prefix: string,
    options: { shallow?: boolean; keysOnly?: boolean } = {},
  ): AsyncIterable<StoredObject> {
    for await (const { key, size, lastModified } of this.listKeys(prefix, options.shallow === true)) {
      if (isStagedKey(key)) continue;
      if (options.keysOnly) {
        yield { key, size, sha256: null, lastModified, retainUntil: null, lockMode: null };
        continue;
      }
      // Listing does not carry metadata: head each object for its sha256 and lock.
      const h = await this.head(key);
      if (h) yield h;
    }
  }

  async *listVersions(prefix: string): AsyncIterable<StoredVersion> {
    const strip = this.options.prefix ? this.options.prefix.length + 1 : 0;
    let KeyMarker: string | undefined;
    let VersionIdMarker: string | undefined;
    do {
      const page = await this.send("listing versions", prefix, () =>
        this.client.send(
          new ListObjectVersionsCommand({
            Bucket: this.options.bucket,
            Prefix: this.key(prefix),
            KeyMarker,
            VersionIdMarker,
            MaxKeys: this.options.pageSize ?? 1000,
          }),
        ),
      );
      for (const v of page.Versions ?? [])
        yield {
          key: (v.Key ?? "").slice(strip),
          versionId: v.VersionId ?? "null",
          latest: v.IsLatest === true,
          deleteMarker: false,
          size: v.Size ?? 0,
          lastModified: v.LastModified ?? null,
        };
      for (const d of page.DeleteMarkers ?? [])
        yield {
          key: (d.Key ?? "").slice(strip),
          versionId: d.VersionId ?? "null",
          latest: d.IsLatest === true,
          deleteMarker: true,
          size: 0,
          lastModified: d.LastModified ?? null,
        };
      KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      VersionIdMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
    } while (KeyMarker);
  }

  async readVersionStart(key: string, versionId: string, bytes: number): Promise<VersionStart> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({
          Bucket: this.options.bucket,
          Key: this.key(key),
          VersionId: versionId,
          Range: `bytes=0-${Math.max(0, bytes - 1)}`,
        }),
      );
      const data = Buffer.from(await r.Body!.transformToByteArray());
      return {
        data,
        retainUntil: r.ObjectLockRetainUntilDate ? r.ObjectLockRetainUntilDate.toISOString() : null,
        lockMode: r.ObjectLockMode ?? null,
      };
    } catch (err) {
      if (["NoSuchKey", "NotFound", "NoSuchVersion"].includes(errorName(err)) || httpStatus(err) === 404)
        throw new ObjectNotFoundError(`${this.locate(key)} (version ${versionId})`, err);
      throw storageFailure(err, "download", this.locate(key));
    }
  }

  async sweepStaged(prefix: string, olderThan: Date): Promise<string[]> {
    const swept: string[] = [];
    for await (const { key, lastModified } of this.listKeys(prefix, false)) {
      if (!isStagedKey(key) || !lastModified || lastModified >= olderThan) continue;
      await this.delete(key);
      swept.push(key);
    }
    // A run killed while it streamed a large staged object leaves a multipart upload that was
    // never completed: no listing of objects shows it, yet its parts are stored (and billed). The
    // uploads of staged keys begun before the cutoff are aborted.
    for (const { key, uploadId } of await this.stagedUploads(prefix, olderThan)) {
      await this.send("aborting an interrupted upload of", key, () =>
        this.client.send(
          new AbortMultipartUploadCommand({
            Bucket: this.options.bucket,
            Key: this.key(key),
            UploadId: uploadId,
          }),
        ),
      );
      if (!swept.includes(key)) swept.push(key);
    }
    return swept;
  }

  private async stagedUploads(prefix: string, olderThan: Date): Promise<{ key: string; uploadId: string }[]> {
    const out: { key: string; uploadId: string }[] = [];
    const strip = this.options.prefix ? this.options.prefix.length + 1 : 0;
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await this.send("listing interrupted uploads of", prefix, () =>
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.options.bucket,
            Prefix: this.key(prefix),
            KeyMarker,
            UploadIdMarker,
          }),
        ),
      );
      for (const u of page.Uploads ?? []) {
        const key = (u.Key ?? "").slice(strip);
        if (isStagedKey(key) && u.UploadId && u.Initiated && u.Initiated < olderThan)
          out.push({ key, uploadId: u.UploadId });
      }
      KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      UploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (KeyMarker);
    return out;
  }

  async delete(key: string): Promise<void> {
    await this.send("deleting", key, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) })),
    );
  }

  async extendLock(
    key: string,
    lock: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date },
  ): Promise<void> {
    await this.send("extending the Object Lock retention", key, () =>
      this.client.send(
        new PutObjectRetentionCommand({
          Bucket: this.options.bucket,
          Key: this.key(key),
          Retention: { Mode: lock.mode, RetainUntilDate: lock.retainUntil },
        }),
      ),
    );
  }

  async immutability(): Promise<Immutability> {
    try {
      const r = await this.client.send(
        new GetObjectLockConfigurationCommand({ Bucket: this.options.bucket }),
      );
      const enabled = r.ObjectLockConfiguration?.ObjectLockEnabled === "Enabled";
      return {
        supported: true,
        enabled,
        detail: enabled
          ? `bucket ${this.options.bucket} has Object Lock enabled`
          : `bucket ${this.options.bucket} has no Object Lock configuration`,
      };
    } catch (err) {
      const name = errorName(err);
      if (
        name === "ObjectLockConfigurationNotFoundError" ||
        name === "NotImplemented" ||
        httpStatus(err) === 501
      )
        return {
          supported: name !== "NotImplemented",
          enabled: false,
          detail: `bucket ${this.options.bucket}: no Object Lock (${name || "not implemented by the server"})`,
        };
      throw storageFailure(err, "reading the Object Lock configuration", this.url);
    }
  }
}
