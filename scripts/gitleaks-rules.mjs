// Regenerates the scanner's gitleaks-derived rules and the oracle's literal samples from a
// gitleaks checkout: node scripts/gitleaks-rules.mjs <gitleaks repo or git dir> [commit]
//
// - packages/core/src/policy/gitleaks-rules.ts: every rule of config/gitleaks.toml as data (id,
//   keywords, the regex translated to JavaScript, secret group, entropy, allowlists, stop words).
// - packages/testing/src/gitleaks-samples.ts: the literal true-positive and every false-positive
//   sample of each rule's Go source (cmd/generate/config/rules/*.go), GenerateSampleSecrets with
//   two literal arguments expanded as gitleaks expands it. The generated true positives (gitleaks
//   makes them from each regex at run time) are made by the oracle test from the rules themselves.
//
// When the output changes, bump SCANNER_RULES_VERSION in packages/core/src/policy/secrets.ts.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const [repo, commitArg] = process.argv.slice(2);
if (!repo) {
  console.error("usage: node scripts/gitleaks-rules.mjs <gitleaks checkout> [commit]");
  process.exit(2);
}
const git = (...args) => execFileSync("git", ["-C", repo, ...args], { encoding: "utf8", maxBuffer: 1 << 28 });
const commit = git("rev-parse", commitArg ?? "HEAD").trim();
const show = (path) => git("show", `${commit}:${path}`);

// ---- config/gitleaks.toml: the few TOML shapes it uses ----
function parseToml(text) {
  const doc = { rules: [] };
  let table = doc;
  let i = 0;
  const skipSpace = () => {
    for (;;) {
      while (i < text.length && /\s/.test(text[i])) i++;
      if (text[i] === "#") while (i < text.length && text[i] !== "\n") i++;
      else return;
    }
  };
  const value = () => {
    skipSpace();
    if (text.startsWith("'''", i)) {
      const end = text.indexOf("'''", i + 3);
      const v = text.slice(i + 3, end);
      i = end + 3;
      return v;
    }
    if (text[i] === "'") {
      const end = text.indexOf("'", i + 1);
      const v = text.slice(i + 1, end);
      i = end + 1;
      return v;
    }
    if (text[i] === '"') {
      let v = "";
      i++;
      while (text[i] !== '"') {
        if (text[i] === "\\") {
          const c = text[i + 1];
          v += { n: "\n", t: "\t", '"': '"', "\\": "\\" }[c] ?? c;
          i += 2;
        } else v += text[i++];
      }
      i++;
      return v;
    }
    if (text[i] === "[") {
      i++;
      const out = [];
      for (;;) {
        skipSpace();
        if (text[i] === "]") {
          i++;
          return out;
        }
        out.push(value());
        skipSpace();
        if (text[i] === ",") i++;
      }
    }
    const m = /^[^\s,\]]+/.exec(text.slice(i));
    i += m[0].length;
    return m[0] === "true" ? true : m[0] === "false" ? false : Number(m[0]);
  };
  for (;;) {
    skipSpace();
    if (i >= text.length) return doc;
    if (text.startsWith("[[rules.allowlists]]", i)) {
      const rule = doc.rules[doc.rules.length - 1];
      (rule.allowlists ??= []).push((table = {}));
      i += "[[rules.allowlists]]".length;
    } else if (text.startsWith("[[rules]]", i)) {
      doc.rules.push((table = {}));
      i += "[[rules]]".length;
    } else if (text.startsWith("[allowlist]", i)) {
      doc.allowlist = table = {};
      i += "[allowlist]".length;
    } else {
      const m = /^([A-Za-z]+)\s*=/.exec(text.slice(i));
      if (!m) throw new Error(`gitleaks.toml: cannot read at ${text.slice(i, i + 40)}`);
      i += m[0].length;
      table[m[1]] = value();
    }
  }
}

// ---- Go RE2 syntax to JavaScript ----
/**
 * JavaScript (Node 20) has no inline flags: a `(?i)` in mid-pattern, `(?i:…)`, `(?-i:…)` and
 * `(?s:…)` are rewritten by spelling letters in both cases (`[aA]`) and `.` as `[\s\S]`; a
 * pattern case-insensitive throughout keeps the `i` flag instead. `\z` is `$` (no `m` flag),
 * `(?P<n>` is `(?<n>`, POSIX classes are spelled out, and a `]` first in a class is escaped.
 */
export function translateRegex(go) {
  let source = go;
  let flags = "";
  // case-insensitive throughout: the flag, and any inner (?i:…) is a plain group
  if (source.startsWith("(?i)") && !/\(\?-i[:)]/.test(source))
    return { source: plain(source.slice(4), false, false), flags: "i" };
  return { source: plain(source, false, true), flags };

  function plain(p, ciStart, expand) {
    let out = "";
    const stack = [{ ci: ciStart, dotAll: false }];
    const top = () => stack[stack.length - 1];
    for (let j = 0; j < p.length;) {
      const c = p[j];
      if (c === "\\") {
        const e = p[j + 1];
        if (e === "z") out += "$";
        else if (e === "A") out += "^";
        else out += c + e;
        j += 2;
        if (e === "x" && p[j] === "{") {
          const close = p.indexOf("}", j);
          out = out.slice(0, -2) + `\\u${p.slice(j + 1, close).padStart(4, "0")}`;
          j = close + 1;
        }
        continue;
      }
      if (c === "(" && p[j + 1] === "?") {
        const m = /^\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])/.exec(p.slice(j));
        if (p.startsWith("(?P<", j)) {
          out += "(?<";
          stack.push({ ...top() });
          j += 4;
          continue;
        }
        if (m && (m[1] || m[2] !== undefined)) {
          const set = { ...top() };
          if (m[1].includes("i")) set.ci = true;
          if (m[1].includes("s")) set.dotAll = true;
          if (m[2]?.includes("i")) set.ci = false;
          if (m[2]?.includes("s")) set.dotAll = false;
          if (m[3] === ")") Object.assign(top(), set);
          else {
            stack.push(set);
            out += "(?:";
          }
          j += m[0].length;
          continue;
        }
        stack.push({ ...top() });
        out += c;
        j++;
        continue;
      }
      if (c === "(") {
        stack.push({ ...top() });
        out += c;
        j++;
        continue;
      }
      if (c === ")") {
        stack.pop();
        out += c;
        j++;
        continue;
      }
      if (c === "[") {
        let k = j + 1;
        let body = "";
        if (p[k] === "^") {
          body += "^";
          k++;
        }
        if (p[k] === "]") {
          body += "\\]";
          k++;
        }
        const letters = [];
        while (p[k] !== "]") {
          if (p.startsWith("[:", k)) {
            const end = p.indexOf(":]", k);
            const name = p.slice(k + 2, end);
            body +=
              {
                alnum: "A-Za-z0-9",
                alpha: "A-Za-z",
                digit: "0-9",
                xdigit: "0-9A-Fa-f",
                upper: "A-Z",
                lower: "a-z",
                space: "\\s",
              }[name] ??
              (() => {
                throw new Error(`POSIX class ${name}`);
              })();
            k = end + 2;
            continue;
          }
          if (p[k] === "\\") {
            body += p.slice(k, k + 2);
            k += 2;
            continue;
          }
          if (p[k + 1] === "-" && p[k + 2] !== "]") {
            letters.push([p[k], p[k + 2]]);
            body += p.slice(k, k + 3);
            k += 3;
            continue;
          }
          letters.push([p[k], p[k]]);
          body += p[k] === "[" ? "\\[" : p[k];
          k++;
        }
        if (expand && top().ci)
          for (const [a, b] of letters) {
            for (const [lo, hi, delta] of [
              ["a", "z", -32],
              ["A", "Z", 32],
            ]) {
              const from = a < lo ? lo : a;
              const to = b > hi ? hi : b;
              if (from <= to)
                body +=
                  from === to
                    ? String.fromCharCode(from.charCodeAt(0) + delta)
                    : `${String.fromCharCode(from.charCodeAt(0) + delta)}-${String.fromCharCode(to.charCodeAt(0) + delta)}`;
            }
          }
        out += `[${body}]`;
        j = k + 1;
        continue;
      }
      if (c === "." && top().dotAll) {
        out += "[\\s\\S]";
        j++;
        continue;
      }
      if (c === "{" && /^\{\d+(?:,\d*)?\}/.test(p.slice(j))) {
        const q = /^\{\d+(?:,\d*)?\}/.exec(p.slice(j))[0];
        out += q;
        j += q.length;
        continue;
      }
      if (expand && top().ci && /[a-zA-Z]/.test(c)) {
        out += `[${c.toLowerCase()}${c.toUpperCase()}]`;
        j++;
        continue;
      }
      out += c === "{" || c === "}" ? `\\${c}` : c;
      j++;
    }
    return out;
  }
}

// ---- the Go rule sources: literal samples ----
/** Go string literals and the punctuation around them, comments dropped. */
function goTokens(src) {
  const tokens = [];
  for (let i = 0; i < src.length;) {
    const c = src[i];
    if (src.startsWith("//", i)) {
      i = src.indexOf("\n", i);
      if (i < 0) break;
      continue;
    }
    if (src.startsWith("/*", i)) {
      i = src.indexOf("*/", i) + 2;
      continue;
    }
    if (c === "`") {
      const end = src.indexOf("`", i + 1);
      tokens.push({ str: src.slice(i + 1, end) });
      i = end + 1;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      while (src[j] !== '"') j += src[j] === "\\" ? 2 : 1;
      tokens.push({ str: JSON.parse(src.slice(i, j + 1).replace(/\\x([0-9a-fA-F]{2})/g, "\\u00$1")) });
      i = j + 1;
      continue;
    }
    if (/\s/.test(c)) {
      if (c === "\n") tokens.push({ p: "\n" });
      i++;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(src.slice(i, i + 200));
    if (m) {
      tokens.push({ id: m[0] });
      i += m[0].length;
      continue;
    }
    tokens.push({ p: c });
    i++;
  }
  return tokens;
}

const SAMPLE_TEMPLATES = [
  '{i}Token="{s}"',
  '{i}Token = "{s}"',
  "{i}Token={s}",
  "{i}Token = {s}",
  '{\n    "{i}_token": "{s}"\n}',
  '{"config.ini": "{I}_TOKEN={s}\\nBACKUP_ENABLED=true"}',
  "<{i}Token>\n    {s}\n</{i}Token>",
  "{i}_token: {s}",
  "{i}_token: '{s}'",
  '{i}_token: "{s}"',
  'string {i}Token = "{s}";',
  'var {i}Token string = "{s}"',
  '{i}Token := "{s}"',
  "{i}Token := `{s}`",
  'String {i}Token = "{s}";',
  'var {i}Token = "{s}"',
  '${i}Token .= "{s}"',
  "{i}Token = '{s}'",
  '{i}Token = "{s}"',
  'System.setProperty("{I}_TOKEN", "{s}")',
  '  "{i}Token" => "{s}"',
  '{i}_TOKEN = "{s}"',
  '{i}_TOKEN := "{s}"',
  '{i}_TOKEN ::= "{s}"',
  '{i}_TOKEN :::= "{s}"',
  '{i}_TOKEN ?= "{s}"',
];
const expandSamples = (identifier, secret) =>
  SAMPLE_TEMPLATES.map((t) =>
    t.replaceAll("{i}", identifier).replaceAll("{I}", identifier.toUpperCase()).replaceAll("{s}", secret),
  );

/**
 * The literal samples of each `tps`/`fps` statement of one Go function: a string literal that is a
 * whole element (between `{`/`(`/`,` and `,`/`}`/`)`, no `+` beside it) of a []string{...} or an
 * append(...), and GenerateSampleSecrets("id", "secret") with two literals, expanded.
 */
function samplesOf(body) {
  const tokens = goTokens(body);
  const out = { tps: [], fps: [] };
  for (let t = 0; t < tokens.length; t++) {
    const name = tokens[t].id;
    if (name !== "tps" && name !== "fps") continue;
    const op = tokens[t + 1]?.p === ":" ? 2 : 1;
    if (tokens[t + op]?.p !== "=" || tokens[t - 1]?.p === "(" || tokens[t - 1]?.p === ",") continue;
    let depth = 0;
    const opens = [];
    for (let k = t + op + 1; k < tokens.length; k++) {
      const tok = tokens[k];
      if (tok.p === "\n" && depth === 0) break;
      if (tok.p === "(" || tok.p === "{" || tok.p === "[") {
        depth++;
        opens.push(tokens[k - 1]?.id ?? (tokens[k - 1]?.p === "]" ? "[]string" : tok.p));
        continue;
      }
      if (tok.p === ")" || tok.p === "}" || tok.p === "]") {
        depth--;
        opens.pop();
        continue;
      }
      if (tok.id === "utils.GenerateSampleSecrets" && tokens[k + 2]?.str !== undefined) {
        if (tokens[k + 3]?.p === "," && tokens[k + 4]?.str !== undefined && tokens[k + 5]?.p === ")")
          out[name].push(...expandSamples(tokens[k + 2].str, tokens[k + 4].str));
        continue;
      }
      if (tok.str === undefined) continue;
      const before = tokens
        .slice(0, k)
        .reverse()
        .find((x) => x.p !== "\n");
      const after = tokens.slice(k + 1).find((x) => x.p !== "\n");
      const inList = opens[opens.length - 1] === "string" || opens[opens.length - 1] === "append";
      if (inList && ["{", ",", "("].includes(before?.p) && [",", "}", ")"].includes(after?.p))
        out[name].push(tok.str);
    }
  }
  return out;
}

const config = parseToml(show("config/gitleaks.toml"));
const goFiles = git("ls-tree", "--name-only", commit, "cmd/generate/config/rules/")
  .split("\n")
  .filter((f) => f.endsWith(".go") && !f.endsWith("_test.go"));
const samples = new Map();
for (const file of goFiles) {
  const src = show(file);
  for (const fn of src.split(/\nfunc /).slice(1)) {
    const id = /RuleID:\s*"([^"]+)"/.exec(fn)?.[1];
    if (!id) continue;
    const s = samplesOf(fn);
    const have = samples.get(id) ?? { tps: [], fps: [] };
    have.tps.push(...s.tps);
    have.fps.push(...s.fps);
    samples.set(id, have);
  }
}

const rules = [];
for (const r of config.rules) {
  if (!r.regex) continue; // pkcs12-file: a path rule for binary files, nothing to read in text
  const { source, flags } = translateRegex(r.regex);
  new RegExp(source, flags); // fails here, not at load, if a construct is left untranslated
  const allow = (r.allowlists ?? []).map((a) => ({
    ...(a.condition === "AND" ? { and: true } : {}),
    target: a.regexTarget ?? "secret",
    regexes: (a.regexes ?? []).map((x) => translateRegex(x)),
    ...(a.paths ? { paths: a.paths.map((x) => translateRegex(x)) } : {}),
    ...(a.stopwords ? { stopwords: a.stopwords } : {}),
  }));
  rules.push({
    id: r.id,
    keywords: (r.keywords ?? []).map((k) => k.toLowerCase()),
    source,
    flags,
    ...(r.secretGroup ? { secretGroup: r.secretGroup } : {}),
    ...(r.entropy ? { entropy: r.entropy } : {}),
    ...(r.path ? { path: translateRegex(r.path) } : {}),
    ...(allow.length ? { allow } : {}),
  });
}
const globalAllow = {
  regexes: config.allowlist.regexes.map((x) => translateRegex(x)),
  stopwords: config.allowlist.stopwords ?? [],
};

const header = (what) =>
  `// Generated by scripts/gitleaks-rules.mjs from gitleaks/gitleaks@${commit} (MIT licence):\n// ${what}\n// Do not edit by hand: rerun the script, and bump SCANNER_RULES_VERSION when this changes.\n`;
writeFileSync(
  resolve(root, "packages/core/src/policy/gitleaks-rules.ts"),
  `${header("config/gitleaks.toml, its regexes translated to JavaScript.")}
export interface GitleaksPattern {
  source: string;
  flags: string;
}
export interface GitleaksAllowlist {
  /** every part must match (gitleaks' condition = "AND"); else any one */
  and?: boolean;
  /** what the regexes test: the secret, the whole match or the line */
  target: string;
  regexes: GitleaksPattern[];
  paths?: GitleaksPattern[];
  stopwords?: string[];
}
export interface GitleaksRule {
  id: string;
  /** lower case; a line holding none of them is not tried */
  keywords: string[];
  source: string;
  flags: string;
  secretGroup?: number;
  entropy?: number;
  /** the rule applies to files whose path matches only */
  path?: GitleaksPattern;
  allow?: GitleaksAllowlist[];
}
export const GITLEAKS_COMMIT = ${JSON.stringify(commit)};
export const GITLEAKS_RULES: readonly GitleaksRule[] = ${JSON.stringify(rules, null, 2)};
export const GITLEAKS_GLOBAL_ALLOW: { regexes: GitleaksPattern[]; stopwords: string[] } = ${JSON.stringify(globalAllow, null, 2)};
`,
);
const sampleRows = rules.map((r) => ({ id: r.id, ...(samples.get(r.id) ?? { tps: [], fps: [] }) }));
writeFileSync(
  resolve(root, "packages/testing/src/gitleaks-samples.ts"),
  `${header("the literal true-positive and every false-positive sample of cmd/generate/config/rules/*.go.")}
export interface GitleaksRuleSamples {
  id: string;
  tps: string[];
  fps: string[];
}
export const GITLEAKS_SAMPLES: readonly GitleaksRuleSamples[] = ${JSON.stringify(sampleRows, null, 2)};
`,
);
console.log(
  `${rules.length} rules; ${sampleRows.reduce((n, r) => n + r.tps.length, 0)} literal true positives, ${sampleRows.reduce((n, r) => n + r.fps.length, 0)} false positives`,
);
