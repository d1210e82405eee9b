/**
 * The secret scanner: si's own guardrail rules (reference §5) plus common token formats.
 * It runs on every byte we archive and every file a post-restore doctor reads. A finding names
 * the file, the line and the rule, never the value.
 */
/**
 * The version of the rules below. A snapshot records it (manifest `scannerRules`): bytes that this
 * version scanned at snapshot time and that come back with the same sha256 need no second scan.
 * Bump it whenever a rule is added or changed.
 */
export const SCANNER_RULES_VERSION = 1;

export interface SecretFinding {
  path: string;
  line: number;
  rule: string;
}

export interface SecretAllowance {
  path: string;
  rule: string;
}

const SECRET_KEY_WORDS = ["SECRET", "TOKEN", "PASSWORD", "PASS", "API_KEY", "ACCESS_KEY", "PRIVATE_KEY", "CLIENT_SECRET", "CREDENTIAL"];
const EXEMPT_KEY_WORDS = ["COUNT", "FINDINGS", "GUARDRAIL"];

/** si's "secret-like key": the upper-cased key contains one of its words. */
export function isSecretLikeKey(key: string): boolean {
  const upper = key.toUpperCase().replace(/[-.]/g, "_");
  if (EXEMPT_KEY_WORDS.some((w) => upper.includes(w))) return false;
  return SECRET_KEY_WORDS.some((w) => upper.includes(w));
}

/** si's "plaintext value": anything but empty, null-ish, a variable reference, ciphertext or a redaction. */
export function isPlaintextSecretValue(raw: string, line: string): boolean {
  if (line.includes("<redacted>")) return false;
  let value = raw.trim();
  const comment = value.search(/\s#/);
  if (comment >= 0) value = value.slice(0, comment).trim();
  if (value.length >= 2 && ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'"))))
    value = value.slice(1, -1);
  if (value === "" || value === "null" || value === "~" || value === "{}" || value === "[]") return false;
  if (value.startsWith("$") || value.startsWith("ENC[")) return false;
  if (/^(encrypted:si:v[12]:|es2:)/.test(value)) return false;
  if (value === "true" || value === "false" || /^-?\d+(\.\d+)?$/.test(value)) return false;
  return true;
}

interface PatternRule {
  rule: string;
  pattern: RegExp;
}

const TOKEN_RULES: PatternRule[] = [
  { rule: "private-key-block", pattern: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----/ },
  { rule: "aws-access-key-id", pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/ },
  { rule: "github-token", pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b/ },
  { rule: "gitlab-token", pattern: /\bglpat-[A-Za-z0-9_-]{20,}\b/ },
  { rule: "slack-token", pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}/ },
  { rule: "stripe-secret-key", pattern: /\b[sr]k_live_[A-Za-z0-9]{16,}\b/ },
  { rule: "age-secret-key", pattern: /\bAGE-SECRET-KEY-1[0-9A-Z]{50,}\b/ },
  { rule: "telegram-bot-token", pattern: /\b\d{8,10}:AA[A-Za-z0-9_-]{30,}\b/ },
  { rule: "bearer-token", pattern: /\bBearer\s+[A-Za-z0-9._~+/-]{20,}=*/ },
  { rule: "url-credentials", pattern: /\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@"']+:[^\s@/"'<>$]{3,}@[^\s"']+/ },
];

/** One cheap pass over a block decides whether it needs the precise rules at all. */
const PREFILTER =
  /secret|token|pass|api_?key|access_?key|private|credential|BEGIN|AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|[sr]k_live_|AGE-SECRET|Bearer|:\/\/[^\s/@]+@/i;

const KEY_WORD = "(?:secret|token|pass|api_?key|access_?key|private_?key|credential)";
/** si assignment lines (KEY = value, KEY: value, optionally after a YAML "- "), whole block at once */
const ASSIGNMENT_LINES = new RegExp(`^[ \\t]*(?:-[ \\t]+)?([A-Za-z_][A-Za-z0-9_]*${KEY_WORD}[A-Za-z0-9_]*|${KEY_WORD}[A-Za-z0-9_]*)[ \\t]*[:=][ \\t]*(.*)$`, "gim");
/** JSON string fields whose key looks secret-like */
const JSON_SECRET_FIELDS = new RegExp(`"([A-Za-z0-9_.-]*${KEY_WORD}[A-Za-z0-9_.-]*)"\\s*:\\s*"((?:[^"\\\\\\n]|\\\\.)*)"`, "gi");
const ANY_TOKEN = new RegExp(TOKEN_RULES.map((r) => r.pattern.source).join("|"), "g");
/** literal anchors of the token formats: the combined token regex runs only on blocks holding one */
const TOKEN_PREFILTER = /BEGIN|AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|_live_|AGE-SECRET|Bearer|\d:AA|:\/\/[^\s/@"']+:[^\s@/"']+@/;
const KEY_PREFILTER = new RegExp(KEY_WORD, "i");

interface RawHit {
  index: number;
  rule: string;
}

/**
 * Every rule a block of whole lines breaks, with the offset of each hit. The regexes run over the
 * block, not line by line: most blocks of a large log have candidates (si's redacted fields) but
 * no finding, and this keeps them cheap.
 */
function scanBlockHits(block: string): RawHit[] {
  const hits: RawHit[] = [];
  if (!PREFILTER.test(block)) return hits;
  if (KEY_PREFILTER.test(block)) scanKeyedSecrets(block, hits);
  if (TOKEN_PREFILTER.test(block)) {
    ANY_TOKEN.lastIndex = 0;
    for (let m = ANY_TOKEN.exec(block); m; m = ANY_TOKEN.exec(block)) {
      const rule = TOKEN_RULES.find((r) => r.pattern.test(m![0]))?.rule ?? "token";
      hits.push({ index: m.index, rule });
    }
  }
  return hits.sort((a, b) => a.index - b.index);
}

function scanKeyedSecrets(block: string, hits: RawHit[]): void {
  ASSIGNMENT_LINES.lastIndex = 0;
  for (let m = ASSIGNMENT_LINES.exec(block); m; m = ASSIGNMENT_LINES.exec(block)) {
    const line = m[0];
    if (line.trimStart().startsWith("#")) continue;
    if (isSecretLikeKey(m[1]!) && isPlaintextSecretValue(m[2]!, line)) hits.push({ index: m.index, rule: "secret-assignment" });
  }
  JSON_SECRET_FIELDS.lastIndex = 0;
  for (let m = JSON_SECRET_FIELDS.exec(block); m; m = JSON_SECRET_FIELDS.exec(block)) {
    if (isSecretLikeKey(m[1]!) && isPlaintextSecretValue(m[2]!, m[2]!)) hits.push({ index: m.index, rule: "secret-json-field" });
  }
}

/** The rules that one line breaks (deduplicated), in a stable order. */
export function scanLine(line: string): string[] {
  return [...new Set(scanBlockHits(line).map((h) => h.rule))];
}

/**
 * A streaming scanner for one file: feed it chunks in order, then `end()`. It keeps at most one
 * partial line (capped) between chunks, so memory stays flat for gigabyte logs.
 */
export class SecretScanner {
  readonly findings: SecretFinding[] = [];
  private carry = "";
  private line = 1;
  private static readonly MAX_LINE = 1024 * 1024;
  constructor(
    private readonly path: string,
    private readonly allow: readonly SecretAllowance[] = [],
  ) {}

  push(chunk: Uint8Array): void {
    // latin1 maps bytes 1:1, so every pattern (all ASCII) matches as it would on UTF-8 text.
    const text = this.carry + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1");
    const lastNewline = text.lastIndexOf("\n");
    if (lastNewline < 0) {
      this.carry = text.length > SecretScanner.MAX_LINE ? text.slice(-4096) : text;
      return;
    }
    this.scanBlock(text.slice(0, lastNewline));
    this.line += 1;
    const rest = text.slice(lastNewline + 1);
    this.carry = rest.length > SecretScanner.MAX_LINE ? rest.slice(-4096) : rest;
  }

  end(): SecretFinding[] {
    if (this.carry.length > 0) this.scanBlock(this.carry);
    this.carry = "";
    return this.findings;
  }

  /** `block` holds whole lines; this.line is the number of its first line. */
  private scanBlock(block: string): void {
    const hits = scanBlockHits(block).filter((h) => !this.allow.some((a) => a.path === this.path && (a.rule === h.rule || a.rule === "*")));
    let counted = 0;
    let lineAt = this.line;
    for (const hit of hits) {
      lineAt += countNewlines(block.slice(counted, hit.index));
      counted = hit.index;
      if (this.findings.length < 100 && !this.findings.some((f) => f.line === lineAt && f.rule === hit.rule))
        this.findings.push({ path: this.path, line: lineAt, rule: hit.rule });
    }
    this.line += countNewlines(block);
  }
}

function countNewlines(text: string): number {
  let n = 0;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

export function scanText(path: string, content: Uint8Array, allow: readonly SecretAllowance[] = []): SecretFinding[] {
  const scanner = new SecretScanner(path, allow);
  scanner.push(content);
  return scanner.end();
}
