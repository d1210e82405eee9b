import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { workerScanLane } from "../src/snapshot/scan-lane.js";

// The built worker (the test command builds before it runs the tests).
const WORKER = new URL("../dist/snapshot/scan-worker.js", import.meta.url);
const TOKEN = "ghp_R4nd0mF4k3T0k3nF0rT3st1ngPurp0s3s123";
const clean = Buffer.from('{"status":"succeeded","app":"web"}\n'.repeat(50));

describe("the scanner's worker lane", () => {
  it("keeps the files of snapshots sharing one lane apart, a token cut across chunks included", async () => {
    const lane = workerScanLane(WORKER, 0);
    try {
      const a = lane.file("events/a.jsonl", [], 1);
      const b = lane.file("events/b.jsonl", [], 1);
      const line = Buffer.from(`{"error_message":"git clone https://${TOKEN}@github.com/x: 128"}\n`);
      const cut = line.indexOf("R4nd");
      expect(await a.push(Buffer.concat([clean, line.subarray(0, cut)]))).toBe(0);
      expect(await b.push(clean)).toBe(0); // b's chunk between a's halves
      expect(await a.push(line.subarray(cut))).toBe(1);
      expect(await b.push(clean)).toBe(0);
      expect(await a.end()).toBe(1);
      expect(await b.end()).toBe(0);
    } finally {
      await lane.close();
    }
  });

  it("is final once closed: later files are scanned inline and still find what they hold", async () => {
    const lane = workerScanLane(WORKER, 0);
    const a = lane.file("events/a.jsonl", [], 1);
    expect(await a.push(clean)).toBe(0);
    await lane.close();
    await expect(a.push(clean)).rejects.toThrow(/closed/);
    const later = lane.file("events/c.jsonl", [], 1);
    expect(await later.push(Buffer.from(`token=${TOKEN}\n`))).toBe(1);
    expect(await later.end()).toBe(1);
  });

  it("fails with ScanWorkerFailed, naming why, when the worker cannot start", async () => {
    const lane = workerScanLane(new URL("./no-such-worker.js", WORKER), 0);
    try {
      const a = lane.file("events/a.jsonl", [], 1);
      await expect(a.push(clean)).rejects.toThrow(/secret scanner's worker thread failed/);
    } finally {
      await lane.close();
    }
  });

  it("started ahead, is taken by the next snapshot and, unused, never keeps a process alive", () => {
    // Run against the built module, as the CLI does (`paas-backup tick` with nothing due hung
    // on a worker started ahead and never asked, until the lane unreferenced it after its listeners).
    const lane = new URL("../dist/snapshot/scan-lane.js", import.meta.url).href;
    const dir = mkdtempSync(join(tmpdir(), "pb-prestart-"));
    const script = join(dir, "prestart.mjs");
    writeFileSync(
      script,
      `const { prestartScanWorker, defaultScanLane, WORKER_SCAN_BYTES } = await import(${JSON.stringify(lane)});
      prestartScanWorker();
      if (process.argv[2] === "use") {
        const scan = defaultScanLane().file("events/a.jsonl", [], WORKER_SCAN_BYTES);
        console.log(await scan.push(Buffer.from("token=ghp_R4nd0mF4k3T0k3nF0rT3st1ngPurp0s3s123\\n")));
      }
      console.log("done");`,
    );
    try {
      for (const mode of ["idle", "use"]) {
        const r = spawnSync(process.execPath, [script, mode], { encoding: "utf8", timeout: 15_000 });
        expect(r.error, `${mode}: the process did not exit`).toBeUndefined();
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout.trim().split("\n")).toEqual(mode === "use" ? ["1", "done"] : ["done"]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
