/**
 * The secret scanner: si's own guardrail rules (reference §5), judged by value, plus the credential
 * formats that gitleaks' default rules and secretlint's recommended preset know. It runs on every
 * byte we archive, every file a post-restore doctor reads and everything we print. A finding names
 * the file, the line and the rule, never the value; a redacting scanner also replaces each value by
 * si's marker `<redacted>` in the bytes it passes on.
 *
 * Why our own matcher and not secretlint as a dependency: secretlint lints a whole file held in
 * memory through an async rule engine, while a snapshot streams gigabyte logs at disk speed and
 * must know each value's exact span to redact it. The formats below follow gitleaks'
 * config/gitleaks.toml and secretlint's rule sources; @paas-backup/testing's corpus runs through
 * both this scanner and secretlint's recommended preset, so a format it knows and we miss fails a test.
 */
import { GITLEAKS_RULES, GITLEAKS_GLOBAL_ALLOW, type GitleaksPattern } from "./gitleaks-rules.js";
import { nextMatch, ruleMatcher, type RuleMatcher } from "./rule-matcher.js";

export interface SecretFinding {
  path: string;
  line: number;
  rule: string;
}

export interface SecretAllowance {
  path: string;
  rule: string;
}

/**
 * A finding the operator acknowledged (the credential is rotated): it silences the finding's
 * exit code and the post-restore doctor, nothing else. It holds no value, and the value is still
 * stored as `<redacted>` (secretAllow is the one way to keep bytes unredacted).
 */
export interface SecretAcknowledgement {
  path: string;
  /** omitted: every line of the file */
  line?: number;
  rule: string;
}

export function isAcknowledged(
  acks: readonly SecretAcknowledgement[],
  path: string,
  line: number,
  rule: string,
): boolean {
  return acks.some(
    (a) =>
      a.path === path && (a.rule === rule || a.rule === "*") && (a.line === undefined || a.line === line),
  );
}

/**
 * The rule set's version. A manifest records the version its files were scanned with: bytes a
 * snapshot proved clean under this version need no second scan (and a new version means they do).
 * Bump it whenever a rule, the value judgement or the redaction spans change.
 */
export const SCANNER_RULES_VERSION = 3;

/** si's marker for a value that is not shown. */
export const REDACTED = "<redacted>";

const SECRET_KEY_WORDS = [
  "SECRET",
  "TOKEN",
  "PASSWORD",
  "PASS",
  "PWD",
  "APIKEY",
  "API_KEY",
  "ACCESS_KEY",
  "PRIVATE_KEY",
  "CLIENT_SECRET",
  "CREDENTIAL",
];
const EXEMPT_KEY_WORDS = ["COUNT", "FINDINGS", "GUARDRAIL"];
/**
 * Keys that name a secret without holding one, as gitleaks' generic rule's allowlist has them:
 * its id, name, length or file, a URL or endpoint that issues it, a public or CSRF token, a
 * key vault, Java's io.jsonwebtoken.
 */
const EXEMPT_KEY =
  /CREDENTIALS?_?ID|SECRETS?_?(?:LENGTH|NAME|SIZE|ID)$|KEYVAULT|KEY_VAULT|(?:API|CREDENTIALS?|TOKEN)_?(?:ENDPOINT|UR[IL])|PUBLIC_?TOKEN|(?:KEY|TOKEN|PASSWORD|SECRET)_?FILE|CSRF|JSONWEBTOKEN|USERSECRETSID/;

/** si's "secret-like key": the upper-cased key contains one of its words. */
export function isSecretLikeKey(key: string): boolean {
  const upper = key.toUpperCase().replace(/[-.]/g, "_");
  if (EXEMPT_KEY_WORDS.some((w) => upper.includes(w)) || EXEMPT_KEY.test(upper)) return false;
  return SECRET_KEY_WORDS.some((w) => upper.includes(w));
}

/** The value si would judge: trimmed, a trailing ` #comment` dropped, surrounding quotes removed; with its offset in `raw`. */
function unwrapValue(raw: string): { value: string; offset: number } {
  let start = 0;
  let end = raw.length;
  const comment = raw.search(/\s#/);
  if (comment >= 0) end = comment;
  while (start < end && /\s/.test(raw[start]!)) start++;
  while (end > start && /\s/.test(raw[end - 1]!)) end--;
  const first = raw[start];
  if (end - start >= 2 && (first === '"' || first === "'") && raw[end - 1] === first) {
    start++;
    end--;
  }
  return { value: raw.slice(start, end), offset: start };
}

/** si's "plaintext value": anything but empty, null-ish, a variable reference, ciphertext or a redaction. */
function isPlaintextSecretValue(raw: string, line: string): boolean {
  if (line.includes(REDACTED)) return false;
  const { value } = unwrapValue(raw);
  if (value === "" || value === "null" || value === "~" || value === "{}" || value === "[]") return false;
  if (value.startsWith("$") || value.startsWith("ENC[")) return false;
  if (/^(encrypted:si:v[12]:|es2:)/.test(value)) return false;
  if (value === "true" || value === "false" || /^-?\d+(\.\d+)?$/.test(value)) return false;
  return true;
}

const PLACEHOLDER =
  /^(?:\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*|\{\{[^}]*\}\}|%[A-Za-z_]+%|<[^<>]*>|\*+|x{3,}|X{3,}|\.{3,}|-+|changeme|change[-_]me|example|placeholder|redacted|secret|password|token|your[-_].*)$/i;

/**
 * A documented example or a placeholder, not a credential: AWS's AKIAIOSFODNN7EXAMPLE, a run of
 * one character (ghp_xxxx…, glc_1111…, ####), "your_…", "…HERE", "[Redacted]", an elision, a
 * template (`<…>`, `{…}`, `${…}`, `{{…}}`), or gitleaks' global allowlist (true/false/null, a
 * variable, a format verb). Judged on the value alone, for every rule.
 */
const EXAMPLE_VALUE =
  /(.)\1{5}|example|redacted|your[-_ ]|(?:_here|HERE|Here)$|placeholder|\.\.\.|^[<{[(]|\$\{|\{\{|abcdefghijklmnopqrstuvwxyz|014df517-39d1-4453-b7b3-9930c563627c/i;
export function isExampleValue(value: string): boolean {
  return (
    EXAMPLE_VALUE.test(value) ||
    EXAMPLE_ALLOW_REGEXES.some((x) => x.test(value)) ||
    GENERIC_STOPWORDS.has(value.toLowerCase())
  );
}

function shannonEntropy(value: string): number {
  const counts = new Map<string, number>();
  for (const ch of value) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / value.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/**
 * Beyond si's rule: does the value under a secret-like key look like a credential? Policy words
 * (`strong`, `required`, `none`), numbers, durations, placeholders, paths and plain URLs do not;
 * a value mixing character classes, or long and random, does.
 */
export function looksLikeSecretValue(value: string): boolean {
  if (value.length < 6) return false;
  if (PLACEHOLDER.test(value) || isExampleValue(value)) return false;
  // code, not a value: a call or a literal with words apart (new Credentials({ profile: … }))
  if (/\s/.test(value) && /[()[\]{}]/.test(value)) return false;
  // words and identifiers of one case: strong, required, must-rotate, NONE, Bcrypt, X-Api-Key
  if (
    /^(?:[a-z]+(?:[-_ .][a-z]+)*|[A-Z]+(?:[-_ .][A-Z]+)*|[A-Z][a-z]+|[A-Z][a-z]*(?:-[A-Z][a-z]*)+)$/.test(
      value,
    )
  )
    return false;
  // numbers, sizes and durations: 12, 1.5, 30s, 90d, 10MiB
  if (/^-?\d+(?:\.\d+)?\s*[a-zA-Z]{0,3}$/.test(value)) return false;
  // file paths and URLs without credentials (url-credentials catches the others)
  if (/^(?:\.{0,2}\/|~\/)[^\s]*$/.test(value) || /^[a-z][a-z0-9+.-]*:\/\/[^@\s]*$/i.test(value)) return false;
  if (/^[\w.-]+\.(?:txt|json|pem|key|env|ya?ml|toml|conf|cfg)$/i.test(value)) return false;
  if (/^sha(?:1|256|512):[0-9a-f]+$/.test(value)) return false;
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((r) => r.test(value)).length;
  if (classes >= 2) return true;
  return value.length >= 16 && shannonEntropy(value) >= 3;
}

function base64DecodesToCredentials(value: string): boolean {
  const text = Buffer.from(value, "base64").toString("latin1");
  const colon = text.indexOf(":");
  return colon > 0 && colon < text.length - 1 && /^[\x20-\x7e]+$/.test(text);
}

interface FormatRule {
  rule: string;
  /** global; group 1, when present, is the value to redact (else the whole match) */
  pattern: RegExp;
  check?: (value: string) => boolean;
}

/**
 * Credential formats. Patterns are line-local (no match crosses a newline) so that findings and
 * redactions do not depend on how a stream is cut into chunks; a private key's body is the one
 * multi-line case and is handled apart.
 */
const FORMAT_RULES: FormatRule[] = [
  { rule: "private-key-block", pattern: /-----BEGIN[ A-Z0-9_-]{0,100}?PRIVATE KEY(?: BLOCK)?-----/g },
  {
    rule: "aws-access-key-id",
    pattern: /\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b/g,
    // AWS's documented example keys (AKIAIOSFODNN7EXAMPLE), as gitleaks' allowlist has it
    check: (v) => !v.endsWith("EXAMPLE"),
  },
  {
    rule: "aws-secret-access-key",
    pattern:
      /(?:aws_?secret_?access_?key|SecretAccessKey)["']?\s*[:=>]{1,2}\s*["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])/gi,
  },
  { rule: "gcp-api-key", pattern: /\b(AIza[\w-]{35})(?![\w-])/g },
  { rule: "azure-storage-key", pattern: /(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{40,100}={0,2})/g },
  { rule: "azure-sas-token", pattern: /[?&;]sig=([A-Za-z0-9%+/]{30,}={0,2}(?:%3D)*)/g },
  {
    rule: "azure-ad-client-secret",
    pattern: /(?:^|[\\'"`\s>=:(,)])([a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.-]{31,34})(?![a-zA-Z0-9_~.-])/g,
  },
  {
    rule: "github-token",
    pattern: /\b((?:gh[pousr]_[A-Za-z0-9]{36,255})|github_pat_[A-Za-z0-9_]{50,255})\b/g,
  },
  {
    rule: "gitlab-token",
    pattern: /\b((?:gl(?:pat|ptt|dt|rt|cbt|ft|imt|soat|oas)-[\w-]{20,})|GR1348941[\w-]{20,})/g,
  },
  { rule: "npm-token", pattern: /\b(npm_[A-Za-z0-9]{36})(?![A-Za-z0-9])/g },
  { rule: "npm-auth-token", pattern: /_auth(?:Token)?\s*=\s*([^\s$"'<][^\s"'<>]{7,})/g },
  { rule: "pypi-token", pattern: /\b(pypi-AgEIcHlwaS5vcmc[\w-]{50,})/g },
  {
    rule: "slack-token",
    pattern: /\b((?:xox[abposre]|xapp)-(?:\d-)?[A-Za-z0-9]{1,40}(?:-[A-Za-z0-9]{1,64})+)/g,
    // Slack's ids are 9 digits or more and its secret part 20 characters or more (xoxb-12345-abcd234 is prose)
    check: (v) => {
      const parts = v.split("-").slice(1);
      const last = parts.at(-1)!;
      return (
        parts.every((p) => !/^\d+$/.test(p) || p.length === 1 || p.length >= 9) &&
        last.length >= 8 &&
        !/^\d+$/.test(last)
      );
    },
  },
  {
    rule: "slack-webhook-url",
    pattern:
      /hooks\.slack\.com\/(?:services|workflows|triggers)\/([A-Za-z0-9+_-]{8,}(?:\/[A-Za-z0-9+_-]{4,}){0,3})/g,
  },
  {
    rule: "discord-webhook-url",
    pattern: /discord(?:app)?\.com\/api\/webhooks\/\d{15,22}\/([A-Za-z0-9_-]{50,100})/g,
  },
  {
    rule: "stripe-secret-key",
    pattern: /\b((?:sk|rk)_(?:test|live|prod)_[A-Za-z0-9]{10,99}|whsec_[A-Za-z0-9]{24,})\b/g,
  },
  {
    rule: "sendgrid-api-key",
    pattern: /\b(SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64})(?![A-Za-z0-9_-])/g,
  },
  { rule: "sendinblue-api-key", pattern: /\b(xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16})\b/g },
  {
    rule: "mailgun-api-key",
    pattern: /mailgun[^\n]{0,80}?\b((?:pub)?key-[a-f0-9]{32}|[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8})\b/gi,
  },
  { rule: "mailchimp-api-key", pattern: /\b([a-f0-9]{32}-us\d{1,2})\b/g },
  { rule: "twilio-api-key", pattern: /\b(SK[0-9a-fA-F]{32})\b/g },
  { rule: "jwt", pattern: /\b(eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*)/g },
  {
    rule: "basic-auth-header",
    pattern: /\b[Bb]asic\s+([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])/g,
    check: base64DecodesToCredentials,
  },
  {
    rule: "bearer-token",
    pattern: /\b[Bb]earer\s+([A-Za-z0-9._~+/-]{20,}=*)/g,
    check: (v) => /[0-9]/.test(v) || /[A-Z]/.test(v),
  },
  {
    rule: "docker-config-auth",
    pattern: /"(?:auth|identitytoken)"\s*:\s*"([A-Za-z0-9+/]{8,}={0,2})"/g,
    check: (v) => base64DecodesToCredentials(v) || v.length >= 20,
  },
  { rule: "docker-hub-token", pattern: /\b(dckr_pat_[A-Za-z0-9_-]{27})(?![A-Za-z0-9_-])/g },
  {
    rule: "url-credentials",
    pattern: /\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@"'<>\\]*:([^\s@/"'<>\\]{3,})@[^\s"'<>\\]+/gi,
    check: (v) => !PLACEHOLDER.test(v) && !v.startsWith("$"),
  },
  { rule: "vault-token", pattern: /\b(hv[sbr]\.[A-Za-z0-9_-]{24,300})(?![A-Za-z0-9_-])/g },
  { rule: "age-secret-key", pattern: /\b(AGE-SECRET-KEY-1[0-9A-Z]{50,})\b/g },
  { rule: "telegram-bot-token", pattern: /(?:\bbot|\b)(\d{8,10}:AA[A-Za-z0-9_-]{30,})\b/g },
  {
    rule: "openai-api-key",
    pattern: /\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})/g,
  },
  {
    rule: "anthropic-api-key",
    pattern: /\b(sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{78,}AA)(?![A-Za-z0-9_-])/g,
  },
  { rule: "huggingface-token", pattern: /\b((?:hf_|api_org_)[A-Za-z]{34})\b/g },
  { rule: "digitalocean-token", pattern: /\b(do[por]_v1_[a-f0-9]{64})\b/g },
  { rule: "shopify-token", pattern: /\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b/g },
  {
    rule: "grafana-token",
    pattern: /\b(glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,3})/g,
  },
  { rule: "heroku-api-key", pattern: /\b(HRKU-AA[0-9a-zA-Z_-]{58})/g },
  { rule: "linear-api-key", pattern: /\b(lin_api_[A-Za-z0-9]{40})\b/g },
  { rule: "databricks-token", pattern: /\b(dapi[a-f0-9]{32}(?:-\d)?)\b/g },
  { rule: "doppler-token", pattern: /\b(dp\.pt\.[A-Za-z0-9]{43})\b/g },
  { rule: "pulumi-token", pattern: /\b(pul-[a-f0-9]{40})\b/g },
  { rule: "postman-api-key", pattern: /\b(PMAK-[a-f0-9]{24}-[a-f0-9]{34})\b/gi },
  { rule: "tailscale-key", pattern: /\b(tskey-[a-z]{2,20}-[0-9A-Za-z_]{8,40}-[0-9A-Za-z_]{16,60})/g },
  { rule: "figma-token", pattern: /\b(figd_[A-Za-z0-9_-]{40,200})/g },
  { rule: "groq-api-key", pattern: /\b(gsk_[a-zA-Z0-9]{52})\b/g },
  { rule: "notion-token", pattern: /\b(ntn_[0-9]{11}[A-Za-z0-9]{35})\b/g },
  { rule: "vercel-token", pattern: /\b((?:vcp|vci|vca|vcr|vck)_[A-Za-z0-9]{20,60})\b/g },
  { rule: "cloudflare-token", pattern: /\b((?:cfk|cfut|cfat)_[A-Za-z0-9]{40}[0-9a-f]{8})\b/g },
  { rule: "onepassword-token", pattern: /\b(ops_ey[A-Za-z0-9+/=]{100,1280})/g },
  // Free text (issue 21): the credential forms that sit inside a sentence, a command line or a dumped request.
  {
    rule: "secret-header",
    pattern:
      /\b(?:proxy-)?authorization\\?["']?[ \t]*[:=][ \t]*\\?["']?(?:(?:token|bearer|basic|apikey|api-key|key|sso-key|otp|bot)[ \t]+)?([^\s"'\\,;]{8,})/gi,
    check: (v) => !PLACEHOLDER.test(v) && !v.startsWith("$") && looksLikeSecretValue(v),
  },
  {
    rule: "secret-flag",
    pattern:
      /\b(?:mysql(?:dump|admin)?|mariadb(?:-dump|-admin)?|sshpass)\b[^|;&\n]*?[ \t]-p[ \t]*([^\s"'\\-][^\s"'\\]*)/g,
    check: (v) => !PLACEHOLDER.test(v) && !v.startsWith("$"),
  },
  {
    rule: "secret-flag",
    pattern: /\bredis-cli\b[^|;&\n]*?[ \t]-a[ \t]+([^\s"'\\-][^\s"'\\]*)/g,
    check: (v) => !PLACEHOLDER.test(v) && !v.startsWith("$"),
  },
  {
    rule: "secret-query-param",
    pattern:
      /[?&;](?:sig|signature|x-amz-signature|x-amz-security-token|pwd|passwd|auth)=([^&\s"'#\\<>;]{6,})/gi,
    check: (v) => !PLACEHOLDER.test(v) && !v.startsWith("$") && looksLikeSecretValue(v),
  },
  {
    rule: "base64-private-key",
    pattern: /\b(LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2})/g,
    check: (v) => Buffer.from(v, "base64").toString("latin1").includes("PRIVATE KEY"),
  },
];

/** si's own cookie names that carry a session or a credential (a cookie header's other values are kept). */
const SECRET_COOKIE_NAME = /sess|sid|token|auth|jwt|secret|remember|login|key|pass/i;
const COOKIE_HEADER = /\b(?:set-)?cookie\\?["']?[ \t]*:[ \t]*\\?["']?/gi;

/** Each secret-looking value of a `Cookie:` or `Set-Cookie:` header on the line [ls, le). */
function cookieSpans(line: string, ls: number, spans: SecretSpan[]): void {
  COOKIE_HEADER.lastIndex = 0;
  for (let m = COOKIE_HEADER.exec(line); m; m = COOKIE_HEADER.exec(line)) {
    const pair = /[ \t]*([^=;\s"'\\]+)=([^;\s"'\\]*);?/y;
    pair.lastIndex = m.index + m[0].length;
    for (let p = pair.exec(line); p; p = pair.exec(line)) {
      const value = p[2]!;
      if (
        value.length >= 8 &&
        !value.includes(REDACTED) &&
        !PLACEHOLDER.test(value) &&
        !isExampleValue(value) &&
        (SECRET_COOKIE_NAME.test(p[1]!) || (value.length >= 16 && looksLikeSecretValue(value)))
      ) {
        const start = ls + p.index + p[0].lastIndexOf(`${p[1]}=`) + p[1]!.length + 1;
        spans.push({ start, end: start + value.length, rule: "secret-header" });
      }
    }
  }
}

/**
 * gitleaks' default rules as data (gitleaks-rules.ts), each tried on a line that holds one of its
 * keywords. A rule si's own formats already cover stays in, and a value both find is reported
 * under si's rule name. Left out: generic-api-key (si's keyed rules judge a value under a
 * secret-like key, with si's exemptions, and its ten keywords would make most log lines
 * candidates), and the rules that apply to a file type only (gitleaks' path filter), which si's
 * keyed rules cover in the files we keep.
 */
const GITLEAKS_LEFT_OUT = new Set(["generic-api-key"]);
/**
 * Keywords narrowed where gitleaks' own is a common word (or part of one) in si's logs: the
 * literal text the secret itself holds instead, which the rule's regex requires anyway.
 */
const GITLEAKS_KEYWORDS: Record<string, readonly string[]> = {
  "twilio-api-key": [..."0123456789abcdef"].map((h) => `sk${h}`),
  // si's alert logs name their "telegram" channel on every line; the token's own ":A" is rarer
  "telegram-bot-api-token": [":a"],
};

interface CompiledAllowlist {
  and: boolean;
  target: string;
  regexes: RegExp[];
  stopwords: readonly string[];
}
interface CompiledGitleaksRule {
  rule: string;
  keywords: readonly string[];
  /** a keyword longer than the prefilter's words: the line is checked for it */
  longKeywords: boolean;
  pattern: RegExp;
  matcher: RuleMatcher;
  secretGroup: number;
  entropy: number;
  allow: CompiledAllowlist[];
}
const compile = (p: GitleaksPattern, extra = "") => new RegExp(p.source, p.flags + extra);
/**
 * The prefilter looks for the first eight characters of each gitleaks keyword: that keeps the
 * automaton's table in 16-bit entries (its states times its character classes under 65536; whole
 * keywords need 32-bit entries and twice the cache), and a line it points at is checked for the
 * whole keyword before the rule runs, as gitleaks does.
 */
const KEYWORD_PREFIX = 8;
const GITLEAKS_COMPILED: CompiledGitleaksRule[] = [];
const GITLEAKS_KEYWORD_RULES = new Map<string, number[]>();
for (const r of GITLEAKS_RULES) {
  if (GITLEAKS_LEFT_OUT.has(r.id) || r.path) continue;
  const index = GITLEAKS_COMPILED.length;
  // gitleaks' semi-generic rules open with `[\w.-]{0,50}?`, which only widens the match to the
  // left: it never decides whether there is one nor what the secret is, and it makes the regex
  // try 50 starts at every position of a line. Dropped here.
  const pattern = new RegExp(r.source.replace(/^\[\\w\.-\]\{0,50\}\?/, ""), `${r.flags}gd`);
  GITLEAKS_COMPILED.push({
    rule: r.id,
    keywords: GITLEAKS_KEYWORDS[r.id] ?? r.keywords,
    longKeywords: (GITLEAKS_KEYWORDS[r.id] ?? r.keywords).some((k) => k.length > KEYWORD_PREFIX),
    pattern,
    matcher: ruleMatcher(pattern),
    secretGroup: r.secretGroup ?? 0,
    entropy: r.entropy ?? 0,
    allow: (r.allow ?? [])
      .filter((a) => !a.paths)
      .map((a) => ({
        and: a.and === true,
        target: a.target,
        regexes: a.regexes.map((x) => compile(x)),
        stopwords: a.stopwords ?? [],
      })),
  });
  for (const k of GITLEAKS_KEYWORDS[r.id] ?? r.keywords) {
    const prefix = k.slice(0, KEYWORD_PREFIX);
    const list = GITLEAKS_KEYWORD_RULES.get(prefix) ?? [];
    if (!list.includes(index)) list.push(index);
    GITLEAKS_KEYWORD_RULES.set(prefix, list);
  }
}
/** The automaton's words for gitleaks' keywords: their first characters (the whole keyword is checked on the line). */
const GITLEAKS_KEYWORD_TEXT = [...GITLEAKS_KEYWORD_RULES.keys()];
/**
 * Two-letter keywords that a rule's regex takes only at a word's start (`\bey…`, `\bs\.…`): the
 * prefilter takes them there too, or "releases." and "key" would make every line a candidate.
 */
const WORD_START_KEYWORDS = new Set(["ey", "s."]);
interface GitleaksOutput {
  /** rules whose keyword ends here */
  rules: readonly number[] | null;
  /** rules whose keyword ends here if it starts a word */
  bound: readonly { length: number; rules: readonly number[] }[] | null;
}
function isWordCode(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}
/** The gitleaks rules a keyword ending at `i` names; `before(j)` is the code at j (-1 before the line). */
function gitleaksRulesAt(
  out: GitleaksOutput,
  i: number,
  codeAt: (j: number) => number,
  into: Set<number>,
): void {
  if (out.rules) for (const r of out.rules) into.add(r);
  if (out.bound)
    for (const b of out.bound) if (!isWordCode(codeAt(i - b.length))) for (const r of b.rules) into.add(r);
}
const GITLEAKS_BY_ID = new Map(GITLEAKS_COMPILED.map((r) => [r.rule, r]));
const GLOBAL_ALLOW_REGEXES = GITLEAKS_GLOBAL_ALLOW.regexes.map((x) => compile(x));
/** gitleaks' generic rule's stop words: a value that is one of them is a word or a known public hash, not a secret */
const GENERIC_STOPWORDS = new Set(
  GITLEAKS_RULES.find((r) => r.id === "generic-api-key")?.allow?.flatMap((a) => a.stopwords ?? []) ?? [],
);
// gitleaks' "^true|false|null$" allows any value holding "false"; si judges booleans itself
const EXAMPLE_ALLOW_REGEXES = GLOBAL_ALLOW_REGEXES.filter((x) => !x.source.includes("true|false"));
const GLOBAL_STOPWORDS = GITLEAKS_GLOBAL_ALLOW.stopwords.map((w) => w.toLowerCase());

/** Whether gitleaks would let a finding pass: its global allowlist, then the rule's own. */
function gitleaksAllows(r: CompiledGitleaksRule, secret: string, match: string, line: string): boolean {
  const lower = secret.toLowerCase();
  if (GLOBAL_ALLOW_REGEXES.some((x) => x.test(secret)) || GLOBAL_STOPWORDS.some((w) => lower.includes(w)))
    return true;
  for (const a of r.allow) {
    const target = a.target === "match" ? match : a.target === "line" ? line : secret;
    const regex = a.regexes.length > 0 ? a.regexes.some((x) => x.test(target)) : null;
    const stop = a.stopwords.length > 0 ? a.stopwords.some((w) => lower.includes(w)) : null;
    const parts = [regex, stop].filter((x) => x !== null);
    if (parts.length > 0 && (a.and ? parts.every(Boolean) : parts.some(Boolean))) return true;
  }
  return false;
}

/** The gitleaks rules the prefilter named over one line, each if the line holds one of its whole keywords. */
function gitleaksRules(rules: Iterable<number>, line: string, ls: number, spans: SecretSpan[]): void {
  let lower: string | null = null;
  for (const r of rules) {
    const rule = GITLEAKS_COMPILED[r]!;
    if (rule.longKeywords) {
      lower ??= line.toLowerCase();
      if (!rule.keywords.some((k) => lower!.includes(k))) continue;
    }
    gitleaksLine(rule, line, ls, spans);
  }
}

/** One gitleaks rule over a line: each match's secret (gitleaks' secret group, else the first group that matched). */
function gitleaksLine(r: CompiledGitleaksRule, line: string, ls: number, spans: SecretSpan[]): void {
  const re = r.pattern;
  re.lastIndex = 0;
  for (let m = nextMatch(r.matcher, line); m; m = nextMatch(r.matcher, line)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    let g = r.secretGroup;
    if (g === 0) for (let k = 1; k < m.length && g === 0; k++) if (m[k]) g = k;
    const secret = m[g] ?? m[0];
    const [from, to] = m.indices![g] ?? m.indices![0]!;
    // gitleaks' own formats hold runs of one character (a Twitter bearer token's 22 A's): its
    // allowlists judge its rules' examples, si's example check does not
    if (secret.includes(REDACTED)) continue;
    if (r.entropy > 0 && shannonEntropy(secret) < r.entropy) continue;
    if (gitleaksAllows(r, secret, m[0], line)) continue;
    spans.push({ start: ls + from, end: ls + to, rule: r.rule });
  }
}

/** si's own rules the scanner can report, for the README and the corpus (gitleaks' are GITLEAKS_RULE_IDS). */
export const SECRET_RULES: readonly string[] = [
  ...new Set([
    ...FORMAT_RULES.map((r) => r.rule),
    "secret-assignment",
    "secret-json-field",
    "kubernetes-secret-data",
  ]),
];

/** The gitleaks rules the scanner runs (their ids as gitleaks names them). */
export const GITLEAKS_RULE_IDS: readonly string[] = GITLEAKS_COMPILED.map((r) => r.rule);

/**
 * One pass over a block finds where rules can apply: the literal text every credential format
 * starts with or holds, and si's key words. It is an Aho-Corasick automaton over case-folded
 * bytes (as gitleaks prefilters by keyword): one table step per byte however many formats there
 * are, where a regex alternation of ~90 literals tests each position against all of them and runs
 * at a third of the speed. The precise rules then run on the lines it points at only.
 */
/** The literal text each format starts with or holds (lower case): a line holding one runs those formats only. */
const FORMAT_ANCHORS: Record<string, readonly string[]> = {
  "private-key-block": ["-----begin"],
  "aws-access-key-id": ["akia", "asia", "abia", "acca", "a3t"],
  "aws-secret-access-key": ["ecret_access_key", "ecretaccesskey"],
  "gcp-api-key": ["aiza"],
  "azure-storage-key": ["accountkey=", "accesskey="],
  "azure-sas-token": ["sig="],
  "azure-ad-client-secret": ["q~"],
  "github-token": ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
  "gitlab-token": [
    "glpat-",
    "glptt-",
    "gldt-",
    "glrt-",
    "glcbt-",
    "glft-",
    "glimt-",
    "glsoat-",
    "gloas-",
    "gr1348941",
  ],
  "npm-token": ["npm_"],
  "npm-auth-token": ["_auth"],
  "pypi-token": ["pypi-"],
  "slack-token": ["xox", "xapp-"],
  "slack-webhook-url": ["hooks.slack"],
  "discord-webhook-url": ["/api/webhooks/"],
  "stripe-secret-key": ["k_test_", "k_live_", "k_prod_", "whsec_"],
  "sendgrid-api-key": ["sg."],
  "sendinblue-api-key": ["xkeysib-"],
  "mailgun-api-key": ["mailgun"],
  "mailchimp-api-key": ["-us"],
  "twilio-api-key": [..."0123456789abcdef"].map((h) => `sk${h}`),
  jwt: ["eyj"],
  "basic-auth-header": ["basic "],
  "bearer-token": ["bearer "],
  "docker-config-auth": ['"auth"', '"identitytoken"'],
  "docker-hub-token": ["dckr_pat_"],
  "url-credentials": ["://"],
  "vault-token": ["hvs.", "hvb.", "hvr."],
  "age-secret-key": ["age-secret"],
  "telegram-bot-token": [":aa"],
  "openai-api-key": ["sk-"],
  "anthropic-api-key": ["sk-ant-"],
  "huggingface-token": ["hf_", "api_org_"],
  "digitalocean-token": ["_v1_"],
  "shopify-token": ["shpat_", "shpca_", "shppa_", "shpss_"],
  "grafana-token": ["glsa_", "glc_"],
  "heroku-api-key": ["hrku-"],
  "linear-api-key": ["lin_api_"],
  "databricks-token": ["dapi"],
  "doppler-token": ["dp.pt."],
  "pulumi-token": ["pul-"],
  "postman-api-key": ["pmak-"],
  "tailscale-key": ["tskey-"],
  "figma-token": ["figd_"],
  "groq-api-key": ["gsk_"],
  "notion-token": ["ntn_"],
  "vercel-token": ["vcp_", "vci_", "vca_", "vcr_", "vck_"],
  "cloudflare-token": ["cfk_", "cfut_", "cfat_"],
  "onepassword-token": ["ops_ey"],
  "secret-header": ["authorization"],
  "secret-flag": ["mysql", "mariadb", "sshpass", "redis-cli"],
  "secret-query-param": ["sig=", "signature=", "security-token=", "pwd=", "passwd=", "auth="],
  "base64-private-key": ["ls0tls1crudjti"],
};
/** The format rules' matchers, by FORMAT_RULES index. */
const FORMAT_MATCHERS = FORMAT_RULES.map((r) => ruleMatcher(r.pattern));
/** The cookie header's values, judged apart (cookieSpans): an index past the format rules. */
const COOKIE_RULE = FORMAT_RULES.length;
const ANCHOR_RULES = new Map<string, number[]>();
const anchorRule = (word: string, rule: number) => {
  const list = ANCHOR_RULES.get(word) ?? [];
  if (!list.includes(rule)) list.push(rule);
  ANCHOR_RULES.set(word, list);
};
FORMAT_RULES.forEach((r, i) => {
  const words = FORMAT_ANCHORS[r.rule];
  if (!words) throw new Error(`secret scanner: format ${r.rule} has no anchor`);
  for (const w of words) anchorRule(w, i);
});
anchorRule("cookie", COOKIE_RULE);
const FORMAT_ANCHOR_TEXT = [...ANCHOR_RULES.keys()];
const KEY_WORD_TEXT = [
  "secret",
  "token",
  "pass",
  "pwd",
  "apikey",
  "api_key",
  "api-key",
  "accesskey",
  "access_key",
  "access-key",
  "privatekey",
  "private_key",
  "private-key",
  "credential",
];
/**
 * Words after which a block is read whole by the string path: a private key's five dashes (its
 * rule spans lines), and a Kubernetes Secret's kind (its data values are secrets, lines below).
 */
const WHOLE_BLOCK_TEXT = ["-----", "kind: secret", '"kind":"secret"'];

/**
 * The automaton, laid out for the scan loop's one dependent load per byte. Bytes are mapped to
 * classes first (every character of a word, upper case folded to lower; class 0 for all others),
 * so the transition table is states x classes 16-bit entries (tens of KiB, in L1) rather than
 * states x 256 (hundreds of KiB, an L2 miss per byte): the loop runs about twice as fast. Entries
 * are premultiplied state offsets, and states with an output are numbered last, so "does a word
 * end here" is one compare, `next >= firstOutput`, with no flag load on the common path.
 */
const PREFILTER = (() => {
  const edges: Map<number, number>[] = [new Map()];
  /** the format anchors that end at each state */
  const outFormat: number[][] = [[]];
  const outKey: number[] = [0];
  const outDashes: boolean[] = [false];
  /** the gitleaks keywords that end at each state */
  const outKeywords: number[][] = [[]];
  const classOf = new Uint8Array(256);
  let classes = 1;
  const add = (word: string, key: boolean | "dashes" | number, anchor = -1) => {
    let state = 0;
    for (const c of Buffer.from(word, "latin1")) {
      if (classOf[c] === 0) classOf[c] = classes++;
      const k = classOf[c]!;
      let next = edges[state]!.get(k);
      if (next === undefined) {
        next = edges.length;
        edges.push(new Map());
        outFormat.push([]);
        outKey.push(0);
        outDashes.push(false);
        outKeywords.push([]);
        edges[state]!.set(k, next);
      }
      state = next;
    }
    if (key === "dashes") outDashes[state] = true;
    else if (typeof key === "number") outKeywords[state]!.push(key);
    else if (key) outKey[state] = Math.max(outKey[state]!, word.length);
    else outFormat[state]!.push(anchor);
  };
  FORMAT_ANCHOR_TEXT.forEach((w, i) => add(w, false, i));
  for (const w of KEY_WORD_TEXT) add(w, true);
  GITLEAKS_KEYWORD_TEXT.forEach((w, i) => add(w, i));
  // Where a private key's header or footer or a Kubernetes Secret may be, the byte path hands the
  // block to the string path. Found by the same pass, not by a search of its own.
  for (const w of WHOLE_BLOCK_TEXT) add(w, "dashes");
  // Words are lower case: an upper-case byte takes its lower-case letter's class.
  for (let c = 65; c <= 90; c++) classOf[c] = classOf[c + 32]!;
  // A newline has a class of its own and leads to a state of its own (the root's twin, numbered
  // with the output states), so the byte scan stops at each line end without a search for it.
  if (classOf[10] !== 0) throw new Error("secret prefilter: a word holds a newline");
  const newlineClass = classes++;
  classOf[10] = newlineClass;
  const newlineState = edges.length;
  edges.push(new Map());
  outFormat.push([]);
  outKey.push(0);
  outDashes.push(false);
  outKeywords.push([]);
  const n = edges.length;
  const goto = new Int32Array(n * classes);
  const fail = new Int32Array(n);
  const queue: number[] = [];
  for (let k = 1; k < classes; k++) {
    const s = edges[0]!.get(k);
    if (s !== undefined) ((goto[k] = s), queue.push(s));
  }
  for (let qi = 0; qi < queue.length; qi++) {
    const r = queue[qi]!;
    if (outFormat[fail[r]!]!.length > 0) outFormat[r] = [...outFormat[r]!, ...outFormat[fail[r]!]!];
    if (outDashes[fail[r]!]) outDashes[r] = true;
    if (outKeywords[fail[r]!]!.length > 0) outKeywords[r] = [...outKeywords[r]!, ...outKeywords[fail[r]!]!];
    outKey[r] = Math.max(outKey[r]!, outKey[fail[r]!]!);
    for (let k = 0; k < classes; k++) {
      const s = edges[r]!.get(k);
      if (s !== undefined) {
        queue.push(s);
        fail[s] = goto[fail[r]! * classes + k]!;
        goto[r * classes + k] = s;
      } else goto[r * classes + k] = goto[fail[r]! * classes + k]!;
    }
  }
  // Every state goes to the newline state on a newline, which then goes on as the root does.
  for (let s = 0; s < n; s++) goto[s * classes + newlineClass] = newlineState;
  for (let k = 0; k < classes; k++) if (k !== newlineClass) goto[newlineState * classes + k] = goto[k]!;
  // Renumber: states without an output first (the root stays 0), then those with one.
  const hasOutput = (s: number) =>
    outFormat[s]!.length > 0 ||
    outKey[s]! > 0 ||
    outDashes[s] ||
    outKeywords[s]!.length > 0 ||
    s === newlineState;
  const order = [...Array(n).keys()].sort((a, b) => Number(hasOutput(a)) - Number(hasOutput(b)) || a - b);
  const id = new Int32Array(n);
  order.forEach((s, i) => (id[s] = i));
  if (n * classes > 0xffff) throw new Error("secret prefilter: too many states for 16-bit entries");
  const table = new Uint16Array(n * classes);
  const format = new Uint8Array(n * classes);
  const keyLength = new Uint8Array(n * classes);
  const dashes = new Uint8Array(n * classes);
  /** by state offset: the gitleaks rules whose keyword ends there */
  const rules = new Map<number, GitleaksOutput>();
  /** by state offset: si's own formats whose anchor ends there */
  const own = new Map<number, readonly number[]>();
  for (let s = 0; s < n; s++) {
    const at = id[s]! * classes;
    for (let k = 0; k < classes; k++) table[at + k] = id[goto[s * classes + k]!]! * classes;
    format[at] = outFormat[s]!.length > 0 ? 1 : 0;
    if (outFormat[s]!.length > 0)
      own.set(at, [...new Set(outFormat[s]!.flatMap((w) => ANCHOR_RULES.get(FORMAT_ANCHOR_TEXT[w]!)!))]);
    keyLength[at] = outKey[s]!;
    dashes[at] = outDashes[s] ? 1 : 0;
    if (outKeywords[s]!.length > 0) {
      const words = outKeywords[s]!.map((k) => GITLEAKS_KEYWORD_TEXT[k]!);
      const rulesOf = (ws: string[]) => [...new Set(ws.flatMap((w) => GITLEAKS_KEYWORD_RULES.get(w)!))];
      const free = words.filter((w) => !WORD_START_KEYWORDS.has(w));
      const bound = words.filter((w) => WORD_START_KEYWORDS.has(w));
      rules.set(at, {
        rules: free.length > 0 ? rulesOf(free) : null,
        bound: bound.length > 0 ? bound.map((w) => ({ length: w.length, rules: rulesOf([w]) })) : null,
      });
    }
  }
  const firstOutput = order.findIndex(hasOutput) * classes;
  return {
    classOf,
    table,
    firstOutput,
    format,
    keyLength,
    dashes,
    rules,
    own,
    newline: id[newlineState]! * classes,
  };
})();

/** si assignment line at a line start: KEY = value or KEY: value, optionally after a YAML "- " */
const ASSIGNMENT_AT = /[ \t]*(?:-[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*[:=][ \t]*([^\n]*)/y;
/** a JSON string field on one line, from its key's opening quote */
const JSON_FIELD_AT = /"([A-Za-z0-9_.-]*)"[ \t]*:[ \t]*"((?:[^"\\\n]|\\.)*)"/y;
const PEM_FOOTER = /-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----/g;

/** A value to redact: [start, end) in the block, and the rule that found it. */
export interface SecretSpan {
  start: number;
  end: number;
  rule: string;
}

interface ScanState {
  /** inside a private key's body that began in an earlier block */
  pemOpen: boolean;
}

function lineEndAt(block: string, from: number): number {
  const nl = block.indexOf("\n", from);
  return nl < 0 ? block.length : nl;
}

/** The non-blank content of each line of [from, to): a key body line by line, indentation kept. */
function bodyLineSpans(block: string, from: number, to: number, rule: string, out: SecretSpan[]): void {
  let ls = from;
  while (ls < to) {
    let le = Math.min(lineEndAt(block, ls), to);
    let cs = ls;
    while (cs < le && (block[cs] === " " || block[cs] === "\t")) cs++;
    if (block[le - 1] === "\r" && le > cs) le--;
    if (le > cs) out.push({ start: cs, end: le, rule });
    ls = lineEndAt(block, ls) + 1;
  }
}

/** A line the prefilter pointed at: whether si's own formats are in play, and which gitleaks rules. */
interface Anchor {
  ls: number;
  /** si's own formats (FORMAT_RULES indices, COOKIE_RULE) */
  own: Set<number> | null;
  /** gitleaks' rules (GITLEAKS_COMPILED indices) */
  rules: Set<number> | null;
}

/** Format rules over the one line [ls, le) of `block`: si's own when anchored, and the gitleaks rules its keywords name. */
function scanFormatLine(
  block: string,
  ls: number,
  le: number,
  spans: SecretSpan[],
  state: ScanState,
  anchor: Anchor,
): number {
  const line = block.slice(ls, le);
  const first = spans.length;
  if (anchor.rules) gitleaksRules(anchor.rules, line, ls, spans);
  if (!anchor.own) return le;
  const theirs = spans.length;
  const resumeAt = scanOwnFormats(block, ls, le, line, spans, state, anchor.own);
  // a value si's own rule finds is reported under si's name
  if (theirs > first && spans.length > theirs) dropNamedTwice(spans, first, theirs);
  return resumeAt;
}

/** Drop the gitleaks spans [from, to) that one of si's own spans after them covers. */
function dropNamedTwice(spans: SecretSpan[], from: number, to: number): void {
  const own = spans.slice(to);
  const kept = spans.slice(from, to).filter((g) => !own.some((o) => o.start <= g.start && g.end <= o.end));
  spans.splice(from, spans.length - from, ...kept, ...own);
}

function scanOwnFormats(
  block: string,
  ls: number,
  le: number,
  line: string,
  spans: SecretSpan[],
  state: ScanState,
  own: ReadonlySet<number>,
): number {
  let resumeAt = le;
  for (let r = 0; r < FORMAT_RULES.length; r++) {
    if (!own.has(r)) continue;
    const rule = FORMAT_RULES[r]!;
    const matcher = FORMAT_MATCHERS[r]!;
    rule.pattern.lastIndex = 0;
    for (let m = nextMatch(matcher, line); m; m = nextMatch(matcher, line)) {
      if (m[0].length === 0) {
        rule.pattern.lastIndex++;
        continue;
      }
      if (rule.rule === "private-key-block") {
        resumeAt = Math.max(resumeAt, privateKeyBody(block, ls + m.index + m[0].length, le, spans, state));
        continue;
      }
      const value = m[1] ?? m[0];
      if (value.includes(REDACTED) || (rule.check && !rule.check(value)) || isExampleValue(value)) continue;
      // a long value of few characters is a made-up one (GR1348941 and 123 repeated)
      if (value.length >= 20 && shannonEntropy(value) < 3) continue;
      const same = GITLEAKS_BY_ID.get(rule.rule);
      if (same && gitleaksAllows(same, value, m[0], line)) continue;
      const start = ls + m.index + (m[1] !== undefined ? m[0].indexOf(m[1]) : 0);
      spans.push({ start, end: start + value.length, rule: rule.rule });
    }
  }
  // after the formats, so a value both find (a JWT as a session cookie) keeps the format's name
  if (own.has(COOKIE_RULE)) cookieSpans(line, ls, spans);
  return resumeAt;
}

/**
 * A private key's body after its header at `from` (header line ends at `le`): up to the footer on
 * the same line (a key in a JSON string, newlines escaped), or the end of that JSON string, or
 * line by line up to the footer. Returns where scanning resumes; sets pemOpen when the block ends first.
 */
function privateKeyBody(
  block: string,
  from: number,
  le: number,
  spans: SecretSpan[],
  state: ScanState,
): number {
  const rule = "private-key-block";
  PEM_FOOTER.lastIndex = from;
  const footer = PEM_FOOTER.exec(block);
  // A key whose body is already our marker (a redacted copy, restored) holds no secret.
  const firstBody = block
    .slice(from, footer && footer.index < le ? footer.index : lineEndAt(block, le + 1))
    .replace(/\\n|\s|"/g, "");
  if (firstBody.startsWith(REDACTED) && firstBody.slice(REDACTED.length).replace(/<redacted>/g, "") === "")
    return le;
  // A header and footer around less than a key's shortest body (gitleaks' 64 characters) is an
  // example in prose, not a key.
  if (footer) {
    const body = block.slice(from, footer.index).replace(/\\n|\s|"/g, "");
    if (body.length < 64 && !body.includes(REDACTED))
      return footer.index < le ? le : lineEndAt(block, footer.index);
  }
  // the header itself is the finding's anchor; record it with an empty span so it is reported
  spans.push({ start: from, end: from, rule });
  if (footer && footer.index < le) {
    if (footer.index > from) spans.push({ start: from, end: footer.index, rule });
    return le;
  }
  const quote = block.indexOf('"', from);
  if (quote >= 0 && quote < le) {
    if (quote > from) spans.push({ start: from, end: quote, rule });
    return le;
  }
  if (le > from) bodyLineSpans(block, from, le, rule, spans);
  if (!footer) {
    bodyLineSpans(block, le + 1, block.length, rule, spans);
    state.pemOpen = true;
    return block.length;
  }
  const footerLineStart = block.lastIndexOf("\n", footer.index) + 1;
  bodyLineSpans(block, le + 1, footerLineStart, rule, spans);
  return lineEndAt(block, footer.index);
}

function isKeyChar(c: number): boolean {
  return (
    (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 46 || c === 45
  );
}

/** The generic rules at each key word found: a JSON field whose key holds it, an assignment line whose key does, or a key in free text. */
function scanKeyed(block: string, keyWords: readonly number[], spans: SecretSpan[]): void {
  let assignmentLine = -1;
  let skipTo = 0;
  for (let w = 0; w < keyWords.length; w += 2) {
    const at = keyWords[w]!;
    const end = keyWords[w + 1]!;
    if (at < skipTo) continue;
    // A JSON key holding the word: back to its opening quote over key characters only.
    let q = at - 1;
    while (q >= 0 && isKeyChar(block.charCodeAt(q))) q--;
    if (q >= 0 && block.charCodeAt(q) === 34) {
      JSON_FIELD_AT.lastIndex = q;
      const m = JSON_FIELD_AT.exec(block);
      if (m && q + 1 + m[1]!.length >= end) {
        const value = m[2]!;
        // The value first: si's own logs hold "<redacted>" under most secret-like keys, and that
        // test is cheaper than judging the key (all three are pure, so the order changes nothing else).
        if (isPlaintextSecretValue(value, value) && isSecretLikeKey(m[1]!) && looksLikeSecretValue(value)) {
          const start = q + m[0].length - 1 - value.length;
          spans.push({ start, end: start + value.length, rule: "secret-json-field" });
        }
        skipTo = q + m[0].length;
        continue;
      }
    }
    // An assignment whose key (the line's first word) holds the word.
    const ls = block.lastIndexOf("\n", at) + 1;
    if (ls !== assignmentLine) {
      assignmentLine = ls;
      const found = assignmentAt(block, ls, at);
      if (found !== undefined) {
        if (found) spans.push(found);
        continue;
      }
    }
    // si's rule: a commented-out line is not a finding
    if (/^[ \t]*#/.test(block.slice(ls, at))) continue;
    const free = freeTextAt(block, at, end);
    if (free) {
      spans.push(free);
      skipTo = free.end;
    }
  }
}

/** The value of an assignment line at `ls` whose key holds the word at `at`; null if it holds none; undefined if the word is not in its key. */
function assignmentAt(block: string, ls: number, at: number): SecretSpan | null | undefined {
  ASSIGNMENT_AT.lastIndex = ls;
  const m = ASSIGNMENT_AT.exec(block);
  if (!m) return undefined;
  const line = m[0];
  const keyEnd = ls + line.indexOf(m[1]!) + m[1]!.length;
  if (at >= keyEnd) return undefined;
  if (line.trimStart().startsWith("#")) return null;
  const raw = m[2]!;
  if (!isPlaintextSecretValue(raw, line) || !isSecretLikeKey(m[1]!)) return null;
  const { value, offset } = unwrapValue(raw);
  if (!looksLikeSecretValue(value)) return null;
  const start = ls + line.length - raw.length + offset;
  return { start, end: start + value.length, rule: "secret-assignment" };
}

/** What joins a key to its value in free text and code: =, :, =>, :=, ?=, .=, ||=, and a comma after a quoted key (setProperty("KEY", "value")). */
const FREE_OPERATOR = /=>|:{1,3}=|\?=|\.=|\|\|=|=(?!=)|:(?![:/])|,/y;

/** Characters that end an unquoted value in free text: space, quotes, escapes, separators, brackets. */
function endsFreeValue(c: number): boolean {
  return (
    c <= 32 ||
    c === 34 ||
    c === 39 ||
    c === 92 ||
    c === 38 ||
    c === 59 ||
    c === 44 ||
    c === 41 ||
    c === 93 ||
    c === 125 ||
    c === 60 ||
    c === 62 ||
    c === 124 ||
    c === 96
  );
}

/**
 * A secret-like key with its value inside free text (an error message, a command line, a URL):
 * `KEY=value` and `KEY: value` in a sentence, `--flag value` and `--flag=value` on a command
 * line, `?token=…` and `&password=…` (or JDBC's `;password=…`) in a URL. The key is the run of key
 * characters around the word; the value runs to a space, a quote, an escape or a separator,
 * or to its closing quote when quoted (also `\"…\"` inside a JSON string).
 */
function freeTextAt(block: string, at: number, end: number): SecretSpan | null {
  let ts = at;
  while (ts > 0 && isKeyChar(block.charCodeAt(ts - 1))) ts--;
  let te = end;
  while (te < block.length && isKeyChar(block.charCodeAt(te))) te++;
  let key = block.slice(ts, te);
  const flag = key.startsWith("-");
  if (flag) key = key.replace(/^-+/, "");
  if (!isSecretLikeKey(key)) return null;
  let i = te;
  // the closing quote of a quoted key: "password": or \"password\":
  let quotedKey = true;
  if (block.charCodeAt(i) === 92 && block.charCodeAt(i + 1) === 34) i += 2;
  else if (block.charCodeAt(i) === 34 || block.charCodeAt(i) === 39) i++;
  else quotedKey = false;
  let j = i;
  while (block.charCodeAt(j) === 32 || block.charCodeAt(j) === 9) j++;
  FREE_OPERATOR.lastIndex = j;
  const op = FREE_OPERATOR.exec(block);
  if (op && (op[0] !== "," || quotedKey)) j += op[0].length;
  else if (!(flag && j > i)) return null;
  while (block.charCodeAt(j) === 32 || block.charCodeAt(j) === 9) j++;
  const lineEnd = lineEndAt(block, j);
  let k: number;
  if (block.charCodeAt(j) === 92 && block.charCodeAt(j + 1) === 34) {
    j += 2;
    k = block.indexOf('\\"', j);
  } else if (block.charCodeAt(j) === 34 || block.charCodeAt(j) === 39) {
    k = block.indexOf(block[j]!, j + 1);
    j++;
  } else {
    k = j;
    while (k < lineEnd && !endsFreeValue(block.charCodeAt(k))) k++;
  }
  if (k < 0 || k > lineEnd || k === j) return null;
  const value = block.slice(j, k);
  if (flag && value.startsWith("-")) return null;
  if (!isPlaintextSecretValue(value, value) || !looksLikeSecretValue(value)) return null;
  const before = block.charCodeAt(ts - 1);
  const rule = flag
    ? "secret-flag"
    : before === 63 || before === 38 || before === 59
      ? "secret-query-param"
      : "secret-assignment";
  return { start: j, end: k, rule };
}

/**
 * Every value a block of whole lines holds, in order, overlaps merged (a format rule wins over
 * the generic key rules for the same value). The generic regexes run over the block, not line by
 * line: most blocks of a large log have candidates (si's redacted fields) but no finding.
 */
function scanBlockSpans(block: string, state: ScanState): SecretSpan[] {
  const spans: SecretSpan[] = [];
  let from = 0;
  if (state.pemOpen) {
    PEM_FOOTER.lastIndex = 0;
    const footer = PEM_FOOTER.exec(block);
    const bodyEnd = footer ? block.lastIndexOf("\n", footer.index) + 1 : block.length;
    bodyLineSpans(block, 0, bodyEnd, "private-key-block", spans);
    if (!footer) return spans;
    state.pemOpen = false;
    from = lineEndAt(block, footer.index);
  }
  // The prefilter pass: lines with a format anchor, and each key word's [start, end).
  const { classOf, table, firstOutput, format, keyLength, rules, dashes, own } = PREFILTER;
  const anchors: Anchor[] = [];
  const keyWords: number[] = [];
  let last: Anchor | null = null;
  let at = 0;
  let wholeBlock = false;
  for (let i = from, n = block.length; i < n; i++) {
    at = table[at + classOf[block.charCodeAt(i) & 255]!]!;
    if (at < firstOutput) continue;
    if (dashes[at] !== 0) wholeBlock = true;
    const glOut = rules.get(at);
    let glRules: Set<number> | null = null;
    if (glOut) {
      glRules = new Set();
      gitleaksRulesAt(glOut, i, (j) => (j < 0 ? -1 : block.charCodeAt(j)), glRules);
      if (glRules.size === 0) glRules = null;
    }
    if (format[at] !== 0 || glRules) {
      const ls = block.lastIndexOf("\n", i) + 1;
      if (!last || last.ls !== ls) anchors.push((last = { ls, own: null, rules: null }));
      if (format[at] !== 0) for (const r of own.get(at)!) (last.own ??= new Set()).add(r);
      if (glRules) for (const r of glRules) (last.rules ??= new Set()).add(r);
    }
    const key = keyLength[at]!;
    if (key !== 0) keyWords.push(i + 1 - key, i + 1);
  }
  spans.push(...candidateSpans(block, from, anchors, keyWords, state));
  if (wholeBlock) kubernetesSecretSpans(block, spans);
  return spans.sort((a, b) => a.start - b.start || b.end - a.end);
}

/**
 * The precise rules at what the prefilter found: format rules on anchored lines, the generic
 * rules at key words. A value under a secret-like key is removed whole: where a key rule's value
 * holds a format's match, both are kept and redaction merges them into one span over the value.
 */
function candidateSpans(
  block: string,
  from: number,
  anchors: readonly Anchor[],
  keyWords: readonly number[],
  state: ScanState,
): SecretSpan[] {
  const formats: SecretSpan[] = [];
  let resumeAt = from;
  for (const anchor of anchors) {
    if (anchor.ls < resumeAt && resumeAt > from) continue;
    const start = Math.max(anchor.ls, from);
    resumeAt = scanFormatLine(block, start, lineEndAt(block, start), formats, state, anchor) + 1;
    if (state.pemOpen) break;
  }
  const keyed: SecretSpan[] = [];
  if (keyWords.length > 0) scanKeyed(block, keyWords, keyed);
  for (const k of keyed)
    if (
      !formats.some((f) => f.start === k.start && f.end === k.end) &&
      !(state.pemOpen && k.start >= resumeAt - 1)
    )
      formats.push(k);
  // one finding per value and rule family: the first rule to name a span keeps it
  if (formats.length < 2) return formats;
  const seen = new Set<string>();
  return formats.filter((f) => {
    const id = `${f.start}:${f.end}`;
    if (f.end === f.start || !seen.has(id)) return (seen.add(id), true);
    return false;
  });
}

const K8S_SECRET_KIND = /^[ \t]*kind:[ \t]*["']?Secret["']?[ \t]*\r?$/gim;
const K8S_DATA = /^([ \t]*)(?:data|stringData):[ \t]*\r?$/gm;
const K8S_ENTRY = /^([ \t]+)[\w.-]+:[ \t]*(?:[|>][-+]?[ \t]*)?(\S[^\r\n]*?)?[ \t]*\r?$/gm;
const K8S_JSON_SECRET = /"kind"[ \t]*:[ \t]*"Secret"/gi;
const K8S_JSON_DATA = /"(?:data|stringData)"[ \t]*:[ \t]*\{([^{}]*)\}/g;
const K8S_JSON_VALUE = /"[^"\\]*"[ \t]*:[ \t]*"((?:[^"\\]|\\.)*)"/g;

/**
 * A Kubernetes Secret's `data:` and `stringData:` values, every one of them (a Secret holds
 * nothing else; gitleaks' kubernetes-secret-yaml does the same), in YAML manifests and in the JSON
 * that kubectl prints, when the Secret's kind and its data are in one block (a 64 KiB read holds
 * a manifest).
 */
function kubernetesSecretSpans(block: string, spans: SecretSpan[]): void {
  const rule = "kubernetes-secret-data";
  K8S_SECRET_KIND.lastIndex = 0;
  for (let kind = K8S_SECRET_KIND.exec(block); kind; kind = K8S_SECRET_KIND.exec(block)) {
    // the YAML document the kind is in: from the "---" before it to the one after it
    const docStart = Math.max(0, block.lastIndexOf("\n---", kind.index) + 1);
    const next = block.indexOf("\n---", kind.index);
    const docEnd = next < 0 ? block.length : next;
    K8S_DATA.lastIndex = docStart;
    for (let data = K8S_DATA.exec(block); data && data.index < docEnd; data = K8S_DATA.exec(block)) {
      const indent = data[1]!.replace(/\t/g, "    ").length;
      K8S_ENTRY.lastIndex = data.index + data[0].length + 1;
      let at = K8S_ENTRY.lastIndex;
      for (
        let e = K8S_ENTRY.exec(block);
        e && e.index === at && e.index < docEnd;
        e = K8S_ENTRY.exec(block)
      ) {
        if (e[1]!.replace(/\t/g, "    ").length <= indent) break;
        const value = e[2];
        if (value && !value.includes(REDACTED) && !/^["']{2}$/.test(value) && !value.startsWith("{{")) {
          const start = e.index + e[0].indexOf(value, e[1]!.length);
          spans.push({ start, end: start + value.length, rule });
        }
        at = e.index + e[0].length + 1;
      }
    }
  }
  K8S_JSON_SECRET.lastIndex = 0;
  if (!K8S_JSON_SECRET.test(block)) return;
  K8S_JSON_DATA.lastIndex = 0;
  for (let data = K8S_JSON_DATA.exec(block); data; data = K8S_JSON_DATA.exec(block)) {
    const base = data.index + data[0].indexOf("{") + 1;
    K8S_JSON_VALUE.lastIndex = 0;
    for (let v = K8S_JSON_VALUE.exec(data[1]!); v; v = K8S_JSON_VALUE.exec(data[1]!)) {
      const value = v[1]!;
      if (value === "" || value.includes(REDACTED)) continue;
      const start = base + v.index + v[0].length - 1 - value.length;
      spans.push({ start, end: start + value.length, rule });
    }
  }
}

const QUOTE = 34;
const COLON = 58;
const REDACTED_VALUE = Buffer.from(`"${REDACTED}"`, "latin1");

/**
 * Whether the key word at [start, wordEnd) of a line [lineStart, end) of bytes is in the key of a
 * JSON field whose value is exactly "<redacted>": si's own logs hold one such field on most lines
 * (`"api_token":"<redacted>"`). The string path's generic rule reads that field (the same key
 * characters back to the opening quote, the same `"key" : "value"` shape) and finds nothing in
 * it, so the byte path can skip the line unless something else on it is a candidate.
 */
function inRedactedJsonField(
  bytes: Buffer,
  start: number,
  wordEnd: number,
  lineStart: number,
  end: number,
): boolean {
  let q = start - 1;
  while (q >= lineStart && isKeyChar(bytes[q]!)) q--;
  if (q < lineStart || bytes[q] !== QUOTE) return false;
  let k = wordEnd;
  while (k < end && isKeyChar(bytes[k]!)) k++;
  if (k >= end || bytes[k] !== QUOTE) return false;
  k++;
  while (k < end && (bytes[k] === 32 || bytes[k] === 9)) k++;
  if (k >= end || bytes[k] !== COLON) return false;
  k++;
  while (k < end && (bytes[k] === 32 || bytes[k] === 9)) k++;
  if (k + REDACTED_VALUE.length > end) return false;
  for (let j = 0; j < REDACTED_VALUE.length; j++) if (bytes[k + j] !== REDACTED_VALUE[j]) return false;
  return true;
}

type LineFinding = { line: number; span: SecretSpan; text: string; lineStart: number };

/**
 * One stretch of whole lines as the byte path walks it: the line it is in, whether the automaton
 * pointed at that line, and the findings of the lines it finished. `hit` takes each output state
 * the automaton reaches; it answers false where five dashes are (the block goes to the string path).
 */
class LineWalk {
  readonly found: LineFinding[] = [];
  newlines = 0;
  private lineStart: number;
  private candidate = false;
  private own: Set<number> | null = null;
  private rules: Set<number> | null = null;
  private keyWords: number[] = [];
  constructor(
    private readonly bytes: Buffer,
    start: number,
    private readonly end: number,
  ) {
    this.lineStart = start;
  }

  hit(i: number, at: number): boolean {
    const { format, keyLength, dashes, newline } = PREFILTER;
    if (at === newline) {
      if (this.candidate) this.line(i);
      this.newlines++;
      this.lineStart = i + 1;
      return true;
    }
    if (dashes[at] !== 0) return false;
    if (format[at] !== 0) {
      this.candidate = true;
      for (const r of PREFILTER.own.get(at)!) (this.own ??= new Set()).add(r);
    }
    const glOut = PREFILTER.rules.get(at);
    if (glOut) {
      const into = (this.rules ??= new Set());
      gitleaksRulesAt(glOut, i, (j) => (j < this.lineStart ? -1 : this.bytes[j]!), into);
      if (into.size > 0) this.candidate = true;
      else this.rules = null;
    }
    const key = keyLength[at]!;
    if (key !== 0 && !inRedactedJsonField(this.bytes, i + 1 - key, i + 1, this.lineStart, this.end)) {
      this.candidate = true;
      this.keyWords.push(i + 1 - key - this.lineStart, i + 1 - this.lineStart);
    }
    return true;
  }

  /** The stretch's last line, if it has no newline. */
  finish(): void {
    if (this.candidate) this.line(this.end);
  }

  /** The precise rules on a line the automaton pointed at. */
  private line(le: number): void {
    const text = this.bytes.toString("latin1", this.lineStart, le);
    if (!this.own && this.keyWords.length === 0 && this.rules) {
      // only gitleaks keywords (si's alert logs name their "telegram" channel on every line)
      const spans: SecretSpan[] = [];
      gitleaksRules(this.rules, text, 0, spans);
      if (spans.length > 1) spans.sort((a, b) => a.start - b.start || b.end - a.end);
      for (const span of spans)
        this.found.push({ line: this.newlines, span, text, lineStart: this.lineStart });
      this.candidate = false;
      this.rules = null;
      return;
    }
    const anchors = this.own || this.rules ? [{ ls: 0, own: this.own, rules: this.rules }] : [];
    const spans = candidateSpans(text, 0, anchors, this.keyWords, { pemOpen: false });
    spans.sort((a, b) => a.start - b.start || b.end - a.end);
    for (const span of spans) this.found.push({ line: this.newlines, span, text, lineStart: this.lineStart });
    this.candidate = false;
    this.own = this.rules = null;
    this.keyWords = [];
  }
}

/** Bytes below which a block is walked as one stretch: splitting it would cost more than it saves. */
const SPLIT_BYTES = 16 * 1024;

/**
 * The findings of whole lines of bytes [0, end), without making a string of them: the prefilter
 * runs over the bytes, and only a line it points at is turned into a string for the precise
 * rules, which are line-local. Most of a large log is lines without a candidate, and converting
 * every byte to a string (and collecting it) was more than half of a scan. A key word in a field
 * already "<redacted>" makes no candidate (see inRedactedJsonField). A block that may hold a
 * private key (five dashes; its rule spans lines) is left to the string path: `null`.
 *
 * The block is cut at line starts into four stretches walked in lockstep. Each step of one walk
 * waits on its previous table load, so one walk leaves the core idle most of each step; four
 * independent walks fill it (a newline resets the automaton, so a stretch from a line start is
 * walked exactly as it would be from the block's start).
 */
function scanBytesByLine(bytes: Buffer, end: number): { spans: LineFinding[]; newlines: number } | null {
  const { classOf, table, firstOutput } = PREFILTER;
  const starts = [0];
  if (end >= SPLIT_BYTES)
    for (let j = 1; j < 4; j++) {
      const nl = bytes.indexOf(10, Math.floor((end * j) / 4));
      if (nl >= 0 && nl + 1 < end && nl + 1 > starts[starts.length - 1]!) starts.push(nl + 1);
    }
  const ends = [...starts.slice(1), end];
  const walks = starts.map((s, j) => new LineWalk(bytes, s, ends[j]!));
  // Where each walk has got to: i[j] is its next byte, at[j] its state.
  const pos = [...starts];
  const state = starts.map(() => 0);
  if (walks.length === 4) {
    const [w0, w1, w2, w3] = walks as [LineWalk, LineWalk, LineWalk, LineWalk];
    const s0 = pos[0]!,
      s1 = pos[1]!,
      s2 = pos[2]!,
      s3 = pos[3]!;
    let a0 = 0,
      a1 = 0,
      a2 = 0,
      a3 = 0;
    const steps = Math.min(ends[0]! - s0, ends[1]! - s1, ends[2]! - s2, ends[3]! - s3);
    let k = 0;
    for (; k < steps; k++) {
      a0 = table[a0 + classOf[bytes[s0 + k]!]!]!;
      a1 = table[a1 + classOf[bytes[s1 + k]!]!]!;
      a2 = table[a2 + classOf[bytes[s2 + k]!]!]!;
      a3 = table[a3 + classOf[bytes[s3 + k]!]!]!;
      if (a0 >= firstOutput && !w0.hit(s0 + k, a0)) return null;
      if (a1 >= firstOutput && !w1.hit(s1 + k, a1)) return null;
      if (a2 >= firstOutput && !w2.hit(s2 + k, a2)) return null;
      if (a3 >= firstOutput && !w3.hit(s3 + k, a3)) return null;
    }
    pos.splice(0, 4, s0 + k, s1 + k, s2 + k, s3 + k);
    state.splice(0, 4, a0, a1, a2, a3);
  }
  // What is left of each walk (all of it when the block was not cut in four), one at a time.
  for (let j = 0; j < walks.length; j++) {
    const walk = walks[j]!;
    let at = state[j]!;
    for (let i = pos[j]!, e = ends[j]!; i < e; i++) {
      at = table[at + classOf[bytes[i]!]!]!;
      if (at >= firstOutput && !walk.hit(i, at)) return null;
    }
    walk.finish();
  }
  if (walks.length === 1) return { spans: walks[0]!.found, newlines: walks[0]!.newlines };
  const spans: LineFinding[] = [];
  let newlines = 0;
  for (const walk of walks) {
    for (const f of walk.found) spans.push({ ...f, line: f.line + newlines });
    newlines += walk.newlines;
  }
  return { spans, newlines };
}

/** The rules that one line breaks (deduplicated), in a stable order. */
export function scanLine(line: string): string[] {
  return [...new Set(scanBlockSpans(line, { pemOpen: false }).map((h) => h.rule))];
}

/** Replace every span by the marker; spans sorted by start, overlaps merged. */
function applySpans(block: string, spans: readonly SecretSpan[]): { text: string; delta: number } {
  let out = "";
  let at = 0;
  let delta = 0;
  let marked = false;
  for (const s of spans) {
    if (s.end <= at || s.end === s.start) continue;
    if (marked && s.start < at) {
      // overlaps the value just replaced: one marker for the whole value
      delta -= s.end - at;
      at = s.end;
      continue;
    }
    out += block.slice(at, s.start) + REDACTED;
    delta += REDACTED.length - (s.end - s.start);
    at = s.end;
    marked = true;
  }
  return { text: marked ? out + block.slice(at) : block, delta };
}

/** Any text we print or record with every secret value replaced by `<redacted>`. */
export function redactText(text: string): string {
  const spans = scanBlockSpans(text, { pemOpen: false });
  return spans.length === 0 ? text : applySpans(text, spans).text;
}

export interface SecretScannerOptions {
  allow?: readonly SecretAllowance[];
  /** the file's line number of the first byte pushed (an appended range starts mid-file) */
  firstLine?: number;
  /** pass the bytes on with every finding's value replaced; push() and end() then return them */
  redact?: boolean;
}

/**
 * A streaming scanner for one file: feed it chunks in order, then `end()`. It keeps at most one
 * partial line (capped) between chunks, so memory stays flat for gigabyte logs. With `redact`,
 * it returns the bytes to store (whole lines, values replaced) as it goes; without, it only
 * counts: `sizeDelta` is what redaction would add to the file's size, either way.
 */
export class SecretScanner {
  readonly findings: SecretFinding[] = [];
  /** all findings, also past the recorded cap */
  findingCount = 0;
  /** redacted size minus source size, over the bytes scanned so far */
  sizeDelta = 0;
  private carry = "";
  /** the byte path's partial line (a scanner that only counts never builds strings of whole blocks) */
  private carryBytes: Buffer = Buffer.alloc(0);
  private line: number;
  private readonly state: ScanState = { pemOpen: false };
  private readonly allow: readonly SecretAllowance[];
  private readonly redact: boolean;
  static readonly MAX_LINE = 1024 * 1024;
  static readonly MAX_RECORDED = 10_000;
  constructor(
    private readonly path: string,
    allowOrOptions: readonly SecretAllowance[] | SecretScannerOptions = [],
  ) {
    const options: SecretScannerOptions = Array.isArray(allowOrOptions)
      ? { allow: allowOrOptions }
      : (allowOrOptions as SecretScannerOptions);
    this.allow = (options.allow ?? []).filter((a) => a.path === path);
    this.line = options.firstLine ?? 1;
    this.redact = options.redact === true;
  }

  push(chunk: Uint8Array): Buffer | null {
    if (!this.redact) {
      this.pushBytes(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      return null;
    }
    // latin1 maps bytes 1:1, so every pattern (all ASCII) matches as it would on UTF-8 text and
    // the redacted text converts back to exactly the bytes it came from.
    const text =
      this.carry + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1");
    const lastNewline = text.lastIndexOf("\n");
    if (lastNewline < 0) {
      if (text.length <= SecretScanner.MAX_LINE) {
        this.carry = text;
        return this.redact ? Buffer.alloc(0) : null;
      }
      // A line longer than any real one: scanned as a block of its own, so memory stays flat.
      this.carry = "";
      return this.scanBlock(text);
    }
    const out = this.scanBlock(text.slice(0, lastNewline + 1));
    this.carry = text.slice(lastNewline + 1);
    return out;
  }

  end(): SecretFinding[] {
    this.finish();
    return this.findings;
  }

  /**
   * The same blocks as the string path (the carry and the chunk up to its last newline), so a
   * private key, whose rule spans lines and depends on where a block starts, is judged alike in
   * both. Where no key can begin or be open every rule is line-local, and the carried line is
   * scanned apart from the rest of the chunk: only that line is copied, never the whole chunk (a
   * copy per chunk doubled the scan's garbage and its peak memory).
   */
  private pushBytes(chunk: Buffer): void {
    const carry = this.carryBytes;
    const lastNewline = chunk.lastIndexOf(10);
    if (lastNewline < 0) {
      const line = carry.length > 0 ? Buffer.concat([carry, chunk]) : Buffer.from(chunk); // a copy: the caller may reuse its chunk
      if (line.length <= SecretScanner.MAX_LINE) {
        this.carryBytes = line;
        return;
      }
      // A line longer than any real one is scanned as a block of its own, so memory stays flat.
      this.carryBytes = Buffer.alloc(0);
      this.scanBytes(line, line.length);
      return;
    }
    const end = lastNewline + 1;
    if (carry.length === 0) this.scanBytes(chunk, end);
    else {
      // The carried line and the rest apart, unless either may hold a key: then the whole block,
      // as the string path cuts it.
      const firstNewline = chunk.indexOf(10);
      const head = Buffer.concat([carry, chunk.subarray(0, firstNewline + 1)]);
      const rest = chunk.subarray(firstNewline + 1);
      const headLines = this.state.pemOpen ? null : scanBytesByLine(head, head.length);
      const restLines = headLines && scanBytesByLine(rest, end - firstNewline - 1);
      if (headLines && restLines) {
        this.recordLines(headLines);
        this.recordLines(restLines);
      } else this.scanBlock(Buffer.concat([carry, chunk.subarray(0, end)]).toString("latin1"));
    }
    this.carryBytes = Buffer.from(chunk.subarray(end));
  }

  /** Whole lines [0, end) of `bytes` (a last one without "\n" only at the end or past MAX_LINE). */
  private scanBytes(bytes: Buffer, end: number): void {
    const byLine = this.state.pemOpen ? null : scanBytesByLine(bytes, end);
    if (!byLine) this.scanBlock(bytes.toString("latin1", 0, end));
    else this.recordLines(byLine);
  }

  /** What the byte path found in whole lines: the findings, their size change, the line count. */
  private recordLines(byLine: NonNullable<ReturnType<typeof scanBytesByLine>>): void {
    const { spans, newlines } = byLine;
    if (spans.length > 0) {
      const kept =
        this.allow.length > 0
          ? spans.filter((s) => !this.allow.some((a) => a.rule === s.span.rule || a.rule === "*"))
          : spans;
      for (const { line, span } of kept) this.recordFinding(this.line + line, span.rule);
      // What redaction would do to the size, line by line (spans never cross a line here).
      for (let i = 0; i < kept.length;) {
        let j = i;
        while (j < kept.length && kept[j]!.lineStart === kept[i]!.lineStart) j++;
        this.sizeDelta += applySpans(
          kept[i]!.text,
          kept.slice(i, j).map((k) => k.span),
        ).delta;
        i = j;
      }
    }
    this.line += newlines;
  }

  /** One finding, unless the same rule already fired on the same line. */
  private recordFinding(line: number, rule: string): void {
    for (let i = this.findings.length - 1; i >= 0 && this.findings[i]!.line === line; i--)
      if (this.findings[i]!.rule === rule) return;
    this.findingCount++;
    if (this.findings.length < SecretScanner.MAX_RECORDED)
      this.findings.push({ path: this.path, line, rule });
  }

  /** Like end(), for a redacting scanner: the last bytes to store. */
  finish(): Buffer | null {
    if (!this.redact) {
      if (this.carryBytes.length > 0) this.scanBytes(this.carryBytes, this.carryBytes.length);
      this.carryBytes = Buffer.alloc(0);
      return null;
    }
    const out = this.carry.length > 0 ? this.scanBlock(this.carry) : this.redact ? Buffer.alloc(0) : null;
    this.carry = "";
    return out;
  }

  /** `block` holds whole lines (a last one without "\n" only at the end or past MAX_LINE); this.line is its first line. */
  private scanBlock(block: string): Buffer | null {
    let spans = scanBlockSpans(block, this.state);
    if (this.allow.length > 0 && spans.length > 0)
      spans = spans.filter((s) => !this.allow.some((a) => a.rule === s.rule || a.rule === "*"));
    let counted = 0;
    let lineAt = this.line;
    for (const span of spans) {
      lineAt += countNewlines(block, counted, span.start);
      counted = span.start;
      if (span.rule === "private-key-block" && span.end > span.start) continue; // reported once, at its header
      this.recordFinding(lineAt, span.rule);
    }
    this.line += countNewlines(block, 0, block.length);
    if (spans.length === 0) return this.redact ? Buffer.from(block, "latin1") : null;
    const { text, delta } = applySpans(block, spans);
    this.sizeDelta += delta;
    return this.redact ? Buffer.from(text, "latin1") : null;
  }
}

function countNewlines(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = text.indexOf("\n", from); i >= 0 && i < to; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

export function scanText(
  path: string,
  content: Uint8Array,
  allow: readonly SecretAllowance[] = [],
): SecretFinding[] {
  const scanner = new SecretScanner(path, allow);
  scanner.push(content);
  return scanner.end();
}

/** A whole file's bytes with every finding's value replaced, its findings, and whether anything changed. */
export function redactBytes(
  path: string,
  content: Uint8Array,
  allow: readonly SecretAllowance[] = [],
): { content: Buffer; findings: SecretFinding[]; changed: boolean } {
  const scanner = new SecretScanner(path, { allow, redact: true });
  const head = scanner.push(content)!;
  const tail = scanner.finish()!;
  const changed = scanner.findingCount > 0;
  return {
    content: changed ? Buffer.concat([head, tail]) : Buffer.from(content),
    findings: scanner.findings,
    changed,
  };
}
