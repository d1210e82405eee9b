import { describe, it, expect } from "vitest";
import { Readable } from "node:stream";
import { MemoryStorage } from "@paas-backup/testing";
import {
  acquireLease,
  listCommittedSnapshots,
  readFencedLog,
  relocatedView,
  relocationMap,
  relocationsIn,
  sha256Hex,
  type ObjectStorage,
  type Relocation,
} from "../src/repository/index.js";

// keys rotate on a shared bucket never overwrites: it writes a snapshot's new objects under keys of
// their own and commits a relocation in the context's fenced log. Here, on the in-memory bucket,
// what readers see through it; the whole rotation runs on RGW in packages/cli/test/keys-s3-root.test.ts.

const ID = "20261201T000000Z";
const holder = { host: "h1", pid: 1, command: "keys rotate" };

async function put(storage: ObjectStorage, key: string, text: string): Promise<void> {
  const data = Buffer.from(text);
  await storage.put(key, Readable.from([data]), { sha256: sha256Hex(data), size: data.length });
}

async function text(storage: ObjectStorage, key: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await storage.get(key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

function relocation(rotation: string, keys: Record<string, string>): Relocation {
  return { rotation, snapshot: ID, sha256: "", payloadSha256: "", at: "2026-12-01T01:00:00.000Z", keys };
}

describe("relocations (keys rotate on a shared bucket)", () => {
  it("readers follow the newest committed relocation: list, get, head, locate; a fenced one is ignored; a removed one is not listed", async () => {
    let now = Date.parse("2026-12-01T00:00:00Z");
    const storage = new MemoryStorage("memory://fleet", false, () => new Date(now));
    const artifact = `ctx/${ID}.tar.gz`;
    await put(storage, artifact, "old artifact");
    await put(
      storage,
      `ctx/${ID}.tar.gz.sha256`,
      `${sha256Hex(Buffer.from("old artifact"))}  ${ID}.tar.gz\n`,
    );
    const moved = `ctx/rotations/r1/${ID}/${ID}.tar.gz`;
    await put(storage, moved, "new artifact, longer");
    const lease = await acquireLease({ storage, name: "context/ctx", holder, ttlMs: 10_000 });
    await lease.commit({ snapshot: ID });
    expect((await listCommittedSnapshots(storage, "ctx")).map((s) => s.bytes)).toEqual([12]);
    await lease.commit({ relocation: relocation("r1", { [artifact]: moved }) });

    const [snap] = await listCommittedSnapshots(storage, "ctx");
    expect(snap).toMatchObject({
      id: ID,
      artifactKey: artifact,
      bytes: 20,
      artifactPath: "memory://fleet/" + moved,
    });
    expect(await text(snap!.storage, artifact)).toBe("new artifact, longer");
    expect((await snap!.storage.head(artifact))?.key).toBe(artifact);
    // nothing was overwritten: the old object is still there for a reader that listed before
    expect(await text(storage, artifact)).toBe("old artifact");

    // a holder that paused past its lease tries to commit after another took it over: refused (and
    // readers would ignore it behind the taker's begin entry)
    now += 60_000;
    const taker = await acquireLease({ storage, name: "context/ctx", holder, ttlMs: 10_000 });
    await put(storage, `ctx/rotations/r2/${ID}/${ID}.tar.gz`, "late");
    await lease
      .commit({ relocation: relocation("r2", { [artifact]: `ctx/rotations/r2/${ID}/${ID}.tar.gz` }) })
      .catch(() => undefined);
    const log = await readFencedLog(storage, "context/ctx");
    expect(relocationsIn(log).map((r) => r.rotation)).toEqual(["r1"]);

    // a second rotation by the new holder: the first's object is now superseded, the original too
    await put(storage, `ctx/rotations/r3/${ID}/${ID}.tar.gz`, "third");
    await taker.commit({
      relocation: relocation("r3", { [artifact]: `ctx/rotations/r3/${ID}/${ID}.tar.gz` }),
    });
    const map = relocationMap(relocationsIn(await readFencedLog(storage, "context/ctx")));
    expect(map.current.get(artifact)).toBe(`ctx/rotations/r3/${ID}/${ID}.tar.gz`);
    expect(map.superseded.map((s) => s.key)).toEqual([artifact, moved]);

    // delete through the view removes the object readers see and the original; it is listed no more
    const view = relocatedView(storage, map.current);
    await view.delete(artifact);
    const keys: string[] = [];
    for await (const o of view.list("ctx/", { shallow: true })) keys.push(o.key);
    expect(keys).toEqual([`ctx/${ID}.tar.gz.sha256`]);
    expect(await storage.head(`ctx/rotations/r3/${ID}/${ID}.tar.gz`)).toBeNull();
  });
});
