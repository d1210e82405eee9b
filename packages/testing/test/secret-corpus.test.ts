import { describe, it, expect } from "vitest";
import { lintSource } from "@secretlint/core";
import { creator as recommended } from "@secretlint/secretlint-rule-preset-recommend";
import { scanText, redactBytes, SECRET_RULES } from "@paas-backup/core/redact";
import { SECRET_SAMPLES, BENIGN_SAMPLES } from "../src/index.js";

const rulesOf = (text: string) => [
  ...new Set(scanText("releases/r-41/compose.yaml", Buffer.from(text)).map((f) => f.rule)),
];

async function secretlintFinds(text: string): Promise<boolean> {
  const result = await lintSource({
    source: { content: text, filePath: "/corpus/compose.yaml", ext: ".yaml", contentType: "text" },
    options: {
      config: { rules: [{ id: "@secretlint/secretlint-rule-preset-recommend", rule: recommended as never }] },
      maskSecrets: true,
    },
  });
  return result.messages.length > 0;
}

describe("secret corpus (gitleaks' and secretlint's formats, benign look-alikes)", () => {
  it("has at least two realistic examples of every rule the scanner reports", () => {
    for (const rule of SECRET_RULES)
      expect(SECRET_SAMPLES.filter((s) => s.rule === rule).length, rule).toBeGreaterThanOrEqual(2);
  });

  it("finds every example under its rule and redacts its value", () => {
    const missed = SECRET_SAMPLES.filter((s) => !rulesOf(s.text).includes(s.rule)).map(
      (s) => `${s.rule}: ${s.text.slice(0, 60)}`,
    );
    expect(missed).toEqual([]);
    for (const s of SECRET_SAMPLES) {
      const { content, findings } = redactBytes("compose.yaml", Buffer.from(s.text));
      expect(content.toString("latin1"), s.rule).not.toContain(s.value);
      expect(content.toString("latin1"), s.rule).toContain("<redacted>");
      expect(JSON.stringify(findings)).not.toContain(s.value);
      // a redacted copy is clean: nothing left to find
      expect(rulesOf(content.toString("latin1")), s.rule).toEqual([]);
    }
  });

  it("reports none of the benign look-alikes", () => {
    const noisy = BENIGN_SAMPLES.map((b) => ({ label: b.label, rules: rulesOf(b.text) })).filter(
      (b) => b.rules.length > 0,
    );
    expect(noisy).toEqual([]);
  });

  it("keeps JSON valid when a value inside a JSON string is redacted", () => {
    for (const s of SECRET_SAMPLES.filter((x) => x.text.startsWith("{"))) {
      const { content } = redactBytes("deployments.json", Buffer.from(s.text));
      expect(() => JSON.parse(content.toString("utf8")), s.rule).not.toThrow();
    }
  });

  it("catches every corpus example that secretlint's recommended preset catches, and is quiet where it is", async () => {
    let secretlintHits = 0;
    const weMiss: string[] = [];
    for (const s of SECRET_SAMPLES) {
      if (await secretlintFinds(s.text)) {
        secretlintHits++;
        if (rulesOf(s.text).length === 0) weMiss.push(s.rule);
      }
    }
    let secretlintNoise = 0;
    for (const b of BENIGN_SAMPLES) if (await secretlintFinds(b.text)) secretlintNoise++;
    const ours = SECRET_SAMPLES.filter((s) => rulesOf(s.text).includes(s.rule)).length;
    const ourNoise = BENIGN_SAMPLES.filter((b) => rulesOf(b.text).length > 0).length;
    console.log(
      `corpus: ${SECRET_SAMPLES.length} secrets of ${SECRET_RULES.length} rules, ${BENIGN_SAMPLES.length} benign look-alikes; ` +
        `paas-backup recall ${ours}/${SECRET_SAMPLES.length}, false positives ${ourNoise}/${BENIGN_SAMPLES.length}; ` +
        `secretlint preset-recommend recall ${secretlintHits}/${SECRET_SAMPLES.length}, false positives ${secretlintNoise}/${BENIGN_SAMPLES.length}`,
    );
    expect(weMiss).toEqual([]);
    expect(secretlintHits).toBeGreaterThan(SECRET_SAMPLES.length / 3);
  });
});
