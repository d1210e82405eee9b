import { describe, it, expect } from "vitest";
import {
  scanLine,
  scanText,
  isSecretLikeKey,
  SecretScanner,
  redactBytes,
  redactText,
  SCANNER_RULES_VERSION,
  GITLEAKS_RULE_IDS,
} from "../src/policy/redact.js";
import { hardExclusionReason } from "../src/policy/index.js";

describe("secret scanner (si's guardrail rules plus token formats)", () => {
  it("flags si-style assignments with a real value and lets references, ciphertext and redactions pass", () => {
    expect(scanLine("DB_PASSWORD=hunter2")).toEqual(["secret-assignment"]);
    expect(scanLine("  - api_key: 'abc123'  # prod")).toEqual(["secret-assignment"]);
    for (const ok of [
      "DB_PASSWORD=",
      "DB_PASSWORD=${DB_PASSWORD}",
      "TOKEN=$TOKEN",
      "SECRET=ENC[abc]",
      "TOKEN: null",
      "TOKEN: ~",
      "PASSWORD={}",
      "# PASSWORD=hunter2",
      "TOKEN=<redacted>",
      "DB_PASSWORD=encrypted:si:v2:AAAA",
      "name=web",
    ])
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
      ["ghp_4fK9xQ2mZ7pL0vB3nR8tY1wE6sA5dG3hJ2kC", "github-token"],
      ["Authorization: Bearer k3Jf9sLq2mXz8VbN4tR7wY1pE6dA0gHc", "bearer-token"],
      ["postgres://app:s3cretpass@db:5432/app", "url-credentials"],
      ["AGE-SECRET-KEY-15FERYXHRDZ9M6Y09MR8WRERWZGJ6F8NTXVHXYRDLM5AAHN0T09NL4UJY86", "age-secret-key"],
      ["xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1", "slack-token"],
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
    expect(scanText("targets.json", bytes, [{ path: "targets.json", rule: "secret-assignment" }])).toEqual(
      [],
    );
  });

  it("keeps vault material, secret files, key files and data volumes out by name", () => {
    for (const p of [
      "vault/secrets.env",
      "vault/",
      "releases/r1/secrets.env",
      "alerts/telegram.json",
      "x.secret",
      "releases/r1/.env",
      "releases/r1/prod.env",
      "cache/tls.key",
      "cache/cert.pem",
      "releases/id_ed25519",
      "cache/secrets-export.txt",
      "cache/decrypted-dump.json",
      "releases/volumes/db/data",
    ])
      expect(hardExclusionReason(p), p).not.toBeNull();
    for (const p of [
      "config.json",
      "events/audit.jsonl",
      "releases/r-1/compose.yaml",
      "cache/targets.probe.json",
    ])
      expect(hardExclusionReason(p), p).toBeNull();
  });
});

describe("secret scanner: values judged, redaction spans (issues 10 §4, 15)", () => {
  it("does not take policy words, numbers or references under secret-like keys for secrets, and takes random values", () => {
    for (const ok of [
      "password_policy: strong",
      "token_count: 3",
      "DB_PASSWORD: ${DB_PASSWORD}",
      "secret_rotation: required",
      "PASSWORD_MIN_LENGTH=14",
      "api_key_header: X-Api-Key",
      "TOKEN_TTL: 30m",
      "DB_PASSWORD_FILE: /run/secrets/db",
      "ADMIN_PASSWORD: changeme",
      '{"password_policy":"none"}',
    ])
      expect(scanLine(ok), ok).toEqual([]);
    for (const bad of [
      "DB_PASSWORD: Xk9#mQ2vLp7Rt4Zw",
      "SMTP_PASS=q8Wn3RtYz1Lk",
      '{"client_secret":"aB3dE5fG7hJ9kL1mN3pQ5rS7"}',
      "REDIS_PASSWORD: s3cretpass",
    ])
      expect(scanLine(bad), bad).not.toEqual([]);
    expect(Number.isInteger(SCANNER_RULES_VERSION) && SCANNER_RULES_VERSION >= 2).toBe(true);
  });

  it("redacts the same bytes however the stream is cut, counts the size change in a scan-only pass, and numbers lines from firstLine", () => {
    const key = [
      "-----BEGIN RSA PRIVATE KEY-----",
      "MIIEowIBAAKCAQEAq1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6",
      "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6q7w8e9r0t1y2u3",
      "-----END RSA PRIVATE KEY-----",
    ].join("\n");
    const text =
      [
        `{"error_message":"clone https://ghp_${"A1b2C3d4E5".repeat(3)}abcdef@github.com failed"}`,
        "ok line",
        key,
        "DB_PASSWORD=Xk9#mQ2vLp7Rt4Zw",
        "tail",
      ].join("\n") + "\n";
    const bytes = Buffer.from(text);
    const whole = redactBytes("events/deployments.jsonl", bytes);
    expect(whole.findings.map((f) => `${f.line}:${f.rule}`)).toEqual([
      "1:github-token",
      "3:private-key-block",
      "7:secret-assignment",
    ]);
    expect(whole.content.toString()).toBe(
      [
        '{"error_message":"clone https://<redacted>@github.com failed"}',
        "ok line",
        "-----BEGIN RSA PRIVATE KEY-----",
        "<redacted>",
        "<redacted>",
        "-----END RSA PRIVATE KEY-----",
        "DB_PASSWORD=<redacted>",
        "tail",
      ].join("\n") + "\n",
    );
    for (const step of [1, 7, 64, 1000]) {
      const redacting = new SecretScanner("events/deployments.jsonl", { redact: true, firstLine: 101 });
      const counting = new SecretScanner("events/deployments.jsonl", { firstLine: 101 });
      const out: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += step) {
        out.push(redacting.push(bytes.subarray(i, i + step))!);
        counting.push(bytes.subarray(i, i + step));
      }
      out.push(redacting.finish()!);
      counting.end();
      expect(Buffer.concat(out).equals(whole.content), `step ${step}`).toBe(true);
      expect(counting.sizeDelta, `step ${step}`).toBe(whole.content.length - bytes.length);
      expect(counting.findings.map((f) => f.line)).toEqual([101, 103, 107]);
    }
    // a redacted copy holds nothing more to find
    expect(scanText("x", whole.content)).toEqual([]);
  });

  it("redactText replaces secrets in anything printed, keeping JSON valid", () => {
    const printed = JSON.stringify(
      {
        error: {
          message:
            "POST https://api.telegram.org/bot123456789:AAF1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r/sendMessage failed",
          detail:
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXBsb3kifQ.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZw",
        },
      },
      null,
      2,
    );
    const redacted = redactText(printed);
    expect(redacted).not.toContain("AAF1b2C3d4");
    expect(redacted).not.toContain("eyJzdWIi");
    expect(JSON.parse(redacted).error.message).toBe(
      "POST https://api.telegram.org/bot<redacted>/sendMessage failed",
    );
    expect(
      redactText("nothing to see: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ).toBe("nothing to see: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  });

  it("removes a value under a secret-like key whole, one marker for every rule that matches inside it (issue 21 §2)", () => {
    const token = "ghp_4fK9xQ2mZ7pL0vB3nR8tY1wE6sA5dG3hJ2kC";
    const cases: [string, string][] = [
      [`{"vars":{"DB_PASSWORD":"pw-${token}-tail"}}`, `{"vars":{"DB_PASSWORD":"<redacted>"}}`],
      [`{"vars":{"DB_PASSWORD":"Xk9#mQ2vLp7Rt4Zw-${token}"}}`, `{"vars":{"DB_PASSWORD":"<redacted>"}}`],
      [`SMTP_PASSWORD=pw-${token}-tail`, "SMTP_PASSWORD=<redacted>"],
      [`  api_token: '${token}'`, "  api_token: '<redacted>'"],
    ];
    for (const [text, expected] of cases) {
      expect(redactText(text), text).toBe(expected);
      const { content, findings } = redactBytes("state.json", Buffer.from(text));
      expect(content.toString()).toBe(expected);
      expect(findings.map((f) => f.rule)).toContain("github-token");
      if (text.startsWith("{")) expect(() => JSON.parse(content.toString())).not.toThrow();
    }
    expect(scanLine(cases[0]![0])).toEqual(expect.arrayContaining(["secret-json-field", "github-token"]));
  });

  it("finds credentials inside free text: flags, headers, KEY=value in a sentence, URL parameters (issue 21 §1)", () => {
    const cases: [string, string][] = [
      ["pg_dump --db-password Xk9mQ2vLp7Rt4Zw --host db", "pg_dump --db-password <redacted> --host db"],
      ["deploy --secret=aK39dlQp2zXc8VbN --target edge", "deploy --secret=<redacted> --target edge"],
      ["mysql -u root -pS3cretPassw0rd app", "mysql -u root -p<redacted> app"],
      ["X-Api-Key: 8f3kd93KD93kdLa0 sent", "X-Api-Key: <redacted> sent"],
      ["Authorization: Token 9a8b7c6d5e4f3a2b1c0d", "Authorization: Token <redacted>"],
      ["Cookie: session=Zm9vYmFyYmF6cXV4MTIz; theme=dark", "Cookie: session=<redacted>; theme=dark"],
      [
        "failed: DD_API_KEY=4f8e2a1b9c7d6e5f4a3b2c1d0e9f8a7b rejected",
        "failed: DD_API_KEY=<redacted> rejected",
      ],
      ["auth failed: password=hunter2x for app", "auth failed: password=<redacted> for app"],
      ["GET /x?token=abcDEF123456ghi&format=csv", "GET /x?token=<redacted>&format=csv"],
      [
        "jdbc:sqlserver://db;user=sa;password=Str0ngPassw0rd;",
        "jdbc:sqlserver://db;user=sa;password=<redacted>;",
      ],
      ["redis://:s3cr3tpw0rd@redis:6379/0", "redis://:<redacted>@redis:6379/0"],
    ];
    for (const [text, expected] of cases) expect(redactText(text), text).toBe(expected);
    // inside a JSON string value, quotes escaped: still found, the line still JSON
    const line = JSON.stringify({ error_message: 'connect failed: password="hunter2x" user=app' });
    expect(JSON.parse(redactText(line)).error_message).toBe('connect failed: password="<redacted>" user=app');
    for (const benign of [
      "password_min_length=12",
      "token=${DEPLOY_TOKEN}",
      "token: ${{ secrets.DEPLOY_TOKEN }}",
      "--token ********",
      "password=<redacted>",
      "token expired for session 123e4567-e89b-42d3-a456-426614174000",
      "AKIAIOSFODNN7EXAMPLE",
      "arn:aws:iam::123456789012:role/acme-deploy",
      "job 01HF3Z8Q9K7X2M4N6P8R0T2V4W",
    ])
      expect(scanLine(benign), benign).toEqual([]);
  });

  it("runs gitleaks' rules as data, under gitleaks' names, and si's name where both find a value", () => {
    expect(GITLEAKS_RULE_IDS.length).toBeGreaterThan(200);
    expect(scanLine("adafruit_api_token = 'f3a9b2c8d1e7f4a6b9c2d5e8f1a4b7c0'")).toContain("adafruit-api-key");
    expect(scanLine("ghp_4fK9xQ2mZ7pL0vB3nR8tY1wE6sA5dG3hJ2kC")).toEqual(["github-token"]);
    expect(SCANNER_RULES_VERSION).toBeGreaterThanOrEqual(3);
  });
});
