// Preloaded into the CLI under benchmark: records the process's peak resident memory at exit.
process.on("exit", () => {
  if (process.env.BENCH_RSS_FILE)
    require("node:fs").writeFileSync(
      process.env.BENCH_RSS_FILE,
      String(process.resourceUsage().maxRSS * 1024),
    );
});
