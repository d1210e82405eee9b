import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, randomUUID } from "node:crypto";
import { ExitCode } from "@paas-backup/core/errors";
import { ageDecryptor, ageEncryptor, generateIdentityFile } from "@paas-backup/core/age";
import { contextDir } from "@paas-backup/core/policy";
import { createSnapshot } from "@paas-backup/core/snapshot";
import { restoreSnapshot, verifySnapshots } from "@paas-backup/core/restore";
import type { FileSystem } from "@paas-backup/core/fs";
import type { Runtime } from "../runtime.js";
import { humanBytes } from "../render/text.js";
import { printEnvelope } from "../envelope.js";

async function treeDigest(
  fs: FileSystem,
  root: string,
  rel = "",
  out = new Map<string, string>(),
): Promise<Map<string, string>> {
  for (const e of await fs.readdir(rel ? join(root, rel) : root)) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.kind === "directory") await treeDigest(fs, root, path, out);
    else if (e.kind === "file")
      out.set(
        path,
        createHash("sha256")
          .update(await fs.readFile(join(root, path)))
          .digest("hex"),
      );
  }
  return out;
}

/**
 * paas-backup demo: the whole round trip on a throwaway state root, so a new operator sees
 * every step work before pointing the tool at real state. Steps: sample state → key → full and
 * incremental snapshots → deep verify → restore → compare, each said as it is done.
 */
export async function demoCommand(rt: Runtime, flags: { keep?: boolean }): Promise<number> {
  const work = join(tmpdir(), `paas-backup-demo-${randomUUID().slice(0, 12)}`);
  await rt.fs.mkdir(work, { mode: 0o700 });
  const steps: { step: string; detail: string }[] = [];
  const demo: Demo = {
    fs: rt.fs,
    rt,
    work,
    context: "internal-dogfood",
    backupRoot: join(work, "backups"),
    say: (step, detail) => {
      steps.push({ step, detail });
      if (!rt.json) rt.write(`${step.padEnd(10)} ${detail}\n`);
    },
  };
  try {
    const source = await sampleState(demo);
    const key = await generateIdentityFile(rt.clock());
    demo.say("keygen", `age identity for this demo only; recipient ${key.recipient}`);
    const full = await snapshotTwice(demo, source, key.recipient);
    const decryptor = ageDecryptor([key.identity]);
    const allOk = await verifyAll(demo, decryptor);
    const target = join(work, "restored");
    const restored = await restoreSnapshot({
      fs: demo.fs,
      stateRoot: target,
      backupRoot: demo.backupRoot,
      context: demo.context,
      snapshot: "latest",
      ticket: "DEMO-1",
      operator: "demo",
      clock: rt.clock,
      decryptor,
    });
    demo.say(
      "restore",
      `${restored.snapshot.id} into ${target}: outcome ${restored.outcome}, doctor ${restored.doctor?.ok ? "ok" : "FAILED"}, incident record ${restored.incidentFile}`,
    );
    const same = await compareRoundTrip(demo, source, full.excluded, target);
    const ok = allOk && restored.ok && same;
    if (rt.json) printEnvelope(rt, { ok, context: demo.context, mode: "live", data: steps });
    else rt.write(ok ? `demo ok${flags.keep ? `; files kept in ${work}` : ""}\n` : "demo FAILED\n");
    // a round trip that does not hold is a bug in paas-backup
    return ok ? ExitCode.ok : ExitCode.unexpected;
  } finally {
    if (!flags.keep) await rt.fs.rm(work, { recursive: true, force: true });
  }
}

/** The throwaway places the demo works in, and how each step is said. */
interface Demo {
  fs: FileSystem;
  rt: Runtime;
  work: string;
  context: string;
  backupRoot: string;
  say: (step: string, detail: string) => void;
}

type SampleState = Awaited<ReturnType<typeof import("@paas-backup/core/sample").createStateRoot>>;

/**
 * A sample state root with planted secrets. The generator ships in core (@paas-backup/core/sample),
 * loaded only here, so an installed CLI runs the demo without @paas-backup/testing (a development
 * dependency only).
 */
async function sampleState(demo: Demo): Promise<SampleState> {
  const { createStateRoot } = await import("@paas-backup/core/sample");
  const { context } = demo;
  const source = await createStateRoot({
    fs: demo.fs,
    root: join(demo.work, "state"),
    contexts: [{ name: context, eventBytes: 2 * 1024 * 1024, releases: 3 }],
  });
  demo.say(
    "state",
    `sample state root ${source.stateRoot}: context ${context}, ten protected files, 2 MiB of events, ${source.planted.length} planted secrets that must stay out`,
  );
  return source;
}

/** An encrypted full, new audit lines, then an incremental on it: the chain a restore replays. Returns the full. */
async function snapshotTwice(
  demo: Demo,
  source: SampleState,
  recipient: string,
): Promise<Awaited<ReturnType<typeof createSnapshot>>> {
  const { appendEvents } = await import("@paas-backup/core/sample");
  const { fs, rt, context, backupRoot } = demo;
  const encryptor = ageEncryptor([recipient]);
  const options = { fs, stateRoot: source.stateRoot, backupRoot, context, clock: rt.clock, encryptor };
  const full = await createSnapshot({ ...options, include: ["releases"] });
  demo.say(
    "snapshot",
    `full ${full.id}: ${full.files} files, ${humanBytes(full.sourceBytes)} of state -> ${humanBytes(full.bytes)} encrypted; excluded ${full.excluded.map((e) => e.path).join(", ")}`,
  );
  await appendEvents(
    fs,
    join(source.contextDir(context), "events", "audit.jsonl"),
    "audit",
    context,
    64 * 1024,
    rt.clock(),
    1_000_000,
  );
  const inc = await createSnapshot({ ...options, include: ["releases"], kind: "incremental" });
  demo.say(
    "snapshot",
    `incremental ${inc.id} on ${inc.parent?.id}: stored ${humanBytes(inc.storedBytes)} of new event lines -> ${humanBytes(inc.bytes)}`,
  );
  return full;
}

/** Every snapshot verified deep (replayed, decrypted). */
async function verifyAll(demo: Demo, decryptor: ReturnType<typeof ageDecryptor>): Promise<boolean> {
  const verified = await verifySnapshots({
    fs: demo.fs,
    backupRoot: demo.backupRoot,
    context: demo.context,
    snapshot: "all",
    deep: true,
    decryptor,
  });
  demo.say(
    "verify",
    verified
      .map(
        (v) =>
          `${v.id} ${v.ok ? "ok" : "FAILED"} (checksum ${v.checksum}, ${v.deep?.files ?? 0} files checked)`,
      )
      .join("; "),
  );
  return verified.every((v) => v.ok);
}

/** The restored context is byte-identical to the source, less what policy excludes, and no planted secret came back. */
async function compareRoundTrip(
  demo: Demo,
  source: SampleState,
  excluded: { path: string }[],
  target: string,
): Promise<boolean> {
  const { fs, context } = demo;
  const before = await treeDigest(fs, source.contextDir(context));
  const after = await treeDigest(fs, contextDir(target, context));
  // The restore appends its own audit event (policy §7.3); compare the log without that last line.
  const audit = Buffer.from(await fs.readFile(join(contextDir(target, context), "events", "audit.jsonl")));
  const withoutRestoreEvent = audit.subarray(0, audit.lastIndexOf(10, audit.length - 2) + 1);
  after.set("events/audit.jsonl", createHash("sha256").update(withoutRestoreEvent).digest("hex"));
  const expected = [...before.keys()].filter((p) =>
    excluded.every((e) => !(p === e.path || (e.path.endsWith("/") && p.startsWith(e.path)))),
  );
  const mismatched = expected.filter((p) => before.get(p) !== after.get(p));
  const leaked = source.planted.filter((s) =>
    [...after.keys()].some((p) => `contexts/${context}/${p}` === s.path),
  );
  const same = mismatched.length === 0 && after.size === expected.length && leaked.length === 0;
  demo.say(
    "compare",
    same
      ? `${expected.length} restored files byte-identical to the source; no planted secret restored`
      : `MISMATCH: ${mismatched.join(", ") || "file sets differ"}${leaked.length ? `; leaked ${leaked.length}` : ""}`,
  );
  return same;
}
