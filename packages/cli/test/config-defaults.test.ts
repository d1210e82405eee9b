import { describe, it, expect } from "vitest";
import { DEFAULT_CONFIG } from "../src/runtime.js";
import { Config } from "../src/config-schema.js";

describe("the config without a config file", () => {
  it("is exactly what the schema gives an empty file, so skipping zod changes nothing", () => {
    expect(DEFAULT_CONFIG).toEqual(Config.parse({}));
  });
});
