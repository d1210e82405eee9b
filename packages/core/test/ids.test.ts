import { describe, it, expect } from "vitest";
import { formatSnapshotId, parseSnapshotId, compareSnapshotIds } from "../src/repository/index.js";
import { validateContextName } from "../src/snapshot/index.js";

describe("snapshot ids and context names", () => {
  it("uses the policy's UTC timestamp and orders same-second sequences", () => {
    const t = new Date("2026-02-17T05:06:07.890Z");
    expect(formatSnapshotId(t)).toBe("20260217T050607Z");
    expect(formatSnapshotId(t, 2)).toBe("20260217T050607Z-2");
    expect(parseSnapshotId("20260217T050607Z-2")).toEqual({
      time: new Date("2026-02-17T05:06:07Z"),
      sequence: 2,
    });
    expect(parseSnapshotId("2026-02-17")).toBeNull();
    const ids = ["20260217T050607Z-10", "20260217T050607Z", "20260217T050607Z-2", "20260101T000000Z"];
    expect(ids.sort(compareSnapshotIds)).toEqual([
      "20260101T000000Z",
      "20260217T050607Z",
      "20260217T050607Z-2",
      "20260217T050607Z-10",
    ]);
  });

  it("refuses context names that could leave their folder", () => {
    for (const bad of ["", ".", "..", "a/b", "a\\b", "x\ny", ".hidden"])
      expect(() => validateContextName(bad), JSON.stringify(bad)).toThrow(/context name/);
    expect(validateContextName("customer-42")).toBe("customer-42");
  });
});
