import { describe, it, expect } from "vitest";
import { MemoryFileSystem, MemoryStorage } from "@paas-backup/testing";
import { newIncidentRecord, writeIncident } from "../src/records/incident.js";
import { verifyRecordChain } from "../src/records/chain.js";
import { pushRecordsHead, readOffsiteRecordsHead } from "../src/records/offsite-head.js";
import { generateSigningKeyFile, verifySignature } from "../src/signing/sshsig.js";

/** Issue 24 §2 on the memory fs: signed incident records, and the chain head kept offsite. */
const ROOT = "/backups";
const CTX = "internal-dogfood";

function record(ticket: string, startedAt: string) {
  return newIncidentRecord({
    kind: "restore",
    ticket,
    context: CTX,
    stateRoot: "/state",
    operator: "op",
    startedAt,
  });
}

describe("signed records and the offsite chain head", () => {
  it("a signed record's .sig verifies its bytes; an edited record breaks its signature in the chain check", async () => {
    const fs = new MemoryFileSystem();
    const { key } = generateSigningKeyFile("host-a");
    const first = await writeIncident(
      fs,
      ROOT,
      record("INC-1", "2026-10-01T00:00:00.000Z"),
      "incidents",
      key,
    );
    const second = await writeIncident(
      fs,
      ROOT,
      record("INC-2", "2026-10-02T00:00:00.000Z"),
      "incidents",
      key,
    );
    for (const file of [first, second]) {
      const check = verifySignature(
        Buffer.from(await fs.readFile(`${file}.sig`)).toString("utf8"),
        Buffer.from(await fs.readFile(file)),
      );
      expect(check).toMatchObject({ state: "valid", fingerprint: key.fingerprint });
    }
    expect((await verifyRecordChain(fs, ROOT, CTX)).problems).toEqual([]);
    // the newest record edited in place: no successor names its hash, only its signature tells
    const text = Buffer.from(await fs.readFile(second)).toString("utf8");
    await fs.writeFile(second, text.replace('"INC-2"', '"INC-X"'), { mode: 0o600 });
    const after = await verifyRecordChain(fs, ROOT, CTX);
    expect(after.ok).toBe(false);
    expect(after.problems).toEqual([
      expect.stringMatching(/^incidents\/.*INC-2\.json does not match its signature/),
    ]);
  });

  it("the head pushed offsite names the newest record; deleting that record at home is found from it", async () => {
    const fs = new MemoryFileSystem();
    const view = new MemoryStorage();
    await writeIncident(fs, ROOT, record("INC-1", "2026-10-01T00:00:00.000Z"));
    const newest = await writeIncident(fs, ROOT, record("INC-2", "2026-10-02T00:00:00.000Z"));
    const now = new Date("2026-10-03T00:00:00Z");
    const head = await pushRecordsHead({ fs, backupRoot: ROOT, context: CTX, view, now });
    expect(head?.file).toBe(`incidents/${newest.split("/").pop()}`);
    expect((await readOffsiteRecordsHead(view, CTX))?.head).toEqual(head);
    // unchanged head: not written again
    const before = view.objects.get(`${CTX}/records-head.json`);
    await pushRecordsHead({
      fs,
      backupRoot: ROOT,
      context: CTX,
      view,
      now: new Date("2026-10-04T00:00:00Z"),
    });
    expect(view.objects.get(`${CTX}/records-head.json`)).toBe(before);

    await fs.rm(newest);
    const offsiteHeads = [{ where: "nfs", head: (await readOffsiteRecordsHead(view, CTX))!.head }];
    // without the offsite head the shortened chain looks whole
    expect((await verifyRecordChain(fs, ROOT, CTX)).ok).toBe(true);
    const check = await verifyRecordChain(fs, ROOT, CTX, null, offsiteHeads);
    expect(check.problems).toEqual([`${head!.file}, the newest record as copied to nfs, is gone`]);
  });
});
