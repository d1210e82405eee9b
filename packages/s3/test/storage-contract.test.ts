import { beforeAll, afterAll } from "vitest";
import { startRgw, type Rgw } from "@paas-backup/testing";
import { describeStorageContract } from "@paas-backup/testing/storage-contract";
import { S3Storage } from "@paas-backup/s3";

/** The storage contract every driver passes, run by the S3 driver against a real S3 server (Ceph RGW on 127.0.0.1). */
let rgw: Rgw;
beforeAll(async () => {
  rgw = await startRgw();
});
afterAll(async () => {
  await rgw.stop();
});

describeStorageContract("s3 (Ceph RGW)", async () => {
  const bucket = await rgw.createBucket({ prefix: "conformance" });
  // a small part size and page size, so multipart staging and pagination are exercised
  return new S3Storage({
    bucket,
    prefix: "repo",
    url: `s3://${bucket}/repo`,
    endpoint: rgw.endpoint,
    pathStyle: true,
    client: rgw.client,
    partSize: 5 * 1024 * 1024,
    pageSize: 2,
  });
});
