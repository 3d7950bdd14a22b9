import type { Command } from 'commander';

/** A command path ("catalog migrate") and what may follow it. */
interface Entry {
  path: string;
  subcommands: string[];
  options: string[];
}

function entries(command: Command, prefix = ''): Entry[] {
  const out: Entry[] = [];
  for (const sub of command.commands) {
    const path = prefix ? `${prefix} ${sub.name()}` : sub.name();
    const options = sub.options.flatMap((o) => [o.short, o.long].filter((f): f is string => f !== undefined));
    out.push({ path, subcommands: sub.commands.map((c) => c.name()), options: [...options, '--help'] });
    out.push(...entries(sub, path));
  }
  return out;
}

const quote = (words: readonly string[]) => words.join(' ');

/**
 * Completion for visor's commands, subcommands and options, generated from the program, so it
 * never lags behind a new command.
 */
export function completionScript(program: Command, shell: 'bash' | 'zsh' | 'fish'): string {
  const all = entries(program);
  const top = program.commands.map((c) => c.name());
  const globals = ['--help', '--version', '-v', '--debug'];
  if (shell === 'fish') return fishScript(all, top);
  const cases = all.map((e) => `    "${e.path}") words="${quote([...e.subcommands, ...e.options])}" ;;`).join('\n');
  const bash = `# visor completion (bash); for zsh, bashcompinit runs it.
_visor() {
  local cur path="" word i words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  # The command path so far: the words before the cursor that name (sub)commands.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    [[ "$word" == -* ]] && continue
    case "\${path:+$path }$word" in
${all.map((e) => `      "${e.path}") path="${e.path}" ;;`).join('\n')}
    esac
  done
  case "$path" in
    "") words="${quote([...top, ...globals])}" ;;
${cases}
  esac
  if [[ "$cur" != -* && -n "$path" ]]; then
    # After a command that takes no subcommand, file names (config files, images) are the likely words.
    case "$path" in
${all
  .filter((e) => e.subcommands.length === 0)
  .map((e) => `      "${e.path}") COMPREPLY=($(compgen -f -- "$cur")) ; return 0 ;;`)
  .join('\n')}
    esac
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _visor visor`;
  if (shell === 'bash') return bash;
  return `#compdef visor
# visor completion (zsh): the bash function, through zsh's bashcompinit.
autoload -U +X bashcompinit && bashcompinit
${bash}`;
}

function fishScript(all: readonly Entry[], top: readonly string[]): string {
  const lines = ['# visor completion (fish)', 'complete -c visor -f'];
  lines.push(`complete -c visor -n '__fish_use_subcommand' -a '${top.join(' ')}'`);
  for (const e of all) {
    const words = e.path.split(' ');
    const condition = words.map((w) => `__fish_seen_subcommand_from ${w}`).join('; and ');
    if (e.subcommands.length > 0) lines.push(`complete -c visor -n '${condition}' -a '${e.subcommands.join(' ')}'`);
    for (const option of e.options) {
      const flag = option.startsWith('--') ? `-l ${option.slice(2)}` : `-s ${option.slice(1)}`;
      lines.push(`complete -c visor -n '${condition}' ${flag}`);
    }
  }
  return lines.join('\n');
}
