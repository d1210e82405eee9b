import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import {
  mkdtempSync,
  writeFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  existsSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const coreDir = resolve(import.meta.dirname, "..");
const repoDir = resolve(coreDir, "../..");

describe("@paas-backup/core as a published package", () => {
  // One pack and one install for both tests: the tarball is what a caller gets from the registry.
  let work: string;
  let project: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "pb-pack-"));
    execFileSync("npx", ["--yes", "pnpm@10", "pack", "--pack-destination", work], {
      cwd: coreDir,
      stdio: "pipe",
    });
    const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"))!;
    expect(tarball).toMatch(/^paas-backup-core-\d+\.\d+\.\d+\.tgz$/);
    project = join(work, "consumer");
    mkdirSync(project);
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "consumer", private: true, type: "module" }),
    );
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", join(work, tarball)], {
      cwd: project,
      stdio: "pipe",
    });
  }, 180_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("installs from its packed tarball into a separate project and takes a snapshot from there", () => {
    // The S3 driver is its own package: a tool that writes to a local folder gets no AWS SDK.
    expect(existsSync(join(project, "node_modules", "@paas-backup", "core"))).toBe(true);
    expect(existsSync(join(project, "node_modules", "@aws-sdk"))).toBe(false);
    expect(readdirSync(join(project, "node_modules")).filter((d) => /aws|smithy/.test(d))).toEqual([]);
    const ctx = join(work, "state", "contexts", "oss-demo");
    mkdirSync(join(ctx, "events"), { recursive: true });
    writeFileSync(
      join(ctx, "config.json"),
      `${JSON.stringify({ name: "oss-demo", type: "oss-demo" }, null, 2)}\n`,
    );
    writeFileSync(
      join(ctx, "events", "audit.jsonl"),
      '{"timestamp":"2026-11-24T00:00:00Z","context":"oss-demo","source":"audit","command":"doctor","status":"succeeded"}\n',
    );
    writeFileSync(
      join(project, "embed.mjs"),
      `import { createSnapshot, verifySnapshots, openTarget } from "@paas-backup/core";
import { nodeFs } from "@paas-backup/core/node";
const r = await createSnapshot({ fs: nodeFs, stateRoot: ${JSON.stringify(join(work, "state"))}, backupRoot: ${JSON.stringify(join(work, "backups"))}, context: "oss-demo", clock: () => new Date(), insecurePlaintext: true });
const [v] = await verifySnapshots({ fs: nodeFs, backupRoot: ${JSON.stringify(join(work, "backups"))}, context: "oss-demo", snapshot: r.id, deep: true });
const s3 = await openTarget("s3://bucket/prefix", { fs: nodeFs }).then(() => "opened", (e) => e.code);
console.log(JSON.stringify({ id: r.id, files: r.files, absent: r.absent.length, ok: v.ok, s3 }));`,
    );
    const out = JSON.parse(execFileSync("node", ["embed.mjs"], { cwd: project, encoding: "utf8" }));
    // Policy §7.1 holds for an SDK caller: no backup root inside a git work tree, also not through a symlink.
    const repo = join(work, "repo");
    mkdirSync(join(repo, ".git"), { recursive: true });
    mkdirSync(join(repo, "backups"));
    symlinkSync(join(repo, "backups"), join(work, "innocent-looking-backups"));
    writeFileSync(
      join(project, "guard.mjs"),
      `import { createSnapshot } from "@paas-backup/core";
import { nodeFs } from "@paas-backup/core/node";
const out = {};
for (const [name, backupRoot] of Object.entries({ direct: ${JSON.stringify(join(repo, "backups"))}, symlink: ${JSON.stringify(join(work, "innocent-looking-backups"))} })) {
  try {
    await createSnapshot({ fs: nodeFs, stateRoot: ${JSON.stringify(join(work, "state"))}, backupRoot, context: "oss-demo", clock: () => new Date(), insecurePlaintext: true });
    out[name] = "written";
  } catch (e) {
    out[name] = { name: e.name, code: e.code, exitCode: e.exitCode, message: e.message, repository: e.data?.repository };
  }
}
console.log(JSON.stringify(out));`,
    );
    const guard = JSON.parse(execFileSync("node", ["guard.mjs"], { cwd: project, encoding: "utf8" }));
    for (const name of ["direct", "symlink"]) {
      expect(guard[name]).toMatchObject({
        name: "SafetyError",
        code: "PAAS_BACKUP_UNSAFE_LOCATION",
        exitCode: 4,
        repository: repo,
      });
      expect(guard[name].message).toContain("inside the git work tree");
    }
    expect(readdirSync(join(repo, "backups"))).toEqual([]);
    // s3:// needs @paas-backup/s3 beside core: without it, a typed usage error, not a crash
    expect(out).toMatchObject({ files: 2, absent: 8, ok: true, s3: "PAAS_BACKUP_PACKAGE_MISSING" });
    expect(out.id).toMatch(/^\d{8}T\d{6}Z$/);
  });

  it("the README's SDK examples type-check against the packed package (tsc --noEmit, strict)", () => {
    const readme = readFileSync(join(repoDir, "README.md"), "utf8");
    const sdk = /^## SDK\n([\s\S]*?)^## /m.exec(readme)![1]!;
    const blocks = [...sdk.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
    // the issue asks for three: a snapshot, a restore and a composed session
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    expect(blocks.some((b) => b.includes("createSnapshot("))).toBe(true);
    expect(blocks.some((b) => b.includes("restoreSnapshot("))).toBe(true);
    expect(blocks.some((b) => b.includes("withContext("))).toBe(true);
    const dir = join(project, "readme");
    mkdirSync(dir, { recursive: true });
    const files = blocks.map((code, i) => {
      const file = join(dir, `sdk-${i + 1}.ts`);
      writeFileSync(file, code);
      return file;
    });
    // Node's types from the workspace (the examples use process and node:fs); core's types only
    // from the installed tarball. The examples are checked strictly; the .d.ts files they resolve
    // (core's are tsc's own output) are not re-checked: that took 9 s of CPU for zod's alone.
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ["node"],
          typeRoots: [join(repoDir, "node_modules", "@types")],
        },
        files,
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [join(repoDir, "node_modules", "typescript", "bin", "tsc"), "-p", project],
      {
        cwd: project,
        encoding: "utf8",
      },
    );
    expect(tsc.stdout + tsc.stderr).toBe("");
    expect(tsc.status).toBe(0);
  }, 120_000);
});
