import { describe, it, expect } from "vitest";
import { scanLine, scanText, isSecretLikeKey, SecretScanner, hardExclusionReason } from "../src/index.js";

describe("secret scanner (si's guardrail rules plus token formats)", () => {
  it("flags si-style assignments with a real value and lets references, ciphertext and redactions pass", () => {
    expect(scanLine("DB_PASSWORD=hunter2")).toEqual(["secret-assignment"]);
    expect(scanLine("  - api_key: 'abc123'  # prod")).toEqual(["secret-assignment"]);
    for (const ok of ["DB_PASSWORD=", "DB_PASSWORD=${DB_PASSWORD}", "TOKEN=$TOKEN", "SECRET=ENC[abc]", "TOKEN: null", "TOKEN: ~", "PASSWORD={}", "# PASSWORD=hunter2", "TOKEN=<redacted>", "DB_PASSWORD=encrypted:si:v2:AAAA", "name=web"])
      expect(scanLine(ok), ok).toEqual([]);
  });

  it("flags JSON fields with secret-like keys, but not si's redacted audit fields or exempt counters", () => {
    expect(scanLine('{"fields":{"api_token":"tok-live-123"}}')).toContain("secret-json-field");
    expect(scanLine('{"fields":{"api_token":"<redacted>","token_count":"3"}}')).toEqual([]);
    expect(scanLine('{"vars":{"POSTGRES_PASSWORD":"${POSTGRES_PASSWORD}"}}')).toEqual([]);
    expect(isSecretLikeKey("secret_findings_count")).toBe(false);
    expect(isSecretLikeKey("client_secret")).toBe(true);
  });

  it("recognises common token formats anywhere in a line", () => {
    const cases: [string, string][] = [
      ["-----BEGIN OPENSSH PRIVATE KEY-----", "private-key-block"],
      ["key AKIAABCDEFGHIJKLMNOP used", "aws-access-key-id"],
      [`ghp_${"a".repeat(36)}`, "github-token"],
      ["Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "bearer-token"],
      ["postgres://app:s3cretpass@db:5432/app", "url-credentials"],
      [`AGE-SECRET-KEY-1${"Q".repeat(58)}`, "age-secret-key"],
      [`xoxb-${"1".repeat(12)}-abc`, "slack-token"],
    ];
    for (const [line, rule] of cases) expect(scanLine(line), line).toContain(rule);
  });

  it("reports file, line and rule (never the value) across chunk boundaries, and honours allowances", () => {
    const text = `${"x\n".repeat(5)}PASSWORD=hunter2-value\n${"y\n".repeat(3)}`;
    const scanner = new SecretScanner("targets.json");
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; i += 7) scanner.push(bytes.subarray(i, i + 7));
    const findings = scanner.end();
    expect(findings).toEqual([{ path: "targets.json", line: 6, rule: "secret-assignment" }]);
    expect(JSON.stringify(findings)).not.toContain("hunter2");
    expect(scanText("targets.json", bytes, [{ path: "targets.json", rule: "secret-assignment" }])).toEqual([]);
  });

  it("keeps vault material, secret files, key files and data volumes out by name", () => {
    for (const p of ["vault/secrets.env", "vault/", "releases/r1/secrets.env", "alerts/telegram.json", "x.secret", "releases/r1/.env", "releases/r1/prod.env", "cache/tls.key", "cache/cert.pem", "releases/id_ed25519", "cache/secrets-export.txt", "cache/decrypted-dump.json", "releases/volumes/db/data"])
      expect(hardExclusionReason(p), p).not.toBeNull();
    for (const p of ["config.json", "events/audit.jsonl", "releases/r-1/compose.yaml", "cache/targets.probe.json"]) expect(hardExclusionReason(p), p).toBeNull();
  });
});
