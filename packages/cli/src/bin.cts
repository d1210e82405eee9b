#!/usr/bin/env node
/**
 * The `paas-backup` command: sizes libuv's threadpool, then runs the CLI (main.js).
 *
 * The threadpool runs a snapshot's file reads and the deflate of its gzip members. Node sizes it
 * at 4 threads when it is first used, which is before any ES module's code runs, so only a
 * CommonJS entry can choose. On a 2-core host, 4 pool threads beside the main thread and the
 * secret scanner's worker made 6 runnable threads on 2 cores: the main thread, which feeds them
 * all, got a third of a core at times and the pipeline stalled (bench/: a 512 MiB full took 1.82 s
 * with 4 pool threads, 1.63 s with 2). So the pool is as large as the CPUs, between 2 and 4
 * (Node's default). An operator's UV_THREADPOOL_SIZE is kept as it is.
 */
import { availableParallelism } from "node:os";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

if (process.env.UV_THREADPOOL_SIZE === undefined)
  process.env.UV_THREADPOOL_SIZE = String(Math.min(4, Math.max(2, availableParallelism())));

/*
 * Peak RSS (issue 23: < 150 MiB at any size). A snapshot's gzip members and a restore's inflated
 * ones are short-lived Buffers; V8 frees their memory only when it collects their young wrappers,
 * and it does that for outside memory only after about 64 MiB of it piled up: on si's less
 * compressible logs that was 40-60 MiB of dead buffers at the peak. A young-generation collection
 * every 100 ms (about a millisecond each) keeps that pile small: an encrypted 128 MiB full went
 * from 146 to 133 MiB.
 */
/*
 * Paced by work done, not by the clock: a collection once the process (every thread: deflate,
 * the scanner's worker, reads) has spent MINOR_GC_CPU_US of CPU since the last one. On an idle
 * 2-core host that is about every 100 ms, as before; on a loaded one, where a snapshot gets a
 * fraction of the CPU and takes several times as long, a collection every 100 ms of wall time was
 * several times as many collections for the same garbage (a 256 MiB full of the bench's long lines
 * spent 2 s of its main thread's CPU in them at a load average of 13).
 */
const MINOR_GC_CPU_US = 150_000;
try {
  setFlagsFromString("--expose-gc");
  const collect = runInNewContext("gc") as ((options: { type: "minor" }) => void) | undefined;
  if (typeof collect === "function") {
    let last = process.cpuUsage();
    setInterval(() => {
      const used = process.cpuUsage(last);
      if (used.user + used.system < MINOR_GC_CPU_US) return;
      collect({ type: "minor" });
      last = process.cpuUsage();
    }, 100).unref();
  }
} catch {
  // a runtime without the flag: memory is left to V8's own schedule
}

void import("./main.js");
