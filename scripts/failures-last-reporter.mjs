// Repeats every failed test's name and first error line after vitest's summary: CI keeps only the
// tail of a run's output, where the default reporter's summary says how many failed but not which.
export default class FailuresLastReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    const lines = [];
    for (const mod of testModules) {
      const file = mod.moduleId.replace(`${process.cwd()}/`, "");
      for (const err of mod.errors?.() ?? []) lines.push(`${file}: ${firstLine(err)}`);
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result?.state === "failed")
          lines.push(`${file} > ${test.fullName}: ${firstLine(result.errors?.[0])}`);
      }
    }
    for (const err of unhandledErrors ?? []) lines.push(`unhandled: ${firstLine(err)}`);
    if (lines.length === 0) return;
    console.log(`\nFailed (${lines.length}), repeated here so the end of the log names them:`);
    for (const line of lines) console.log(`  ${line.slice(0, 400)}`);
  }
}

function firstLine(err) {
  return String(err?.message ?? err ?? "").split("\n")[0];
}
