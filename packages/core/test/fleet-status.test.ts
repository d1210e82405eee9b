import { describe, it, expect } from "vitest";
import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { MemoryStorage } from "@paas-backup/testing";
import { readFleetStatus, writeHostStatus } from "../src/repository/index.js";

// The fleet view from the bucket alone, on the memory bucket whose clock plays the server's.

describe("fleet status from the bucket", () => {
  it("shows every host's contexts, and alerts on a host gone quiet (server time) and on a failed context", async () => {
    let now = Date.parse("2026-12-01T10:00:00Z");
    const storage = new MemoryStorage("memory://fleet", false, () => new Date(now));
    const ok = (context: string, id: string) => ({
      context,
      ok: true,
      lastSnapshot: { id, kind: "full" },
      error: null,
    });
    await writeHostStatus(storage, {
      host: "host-a",
      reportedAt: "2026-12-01T10:00:00Z",
      contexts: [ok("a-1", "20261201T100000Z")],
    });
    now += 3 * 3_600_000; // host-a goes quiet; host-b reports three hours later, one context failing
    await writeHostStatus(storage, {
      host: "host-b",
      // a host's own clock may be wrong: staleness never uses it
      reportedAt: "2020-01-01T00:00:00Z",
      contexts: [
        ok("b-1", "20261201T130000Z"),
        {
          context: "b-2",
          ok: false,
          lastSnapshot: null,
          error: { code: "PAAS_BACKUP_LOCKED", message: "x" },
        },
      ],
    });
    const fleet = await readFleetStatus(storage);
    expect(fleet.hosts.map((h) => [h.host, h.stale, h.ageMs, h.contexts.map((c) => c.context)])).toEqual([
      ["host-a", true, 3 * 3_600_000, ["a-1"]],
      ["host-b", false, 0, ["b-1", "b-2"]],
    ]);
    expect(fleet.alerts).toEqual([
      expect.stringMatching(/^host host-a last reported 180 min ago \(server time; stale after 135 min\)/),
      "host host-b, context b-2: last tick failed (PAAS_BACKUP_LOCKED)",
    ]);
    // a garbled status object is an alert too, never a crash
    const junk = Buffer.from("{half");
    await storage.put("status/host-c.json", Readable.from([junk]), {
      sha256: createHash("sha256").update(junk).digest("hex"),
      size: junk.length,
    });
    expect((await readFleetStatus(storage, { staleAfterMs: 10 * 3_600_000 })).alerts).toEqual([
      "host host-b, context b-2: last tick failed (PAAS_BACKUP_LOCKED)",
      expect.stringMatching(/status\/host-c\.json is not a host status/),
    ]);
    await expect(
      writeHostStatus(storage, { host: "../etc", reportedAt: "", contexts: [] }),
    ).rejects.toMatchObject({ code: "PAAS_BACKUP_INVALID_ARGUMENT" });
  });
});
