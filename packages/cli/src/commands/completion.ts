import { UsageError } from "@paas-backup/core/errors";
import { listContexts } from "@paas-backup/core/context";
import { isContextFolderName } from "@paas-backup/core/policy";
import { backupRootStorage, openRepository } from "@paas-backup/core/repository";
import type { Runtime } from "../runtime.js";
import type { CommandSpec, FlagSpec } from "../spec-types.js";

/** The command table (spec.ts) the scripts are generated from: the same one the parser uses. */
export interface CommandTable {
  commands: readonly CommandSpec[];
  globalFlags: readonly FlagSpec[];
  groups: Record<string, string>;
}

/** Shell completion scripts, generated from the same command table as the parser. */
const flagName = (flags: string) => flags.split(" ")[0]!.replace(/,$/, "");
const globalsOf = (table: CommandTable) => [
  ...table.globalFlags.map((f) => flagName(f.flags)),
  "--help",
  "--version",
];

function children(table: CommandTable, prefix: string[]): string[] {
  const out = new Set<string>();
  for (const c of table.commands)
    if (c.path.length > prefix.length && prefix.every((p, i) => c.path[i] === p))
      out.add(c.path[prefix.length]!);
  return [...out];
}

function flagsOf(table: CommandTable, spec: CommandSpec): string[] {
  return [...spec.flags.map((f) => flagName(f.flags)), ...globalsOf(table)];
}

export function bashCompletion(table: CommandTable): string {
  const cases: string[] = [];
  const paths = new Map<string, string[]>();
  paths.set("", [...children(table, []), ...globalsOf(table)]);
  for (const group of Object.keys(table.groups)) paths.set(group, children(table, [group]));
  for (const spec of table.commands)
    paths.set(spec.path.join(" "), [...children(table, spec.path), ...flagsOf(table, spec)]);
  for (const [path, words] of paths) cases.push(`    "${path}") opts="${words.join(" ")}" ;;`);
  const known = [...paths.keys()]
    .filter(Boolean)
    .map((p) => `"${p}"`)
    .join(" ");
  return `# paas-backup bash completion: source <(paas-backup completion bash)
_paas_backup() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" i w next opts=""
  local -a known=(${known})
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ $w == -* ]] && continue
    next="\${path:+$path }$w"
    for k in "\${known[@]}"; do [[ $k == "$next" ]] && { path="$next"; break; }; done
  done
  # Values: context names and snapshot ids come from paas-backup itself, with the roots and
  # config given on this command line.
  local prev="\${COMP_WORDS[COMP_CWORD-1]}" ctx=""
  local -a roots=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      --state-root|--backup-root|--config) roots+=("\${COMP_WORDS[i]}" "\${COMP_WORDS[i+1]}") ;;
      --context) ctx="\${COMP_WORDS[i+1]}" ;;
    esac
  done
  case "$prev" in
    --context|--drill-context)
      COMPREPLY=($(compgen -W "$(paas-backup "\${roots[@]}" completion contexts 2>/dev/null)" -- "$cur"))
      return ;;
    --snapshot)
      COMPREPLY=($(compgen -W "$(paas-backup "\${roots[@]}" completion snapshots --context "$ctx" 2>/dev/null)" -- "$cur"))
      return ;;
  esac
  if [[ $path == diff && $cur != -* && -n $ctx ]]; then
    COMPREPLY=($(compgen -W "$(paas-backup "\${roots[@]}" completion snapshots --context "$ctx" 2>/dev/null)" -- "$cur"))
    return
  fi
  case "$path" in
${cases.join("\n")}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _paas_backup paas-backup
`;
}

export function zshCompletion(table: CommandTable): string {
  return `#compdef paas-backup
# paas-backup zsh completion: source <(paas-backup completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(table)}`;
}

export function fishCompletion(table: CommandTable): string {
  const lines = [
    "# paas-backup fish completion: paas-backup completion fish > ~/.config/fish/completions/paas-backup.fish",
    "complete -c paas-backup -f",
  ];
  for (const f of table.globalFlags)
    lines.push(
      `complete -c paas-backup -l ${flagName(f.flags).slice(2)} -d ${JSON.stringify(f.description)}`,
    );
  const top = children(table, []);
  for (const name of top) {
    const spec = table.commands.find((c) => c.path.length === 1 && c.path[0] === name);
    lines.push(
      `complete -c paas-backup -n "not __fish_seen_subcommand_from ${top.join(" ")}" -a ${name} -d ${JSON.stringify(spec?.summary ?? table.groups[name] ?? "")}`,
    );
  }
  for (const spec of table.commands) {
    const cond =
      spec.path.length === 1
        ? `__fish_seen_subcommand_from ${spec.path[0]}`
        : `__fish_seen_subcommand_from ${spec.path[0]}; and __fish_seen_subcommand_from ${spec.path[1]}`;
    if (spec.path.length === 2)
      lines.push(
        `complete -c paas-backup -n "__fish_seen_subcommand_from ${spec.path[0]}; and not __fish_seen_subcommand_from ${children(table, [spec.path[0]!]).join(" ")}" -a ${spec.path[1]} -d ${JSON.stringify(spec.summary)}`,
      );
    for (const f of spec.flags)
      lines.push(
        `complete -c paas-backup -n "${cond}" -l ${flagName(f.flags).slice(2)} -d ${JSON.stringify(f.description)}`,
      );
  }
  return `${lines.join("\n")}\n`;
}

/**
 * Context names as a shell completes them: core's one context lister over the state root and the
 * backup root, quiet about a root that is missing or unreadable (a TAB must never print an error).
 */
async function contextNames(rt: Runtime): Promise<string[]> {
  const names = new Set<string>();
  for (const roots of [{ stateRoot: rt.stateRoot }, { backupRoot: rt.backupRoot }])
    for (const name of await listContexts({ fs: rt.fs, requireStateRoot: false, ...roots }).catch(() => []))
      names.add(name);
  return [...names].sort();
}

export async function completionCommand(
  table: CommandTable,
  rt: Runtime,
  flags: Record<string, unknown>,
  args: string[],
): Promise<number> {
  const shell = args[0];
  // The words the scripts offer for --context and --snapshot; quiet and exit 0 whatever is missing.
  if (shell === "contexts" && !rt.json) {
    for (const name of await contextNames(rt)) process.stdout.write(`${name}\n`);
    return 0;
  }
  if (shell === "snapshots" && !rt.json) {
    const context = typeof flags.context === "string" ? flags.context : "";
    if (isContextFolderName(context)) {
      const { snapshots } = await openRepository(backupRootStorage(rt.fs, rt.backupRoot))
        .scan(context)
        .catch(() => ({
          snapshots: [],
        }));
      for (const s of [...snapshots].reverse()) process.stdout.write(`${s.id}\n`);
    }
    process.stdout.write("latest\n");
    return 0;
  }
  const script =
    shell === "bash"
      ? bashCompletion(table)
      : shell === "zsh"
        ? zshCompletion(table)
        : shell === "fish"
          ? fishCompletion(table)
          : null;
  if (!script || rt.json) {
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      rt.json
        ? "completion prints a shell script and takes no --json"
        : `completion for ${JSON.stringify(shell)}: choose bash, zsh or fish`,
      {
        remediation: "Run `paas-backup completion bash` (or zsh, fish).",
        stage: "arguments",
      },
    );
  }
  process.stdout.write(script);
  return 0;
}
