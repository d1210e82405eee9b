import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import type { Immutability, ObjectStorage, PutOptions, PutResult, StoredObject } from "../storage.js";
import { ExitCode, PaasBackupError } from "../../errors.js";

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
  /** credentials come from the AWS default chain (environment, shared files, instance roles); tests may inject */
  client?: S3Client;
}

/**
 * The AWS SDK costs about 20 MiB and a tenth of a second to load: it is imported on the first
 * request, so commands that never reach an S3 target (list, --version, snapshot) do not pay for it.
 */
let sdkLoad: Promise<typeof import("@aws-sdk/client-s3")> | null = null;
const sdk = () => (sdkLoad ??= import("@aws-sdk/client-s3"));

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
          : ["ECONNREFUSED", "ENOTFOUND", "ETIMEDOUT", "ECONNRESET"].includes(code) || /ECONNREFUSED|ENOTFOUND|getaddrinfo/.test(message)
            ? "The server did not answer: check --endpoint (or the target's endpoint in the config file) and the network."
            : "Check the target URL, --endpoint, --region and --path-style, then run the command again; an interrupted push resumes.";
  return new PaasBackupError("PAAS_BACKUP_STORAGE_FAILED", ExitCode.unexpected, `${what} at ${where} failed: ${name || code || "error"}: ${message.split("\n")[0]}`, {
    path: where,
    remediation,
    stage: "storage",
    cause: err,
  });
}

/**
 * S3 and S3-compatible servers (MinIO, Ceph RGW, R2, B2) through @aws-sdk/client-s3, with
 * @aws-sdk/lib-storage for streamed multipart uploads of large artifacts.
 * Every object carries x-amz-meta-sha256; a single-part upload also sends x-amz-checksum-sha256
 * so a server that checks it refuses corrupted bytes. A copy counts only once confirmed: by the
 * server's own full-object sha256 when it returns one, else by reading it back and hashing.
 */
export class S3Storage implements ObjectStorage {
  readonly kind = "s3" as const;
  readonly url: string;
  private client: S3Client | null;
  private readonly partSize: number;
  private readonly config: S3ClientConfig;

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
    this.config = config;
    this.client = options.client ?? null;
    this.partSize = Math.max(5 * 1024 * 1024, options.partSize ?? 16 * 1024 * 1024);
  }

  private async s3(): Promise<S3Client> {
    if (!this.client) this.client = new (await sdk()).S3Client(this.config);
    return this.client;
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
    const lock = options.lock ? { ObjectLockMode: options.lock.mode, ObjectLockRetainUntilDate: options.lock.retainUntil } : {};
    const multipart = options.size > this.partSize;
    if (multipart) {
      const { Upload } = await import("@aws-sdk/lib-storage");
      const upload = new Upload({
        client: await this.s3(),
        params: { Bucket: this.options.bucket, Key, Body: body, Metadata: { sha256: options.sha256 }, ...lock },
        partSize: this.partSize,
        queueSize: this.options.queueSize ?? 2,
        leavePartsOnError: false,
      });
      await this.send("multipart upload", key, () => upload.done());
    } else {
      await this.send("upload", key, async () => (await this.s3()).send(
        new (await sdk()).PutObjectCommand({
          Bucket: this.options.bucket,
          Key,
          Body: body,
          ContentLength: options.size,
          Metadata: { sha256: options.sha256 },
          ChecksumSHA256: Buffer.from(options.sha256, "hex").toString("base64"),
          ...lock,
        }),
      ));
    }
    // Confirm: the server's full-object checksum if it keeps one, else read the object back.
    const head = await this.send("confirming the upload", key, async () => (await this.s3()).send(new (await sdk()).HeadObjectCommand({ Bucket: this.options.bucket, Key, ChecksumMode: "ENABLED" })));
    const serverSha = head.ChecksumSHA256 && !head.ChecksumSHA256.includes("-") ? Buffer.from(head.ChecksumSHA256, "base64").toString("hex") : null;
    if (serverSha && head.ContentLength === options.size) {
      return { key, size: head.ContentLength ?? options.size, sha256: serverSha, confirmedBy: "server-checksum", multipart };
    }
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of await this.get(key)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { key, size, sha256: hash.digest("hex"), confirmedBy: "reread", multipart };
  }

  async get(key: string): Promise<Readable> {
    const r = await this.send("download", key, async () => (await this.s3()).send(new (await sdk()).GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) })));
    return r.Body as Readable;
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      const h = await (await this.s3()).send(new (await sdk()).HeadObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }));
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

  async *list(prefix: string, options: { shallow?: boolean } = {}): AsyncIterable<StoredObject> {
    let ContinuationToken: string | undefined;
    const full = this.key(prefix);
    const strip = this.options.prefix ? this.options.prefix.length + 1 : 0;
    do {
      const page = await this.send("listing", prefix, async () => (await this.s3()).send(new (await sdk()).ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: full, ContinuationToken, MaxKeys: S3Storage.pageSizeForTests, ...(options.shallow ? { Delimiter: "/" } : {}) })));
      for (const o of page.Contents ?? []) {
        const key = (o.Key ?? "").slice(strip);
        // Listing does not carry metadata: head each object for its sha256 and lock.
        const h = await this.head(key);
        if (h) yield h;
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(key: string): Promise<void> {
    await this.send("deleting", key, async () => (await this.s3()).send(new (await sdk()).DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) })));
  }

  async immutability(): Promise<Immutability> {
    try {
      const r = await (await this.s3()).send(new (await sdk()).GetObjectLockConfigurationCommand({ Bucket: this.options.bucket }));
      const enabled = r.ObjectLockConfiguration?.ObjectLockEnabled === "Enabled";
      return { supported: true, enabled, detail: enabled ? `bucket ${this.options.bucket} has Object Lock enabled` : `bucket ${this.options.bucket} has no Object Lock configuration` };
    } catch (err) {
      const name = errorName(err);
      if (name === "ObjectLockConfigurationNotFoundError" || name === "NotImplemented" || httpStatus(err) === 501)
        return { supported: name !== "NotImplemented", enabled: false, detail: `bucket ${this.options.bucket}: no Object Lock (${name || "not implemented by the server"})` };
      throw storageFailure(err, "reading the Object Lock configuration", this.url);
    }
  }

  /** test hook: the list page size, to exercise pagination */
  static pageSizeForTests = 1000;
}

