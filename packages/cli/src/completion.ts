import { UsageError } from "@paas-backup/core/errors";
import type { Runtime } from "./runtime.js";
import { COMMANDS, GLOBAL_FLAGS, GROUPS, type CommandSpec } from "./spec.js";

/** Shell completion scripts, generated from the same command table as the parser. */
const flagName = (flags: string) => flags.split(" ")[0]!.replace(/,$/, "");
const globals = [...GLOBAL_FLAGS.map((f) => flagName(f.flags)), "--help", "--version"];

function children(prefix: string[]): string[] {
  const out = new Set<string>();
  for (const c of COMMANDS)
    if (c.path.length > prefix.length && prefix.every((p, i) => c.path[i] === p))
      out.add(c.path[prefix.length]!);
  return [...out];
}

function flagsOf(spec: CommandSpec): string[] {
  return [...spec.flags.map((f) => flagName(f.flags)), ...globals];
}

export function bashCompletion(): string {
  const cases: string[] = [];
  const paths = new Map<string, string[]>();
  paths.set("", [...children([]), ...globals]);
  for (const group of Object.keys(GROUPS)) paths.set(group, children([group]));
  for (const spec of COMMANDS) paths.set(spec.path.join(" "), [...children(spec.path), ...flagsOf(spec)]);
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
  case "$path" in
${cases.join("\n")}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _paas_backup paas-backup
`;
}

export function zshCompletion(): string {
  return `#compdef paas-backup
# paas-backup zsh completion: source <(paas-backup completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashCompletion()}`;
}

export function fishCompletion(): string {
  const lines = [
    "# paas-backup fish completion: paas-backup completion fish > ~/.config/fish/completions/paas-backup.fish",
    "complete -c paas-backup -f",
  ];
  for (const f of GLOBAL_FLAGS)
    lines.push(
      `complete -c paas-backup -l ${flagName(f.flags).slice(2)} -d ${JSON.stringify(f.description)}`,
    );
  const top = children([]);
  for (const name of top) {
    const spec = COMMANDS.find((c) => c.path.length === 1 && c.path[0] === name);
    lines.push(
      `complete -c paas-backup -n "not __fish_seen_subcommand_from ${top.join(" ")}" -a ${name} -d ${JSON.stringify(spec?.summary ?? GROUPS[name] ?? "")}`,
    );
  }
  for (const spec of COMMANDS) {
    const cond =
      spec.path.length === 1
        ? `__fish_seen_subcommand_from ${spec.path[0]}`
        : `__fish_seen_subcommand_from ${spec.path[0]}; and __fish_seen_subcommand_from ${spec.path[1]}`;
    if (spec.path.length === 2)
      lines.push(
        `complete -c paas-backup -n "__fish_seen_subcommand_from ${spec.path[0]}; and not __fish_seen_subcommand_from ${children([spec.path[0]!]).join(" ")}" -a ${spec.path[1]} -d ${JSON.stringify(spec.summary)}`,
      );
    for (const f of spec.flags)
      lines.push(
        `complete -c paas-backup -n "${cond}" -l ${flagName(f.flags).slice(2)} -d ${JSON.stringify(f.description)}`,
      );
  }
  return `${lines.join("\n")}\n`;
}

export async function completionCommand(
  rt: Runtime,
  _flags: Record<string, unknown>,
  args: string[],
): Promise<number> {
  const shell = args[0];
  const script =
    shell === "bash"
      ? bashCompletion()
      : shell === "zsh"
        ? zshCompletion()
        : shell === "fish"
          ? fishCompletion()
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
