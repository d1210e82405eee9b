import { describe, it, expect } from "vitest";
import { MemoryFileSystem } from "@paas-backup/testing";
import { listEvents } from "../src/validate/index.js";

describe("events list over the restored logs", () => {
  it("returns the newest records of the three logs, normalised as si does, with sensitive fields redacted", async () => {
    const fs = new MemoryFileSystem();
    const dir = "/s/contexts/c";
    await fs.mkdir(`${dir}/events`, { recursive: true });
    await fs.writeFile(
      `${dir}/events/deployments.jsonl`,
      '{"timestamp":"2026-01-01T00:00:03Z","source":"si paas","command":"deploy","status":"failed","app":"web"}\nnot json\n\n',
    );
    await fs.writeFile(
      `${dir}/events/alerts.jsonl`,
      '{"timestamp":"2026-01-01T00:00:02Z","command":"alert send","status":"sent","message":"disk","fields":{"bot_token":"123:AAsecretvalue","chat_id":"1"}}\n',
    );
    await fs.writeFile(
      `${dir}/events/audit.jsonl`,
      '{"timestamp":"2026-01-01T00:00:01Z","source":"audit","command":"doctor","status":"succeeded","fields":{"api_key":"plain-value","secret_findings_count":"2"}}\n{"timestamp":"2026-01-01T00:00:04Z","source":"au',
    );
    const { records, logs } = await listEvents(fs, dir, 20);
    expect(records.map((r) => [r.timestamp, r.source, r.severity])).toEqual([
      ["2026-01-01T00:00:03Z", "deploy", "critical"],
      ["2026-01-01T00:00:02Z", "alert", "info"],
      ["2026-01-01T00:00:01Z", "audit", "info"],
    ]);
    expect(records[0]!.fields).toEqual({ app: "web" });
    expect(records[1]!.fields).toEqual({ bot_token: "<redacted>", chat_id: "1" });
    expect(records[2]!.fields).toEqual({ api_key: "<redacted>", secret_findings_count: "2" });
    expect(JSON.stringify(records)).not.toMatch(/secretvalue|plain-value/);
    expect(logs[0]!.invalidLines).toEqual([2]);
    expect(logs[2]).toMatchObject({ tornTail: true, invalidLines: [] });
    expect((await listEvents(fs, dir, 1)).records).toHaveLength(1);
  });
});

describe("events list reads each log from its end", () => {
  const stamp = (i: number) => new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  const line = (i: number) =>
    `{"timestamp":"${stamp(i)}","source":"audit","command":"doctor","status":"succeeded"}`;

  it("lists the newest records of a large log without reading its beginning, and names damage near the end", async () => {
    const fs = new MemoryFileSystem();
    const dir = "/s/contexts/c";
    await fs.mkdir(`${dir}/events`, { recursive: true });
    const lines = Array.from({ length: 20_000 }, (_, i) => line(i));
    lines[4] = "damaged early";
    lines[19_990] = "damaged late";
    await fs.writeFile(`${dir}/events/audit.jsonl`, `${lines.join("\n")}\n`);
    const ranges: number[] = [];
    const readRange = fs.readRange.bind(fs);
    fs.readRange = async (path: string, position: number, length: number) => {
      ranges.push(length);
      return readRange(path, position, length);
    };
    const { records, logs } = await listEvents(fs, dir, 20);
    expect(records).toHaveLength(20);
    expect(records[0]!.timestamp).toBe(stamp(19_999));
    const audit = logs.find((l) => l.path.endsWith("audit.jsonl"))!;
    expect(audit).toMatchObject({ complete: false, invalidLines: [], invalidLinesFromEnd: [10] });
    expect(ranges.reduce((n, r) => n + r, 0)).toBeLessThan(200 * 1024);
  });

  it("numbers lines from the start when the whole log was read, torn last line longer than a read window included", async () => {
    const fs = new MemoryFileSystem();
    const dir = "/s/contexts/c";
    await fs.mkdir(`${dir}/events`, { recursive: true });
    await fs.writeFile(
      `${dir}/events/audit.jsonl`,
      `${line(1)}\nnot json\n${line(2)}\n{"timestamp":"2026-01-01T00:00:09Z","message":"${"x".repeat(100_000)}`,
    );
    const { records, logs } = await listEvents(fs, dir, 20);
    expect(records.map((r) => r.timestamp)).toEqual([stamp(2), stamp(1)]);
    expect(logs.find((l) => l.path.endsWith("audit.jsonl"))).toMatchObject({
      complete: true,
      tornTail: true,
      invalidLines: [2],
      invalidLinesFromEnd: [],
    });
  });
});
