import { describe, it, expect } from "vitest";
import { DEFAULT_CONFIG } from "../src/runtime.js";
import { Config } from "../src/config-schema.js";

describe("the config without a config file", () => {
  it("is exactly what the schema gives an empty file, so skipping zod changes nothing", () => {
    expect(DEFAULT_CONFIG).toEqual(Config.parse({}));
  });
});

describe("an offsite target's retention", () => {
  it("keeps the numbers written and nothing else: a left-out number is the offsite default (hourly 0), not the local policy's", () => {
    const config = Config.parse({
      offsite: { targets: [{ name: "nfs", url: "file:///srv/offsite", retention: { daily: 1 } }] },
    });
    expect(config.offsite.targets[0]!.retention).toEqual({ daily: 1 });
  });
});
