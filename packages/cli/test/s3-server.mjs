// A real S3-compatible server (s3rver) on 127.0.0.1 for the offsite tests, in its own process.
// Run with --openssl-legacy-provider: s3rver 3.7 makes ListObjectsV2 continuation tokens with DES.
// It prints {"port": N} once listening, and stops when its stdin closes (it never outlives the test).
import S3rver from "s3rver";

const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: process.argv[2] });
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);
process.stdin.resume();
process.stdin.on("end", async () => {
  await server.close();
  process.exit(0);
});
