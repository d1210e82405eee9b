import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  S3Client,
  CreateBucketCommand,
  PutBucketVersioningCommand,
  PutObjectLockConfigurationCommand,
} from "@aws-sdk/client-s3";

const run = promisify(execFile);

/**
 * A throwaway single-node Ceph cluster on 127.0.0.1 serving S3 through radosgw (RGW), the real
 * S3 server of the tests: versioning, Object Lock and create-only conditional writes, which s3rver
 * lacks. One monitor, one OSD keeping its objects in memory (memstore), and radosgw on a free port.
 * Debian 12's Ceph 16.2 runs it without systemd; it is ready in a few seconds and uses ~150 MB.
 */
export interface Rgw {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** AWS_* variables for a child process (the CLI reads credentials the AWS way) */
  env: Record<string, string>;
  /** a client for the test itself; RGW 16 has no flexible checksums, so only when required */
  client: S3Client;
  /** a fresh bucket with a unique name; `objectLock` implies versioning (S3's rule) */
  createBucket(options?: { prefix?: string; versioning?: boolean; objectLock?: boolean }): Promise<string>;
  /** the folder holding the cluster's configuration and logs (for a failing test's message) */
  dir: string;
  stop(): Promise<void>;
}

/** The Debian packages the cluster needs, for the message when a binary is missing. */
export const RGW_PACKAGES = ["ceph-mon", "ceph-osd", "radosgw"] as const;

/** The options RGW 16 needs from the AWS SDK v3: it rejects the aws-chunked checksum trailers with 411. */
export const RGW_CLIENT_CHECKSUMS = {
  requestChecksumCalculation: "WHEN_REQUIRED",
  responseChecksumValidation: "WHEN_REQUIRED",
} as const;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `command` under a small sh guard holding our pipe on fd 3: when this process goes away for
 * any reason (a crashed test worker included) the pipe closes and the guard kills the daemon, so a
 * cluster never outlives its test. Closing stdin is also how stop() ends each daemon.
 */
function guarded(command: string, args: string[], logFile: string): ChildProcess {
  const child = spawn(
    "sh",
    [
      "-c",
      'exec 3<&0; "$@" </dev/null >>"$LOG" 2>&1 & daemon=$!; { cat <&3 >/dev/null; kill -KILL $daemon 2>/dev/null; } & wait $daemon',
      "rgw-guard",
      command,
      ...args,
    ],
    { stdio: ["pipe", "ignore", "ignore"], env: { ...process.env, LOG: logFile } },
  );
  child.on("error", () => undefined);
  return child;
}

async function stopGuarded(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.stdin?.end();
  await exited;
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "(no log)";
  }
}

async function until<T>(
  what: string,
  log: string,
  timeoutMs: number,
  probe: () => Promise<T | null>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe().catch(() => null);
    if (got !== null) return got;
    if (Date.now() > deadline)
      throw new Error(`RGW test cluster: ${what} did not come up in ${timeoutMs} ms:\n${tail(log)}`);
    await sleep(50);
  }
}

function httpAnswers(port: number): Promise<true | null> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/", method: "GET", timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ? true : null);
    });
    req.on("error", () => resolve(null));
    req.on("timeout", () => {
      req.destroy();
      resolve(null);
    });
    req.end();
  });
}

/**
 * A throwaway Ceph cluster with one monitor, one memstore OSD and radosgw on loopback ports.
 * Steps: the tools are there → a config → the daemons, each waited for → a user → a client.
 * Anything that fails stops what was started and removes the folder.
 */
export async function startRgw(): Promise<Rgw> {
  await requireCephTools();
  const dir = mkdtempSync(join(tmpdir(), "pb-rgw-"));
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const fsid = randomUUID();
  const conf = join(dir, "ceph.conf");
  for (const sub of ["run", "log", "mon/ceph-a", "osd/ceph-0", "rgw"])
    mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(conf, cephConf(dir, fsid, monPort, rgwPort));
  const daemons: ChildProcess[] = [];
  const stop = async () => {
    // radosgw, then the OSD, then the monitor: RGW hangs when the monitor goes first
    for (const d of [...daemons].reverse()) await stopGuarded(d);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await startDaemons(dir, conf, fsid, monPort, rgwPort, daemons);
    const { accessKeyId, secretAccessKey } = await createTestUser(conf);
    return rgwHandle(dir, `http://127.0.0.1:${rgwPort}`, accessKeyId, secretAccessKey, stop);
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Every binary the cluster needs, or an error naming the packages to install. */
async function requireCephTools(): Promise<void> {
  const missing: string[] = [];
  for (const bin of ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"])
    await run("sh", ["-c", `command -v ${bin}`]).catch(() => missing.push(bin));
  if (missing.length > 0)
    throw new Error(
      `the RGW tests need ${missing.join(", ")}: install ${RGW_PACKAGES.join(" ")} (e.g. apt-get install ${RGW_PACKAGES.join(" ")}; scripts/ensure-tools.mjs does it as root on Debian)`,
    );
}

/**
 * Settings measured in issue 22: no cephx (crc mode, or RGW waits 300 s for its config), msgr2 only,
 * one replica, placement across OSDs not hosts, fast paxos (11 s start-up otherwise), loopback only,
 * and a small disk is not "full".
 */
function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return [
    "[global]",
    `fsid = ${fsid}`,
    `mon host = v2:127.0.0.1:${monPort}`,
    "mon initial members = a",
    "auth cluster required = none",
    "auth service required = none",
    "auth client required = none",
    "ms mon client mode = crc",
    "ms bind msgr1 = false",
    "osd pool default size = 1",
    "osd pool default min size = 1",
    "osd pool default pg num = 8",
    "osd pool default pgp num = 8",
    "mon allow pool size one = true",
    "osd crush chooseleaf type = 0",
    "paxos propose interval = 0.01",
    "public addr = 127.0.0.1",
    "cluster addr = 127.0.0.1",
    "mon data avail crit = 1",
    "mon data avail warn = 2",
    `run dir = ${dir}/run`,
    `admin socket = ${dir}/run/$name.asok`,
    `log file = ${dir}/log/$name.log`,
    "[mon]",
    `mon data = ${dir}/mon/$cluster-$id`,
    "[osd]",
    "osd objectstore = memstore",
    // memstore holds objects in RAM: 1 GiB is far above what a test writes
    "memstore device bytes = 1073741824",
    `osd data = ${dir}/osd/$cluster-$id`,
    "[client.rgw]",
    `rgw frontends = beast endpoint=127.0.0.1:${rgwPort}`,
    `rgw data = ${dir}/rgw`,
    "",
  ].join("\n");
}

/** The monitor (its map made first), an OSD it creates, then radosgw, each waited for until it answers. */
async function startDaemons(
  dir: string,
  conf: string,
  fsid: string,
  monPort: number,
  rgwPort: number,
  daemons: ChildProcess[],
): Promise<void> {
  const ceph = (args: string[], timeout = 20_000) =>
    run("ceph", ["-c", conf, "--connect-timeout", "10", ...args], { timeout });
  const monmap = join(dir, "monmap");
  await run("monmaptool", ["--create", "--addv", "a", `[v2:127.0.0.1:${monPort}]`, "--fsid", fsid, monmap]);
  await run("ceph-mon", ["--mkfs", "-i", "a", "-c", conf, "--monmap", monmap]);
  daemons.push(guarded("ceph-mon", ["-f", "-i", "a", "-c", conf], join(dir, "log", "mon.out")));
  const osdId = await until("the monitor", join(dir, "log", "ceph-mon.a.log"), 30_000, async () =>
    (await ceph(["osd", "create"], 5_000)).stdout.trim(),
  );
  await run("ceph-osd", ["--mkfs", "-i", osdId, "-c", conf]);
  daemons.push(guarded("ceph-osd", ["-f", "-i", osdId, "-c", conf], join(dir, "log", "osd.out")));
  daemons.push(guarded("radosgw", ["-f", "-n", "client.rgw", "-c", conf], join(dir, "log", "rgw.out")));
  await until("radosgw", join(dir, "log", "ceph-client.rgw.log"), 60_000, () => httpAnswers(rgwPort));
}

/** An RGW user with fresh random keys, for this cluster only. */
async function createTestUser(conf: string): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  const accessKeyId = `PB${randomBytes(8).toString("hex").toUpperCase()}`;
  const secretAccessKey = randomBytes(20).toString("hex");
  await run("radosgw-admin", [
    "-c",
    conf,
    "-n",
    "client.rgw",
    "user",
    "create",
    "--uid",
    "paas-backup-tests",
    "--display-name",
    "paas-backup tests",
    "--access-key",
    accessKeyId,
    "--secret-key",
    secretAccessKey,
  ]);
  return { accessKeyId, secretAccessKey };
}

/** What a test gets: the endpoint, keys and env, a client, and buckets made to order. */
function rgwHandle(
  dir: string,
  endpoint: string,
  accessKeyId: string,
  secretAccessKey: string,
  stopCluster: () => Promise<void>,
): Rgw {
  const client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    ...RGW_CLIENT_CHECKSUMS,
  });
  let buckets = 0;
  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    env: {
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_REGION: "us-east-1",
    },
    client,
    dir,
    async createBucket(options = {}) {
      const name = `${options.prefix ?? "pb"}-${++buckets}-${randomBytes(3).toString("hex")}`;
      await client.send(
        new CreateBucketCommand({
          Bucket: name,
          ...(options.objectLock ? { ObjectLockEnabledForBucket: true } : {}),
        }),
      );
      if (options.versioning && !options.objectLock)
        await client.send(
          new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: "Enabled" } }),
        );
      if (options.objectLock)
        await client.send(
          new PutObjectLockConfigurationCommand({
            Bucket: name,
            ObjectLockConfiguration: { ObjectLockEnabled: "Enabled" },
          }),
        );
      return name;
    },
    async stop() {
      client.destroy();
      await stopCluster();
    },
  };
}
