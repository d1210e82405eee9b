import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A real s3rver in its own process on 127.0.0.1 (s3-server.mjs), for the offsite and storage tests. */
export interface S3rver {
  dir: string;
  port: number;
  endpoint: string;
  stop(): Promise<void>;
}

export async function startS3rver(): Promise<S3rver> {
  const dir = mkdtempSync(join(tmpdir(), "pb-s3rver-"));
  // s3rver 3.7 mints continuation tokens with DES, which Node 20's OpenSSL 3 only has in its legacy provider
  const server = spawn(
    process.execPath,
    ["--openssl-legacy-provider", join(import.meta.dirname, "s3-server.mjs"), dir],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const { port } = await new Promise<{ port: number }>((resolve, reject) => {
    let out = "";
    server.stdout!.on("data", (c) => {
      out += c;
      if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!));
    });
    server.on("exit", (code) => reject(new Error(`s3rver exited ${code}`)));
  });
  return {
    dir,
    port,
    endpoint: `http://127.0.0.1:${port}`,
    async stop() {
      server.stdin!.end();
      await new Promise((r) => server.on("exit", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
