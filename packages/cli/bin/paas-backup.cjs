#!/usr/bin/env node
// The installed `paas-backup` command. It is a file of the checkout, not of the build, so that
// `pnpm install` (which links bins before anything is built) can link it in the workspace root:
// `pnpm exec paas-backup` works there once `pnpm run build` has run. dist/bin.cjs sizes libuv's
// threadpool before any ES module loads, which only a CommonJS entry can do.
require("../dist/bin.cjs");
