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

if (process.env.UV_THREADPOOL_SIZE === undefined)
  process.env.UV_THREADPOOL_SIZE = String(Math.min(4, Math.max(2, availableParallelism())));

void import("./main.js");
