// Where a secret rule's regex is tried on a line: at every position, or only where a literal that
// every match holds is (issue 23: the scanner's cost on hex-heavy lines).

/**
 * Text every match of a pattern holds, case as written, a fixed number of characters after the
 * match's start, by the pattern's source. Such a pattern is tried only where that text is (a
 * sticky copy, at each occurrence), not at every position of the line: the same matches, found in
 * the order the global regex finds them (a match starting at a position is the regex's match there
 * however the search got there). On hex-heavy lines these regexes tried 32 characters of
 * [a-f0-9] at almost every position of every line that names "prod-us-2" or holds "sk" and a hex
 * digit (issue 23's profile: 4.5 % of a first full's CPU on the long shape). Only for patterns
 * without the i flag; the secrets test checks each entry against its plain regex.
 */
export const LITERAL_AT: ReadonlyMap<string, { literal: string; offset: number }> = new Map([
  // si's mailchimp-api-key: "-us" after 32 hex digits (gitleaks' own, keyed by "mailchimp", has none)
  [String.raw`\b([a-f0-9]{32}-us\d{1,2})\b`, { literal: "-us", offset: 32 }],
  // si's twilio-api-key and gitleaks': "SK" first
  [String.raw`\b(SK[0-9a-fA-F]{32})\b`, { literal: "SK", offset: 0 }],
  [String.raw`SK[0-9a-fA-F]{32}`, { literal: "SK", offset: 0 }],
]);

/** A global pattern and, when LITERAL_AT holds its source, the sticky copy tried at each occurrence. */
export interface RuleMatcher {
  pattern: RegExp;
  hint: { literal: string; offset: number; sticky: RegExp } | null;
}

export function ruleMatcher(pattern: RegExp): RuleMatcher {
  const at = pattern.flags.includes("i") ? undefined : LITERAL_AT.get(pattern.source);
  return {
    pattern,
    hint: at ? { ...at, sticky: new RegExp(pattern.source, `${pattern.flags.replace("g", "")}y`) } : null,
  };
}

/**
 * The next match of the global pattern at or after its lastIndex, as pattern.exec(line) returns
 * it, lastIndex set as exec sets it (past the match, or 0 when there is none).
 */
export function nextMatch(m: RuleMatcher, line: string): RegExpExecArray | null {
  const { pattern, hint } = m;
  if (!hint) return pattern.exec(line);
  const from = pattern.lastIndex;
  for (
    let q = line.indexOf(hint.literal, from + hint.offset);
    q >= 0;
    q = line.indexOf(hint.literal, q + 1)
  ) {
    hint.sticky.lastIndex = q - hint.offset;
    const found = hint.sticky.exec(line);
    if (found) {
      pattern.lastIndex = found.index + found[0].length;
      return found;
    }
  }
  pattern.lastIndex = 0;
  return null;
}
