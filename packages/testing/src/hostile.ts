import { gzipSync } from "node:zlib";

/**
 * A corpus of hostile archives for restore and deep-verify tests. Entries are raw ustar headers,
 * so every shape a malicious or broken archive can take is expressible: traversal, absolute
 * paths, links, devices, FIFOs, control characters, duplicates, and decompression bombs.
 */
export interface RawEntry {
  name: string;
  /** "x": a pax extended header whose content (see paxRecords) applies to the next entry */
  type?: "0" | "1" | "2" | "3" | "4" | "5" | "6" | "x";
  content?: Buffer | string;
  /** declared size when it should differ from the content (bombs, lies) */
  size?: number;
  linkname?: string;
  mode?: number;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function header(e: RawEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  const name = Buffer.from(e.name, "utf8");
  if (name.length > 100) throw new Error(`raw entry name too long for ustar: ${e.name}`);
  name.copy(h, 0);
  h.write(octal(e.mode ?? 0o600, 8), 100, "ascii");
  h.write(octal(0, 8), 108, "ascii");
  h.write(octal(0, 8), 116, "ascii");
  h.write(octal(size, 12), 124, "ascii");
  h.write(octal(Math.floor(Date.UTC(2026, 0, 1) / 1000), 12), 136, "ascii");
  h.write("        ", 148, "ascii");
  h.write(e.type ?? "0", 156, "ascii");
  if (e.linkname) h.write(e.linkname, 157, "utf8");
  h.write("ustar\0", 257, "ascii");
  h.write("00", 263, "ascii");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return h;
}

/** A plain tar stream of the given raw entries (content padded to 512, two zero blocks at the end). */
export function rawTar(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const content = Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content ?? "");
    const carries = !e.type || e.type === "0" || e.type === "x";
    const size = e.size ?? (carries ? content.length : 0);
    parts.push(header(e, size));
    const body =
      e.size !== undefined && e.size > content.length
        ? Buffer.concat([content, Buffer.alloc(e.size - content.length)])
        : content;
    if (carries) {
      parts.push(body);
      const pad = (512 - (body.length % 512)) % 512;
      parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** pax extended header records ("<len> key=value\n", the length counting itself), for names ustar cannot hold */
export function paxRecords(fields: Record<string, string>): Buffer {
  const out: Buffer[] = [];
  for (const [key, value] of Object.entries(fields)) {
    const body = ` ${key}=${value}\n`;
    const bodyLen = Buffer.byteLength(body);
    let len = bodyLen + String(bodyLen).length;
    if (String(len).length !== String(bodyLen).length) len++;
    out.push(Buffer.from(`${len}${body}`));
  }
  return Buffer.concat(out);
}

export interface HostileCase {
  name: string;
  /** what the refusal must say */
  expectCode:
    | "PAAS_BACKUP_HOSTILE_ENTRY"
    | "PAAS_BACKUP_ARCHIVE_TOO_LARGE"
    | "PAAS_BACKUP_MANIFEST_DISAGREES"
    | "PAAS_BACKUP_ARCHIVE_CORRUPT";
  expectMessage: RegExp;
  /** the .tar.gz bytes */
  artifact: Buffer;
  /** edit a genuine manifest into the lie this case tells (cases that need one) */
  manifest?: (genuine: Record<string, any>) => Record<string, any>;
}

const config = `${JSON.stringify({ name: "internal-dogfood", type: "internal-dogfood" }, null, 2)}\n`;

/**
 * The corpus. `escapeTarget` is an absolute path that a naive extractor would write to; tests
 * check it never appears.
 */
export function hostileCorpus(options: { escapeTarget: string }): HostileCase[] {
  return [
    ...pathEscapeCases(options.escapeTarget),
    ...entryTypeCases(),
    ...pathSpellingCases(),
    ...limitAndManifestCases(),
    ...structureCases(),
  ];
}

const gz = (entries: RawEntry[]) => gzipSync(rawTar(entries));

/** Entries that would write outside the target: traversal and absolute paths. */
function pathEscapeCases(escapeTarget: string): HostileCase[] {
  return [
    {
      name: "dot-dot traversal",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /'\.\.' in the path/,
      artifact: gz([
        { name: "config.json", content: config },
        { name: "../../escaped.txt", content: "x" },
      ]),
    },
    {
      name: "absolute path",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /absolute path/,
      artifact: gz([
        { name: "config.json", content: config },
        { name: escapeTarget, content: "x" },
      ]),
    },
  ];
}

/** Entry types no si state holds: links, devices, FIFOs. */
function entryTypeCases(): HostileCase[] {
  return [
    {
      name: "symbolic link",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /SymbolicLink/,
      artifact: gz([
        { name: "events", type: "5", mode: 0o700 },
        { name: "events/audit.jsonl", type: "2", linkname: "/etc/passwd" },
      ]),
    },
    {
      name: "hard link",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /Link/,
      artifact: gz([{ name: "config.json", type: "1", linkname: "/etc/passwd" }]),
    },
    {
      name: "character device",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /CharacterDevice/,
      artifact: gz([{ name: "null", type: "3" }]),
    },
    {
      name: "fifo",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /FIFO/,
      artifact: gz([{ name: "pipe", type: "6" }]),
    },
  ];
}

/** Paths that are one file spelled twice, lie under a file, carry control characters or stand where the block marker goes. */
function pathSpellingCases(): HostileCase[] {
  return [
    {
      name: "control character",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /control character/,
      artifact: gz([{ name: "config\n.json", content: config }]),
    },
    {
      name: "duplicate path",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /duplicate path/,
      artifact: gz([
        { name: "config.json", content: config },
        { name: "config.json", content: "{}\n" },
      ]),
    },
    {
      // the same file spelled two ways (issue 20): a second copy would replace the real log
      name: "duplicate path behind dot segments",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /duplicate path/,
      artifact: gz([
        { name: "config.json", content: config },
        { name: "./events/audit.jsonl", content: '{"event":"real"}\n' },
        { name: "events/./audit.jsonl", content: '{"event":"injected"}\n' },
      ]),
    },
    {
      name: "entries under a file entry",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /which an earlier entry made a file/,
      artifact: gz([
        { name: "config.json", content: config },
        { name: "events", content: "a file\n" },
        { name: "events/x", content: "under it\n" },
      ]),
    },
    {
      name: "a folder where the block marker stands",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /block marker/,
      artifact: gz([
        { name: "config.json", content: config },
        { name: "paas-backup.blocked.json/x", content: "{}\n" },
      ]),
    },
  ];
}

/** Past the size limit, or disagreeing with the manifest beside the artifact (sizes, unlisted paths, folders none of its files imply). */
function limitAndManifestCases(): HostileCase[] {
  return [
    {
      name: "decompression bomb",
      expectCode: "PAAS_BACKUP_ARCHIVE_TOO_LARGE",
      expectMessage: /decompression bomb/,
      artifact: gz([{ name: "events/audit.jsonl", content: Buffer.alloc(0), size: 96 * 1024 * 1024 }]),
    },
    {
      name: "size disagrees with the manifest",
      expectCode: "PAAS_BACKUP_MANIFEST_DISAGREES",
      expectMessage: /size \d+, manifest says \d+/,
      artifact: gz([{ name: "config.json", content: `${config}${" ".repeat(64)}` }]),
      manifest: (m) => ({
        ...m,
        files: m.files.filter((f: any) => f.path === "config.json"),
        totals: { ...m.totals, storedBytes: 10_000 },
      }),
    },
    {
      name: "path not in the manifest",
      expectCode: "PAAS_BACKUP_MANIFEST_DISAGREES",
      expectMessage: /not listed in the manifest/,
      artifact: gz([{ name: "implant.sh", content: "#!/bin/sh\n" }]),
      manifest: (m) => ({ ...m, totals: { ...m.totals, storedBytes: 10_000 } }),
    },
    {
      // the fake vault of issue 9 §4: folders no manifest file lies in, the vault's among them
      name: "vault folder entries",
      expectCode: "PAAS_BACKUP_MANIFEST_DISAGREES",
      expectMessage: /vault/,
      artifact: gz([
        { name: "vault/", type: "5", mode: 0o700 },
        { name: "vault/x/", type: "5", mode: 0o700 },
      ]),
      manifest: (m) => ({ ...m, totals: { ...m.totals, storedBytes: 10_000 } }),
    },
    {
      name: "folder no manifest file implies",
      expectCode: "PAAS_BACKUP_MANIFEST_DISAGREES",
      expectMessage: /folder that no file of the manifest lies in/,
      artifact: gz([{ name: "decoy/", type: "5", mode: 0o700 }]),
      manifest: (m) => ({ ...m, totals: { ...m.totals, storedBytes: 10_000 } }),
    },
  ];
}

/** Archives whose structure is the attack or the damage: nesting thousands deep, a truncated stream. */
function structureCases(): HostileCase[] {
  return [
    {
      // thousands of levels: recursive folder creation would exhaust the stack (issue 9 §4)
      name: "path nested thousands of levels deep",
      expectCode: "PAAS_BACKUP_HOSTILE_ENTRY",
      expectMessage: /nested deeper than \d+ levels|longer than \d+ bytes/,
      artifact: gz([
        { name: "PaxHeader", type: "x", content: paxRecords({ path: `${"d/".repeat(3000)}deep.json` }) },
        { name: "deep.json", content: "{}\n" },
      ]),
    },
    {
      name: "truncated archive",
      expectCode: "PAAS_BACKUP_ARCHIVE_CORRUPT",
      expectMessage: /corrupt/,
      artifact: gz([
        { name: "config.json", content: config },
        { name: "targets.json", content: "x".repeat(5000) },
      ]).subarray(0, 60),
    },
  ];
}
