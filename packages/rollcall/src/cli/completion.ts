import { Argument, type Command, type Option } from 'commander';
import { availableBackends } from '../backends.js';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';

/** One completion candidate and its description. */
interface Word {
  name: string;
  description: string;
}

/** Command paths (`''`, `'kv'`, `'lock hold'`) and what may follow each: subcommands, then options. */
interface Tree {
  paths: Map<string, Word[]>;
  /** Options that take a value (the next word is not a command). */
  valueOptions: string[];
}

function optionWords(options: readonly Option[]): Word[] {
  return options.flatMap((o) =>
    [o.long, o.short]
      .filter((f): f is string => Boolean(f))
      .map((name) => ({ name, description: o.description })),
  );
}

/** Walks the program: every command path with its subcommands (and aliases) and options, global options everywhere. */
function treeOf(program: Command): Tree {
  const globals = [...optionWords(program.options), { name: '--help', description: 'show help' }];
  const paths = new Map<string, Word[]>();
  const valueOptions = new Set<string>();
  const visit = (command: Command, path: string) => {
    for (const o of command.options)
      if (o.required || o.optional) for (const f of [o.long, o.short]) if (f) valueOptions.add(f);
    const subcommands = command.commands.flatMap((c) =>
      [c.name(), ...c.aliases()].map((name) => ({ name, description: c.description() })),
    );
    const own = command === program ? [] : optionWords(command.options);
    // Arguments with a fixed set of values (`completion <bash|zsh>`) complete like subcommands.
    const choices = command.registeredArguments.flatMap((a) =>
      (a.argChoices ?? []).map((name) => ({ name, description: a.description })),
    );
    paths.set(path, [...subcommands, ...choices, ...own, ...globals]);
    for (const c of command.commands)
      for (const name of [c.name(), ...c.aliases()]) visit(c, path ? `${path} ${name}` : name);
  };
  visit(program, '');
  return { paths, valueOptions: [...valueOptions].sort() };
}

/** `'text'` for a POSIX shell, whatever the text holds. */
function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A `case` branch for the value-taking options other than `--backend` and `--config`: the next word is theirs. */
function otherValueOptions(tree: Tree, indent: string, body: string): string {
  const options = tree.valueOptions.filter((o) => !['-b', '--backend', '-c', '--config'].includes(o));
  return options.length === 0 ? '' : `${indent}${options.join('|')}) ${body}`;
}

function bashScript(tree: Tree, backends: readonly string[]): string {
  const cases = [...tree.paths].map(
    ([path, words]) => `    ${quote(path)}) echo ${quote(words.map((w) => w.name).join(' '))} ;;`,
  );
  return `# bash completion for rollcall. Load it with:
#   source <(rollcall completion bash)
# or save it as /etc/bash_completion.d/rollcall.
_rollcall_words() {
  case "$1" in
${cases.join('\n')}
    *) return 1 ;;
  esac
}
_rollcall() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" cmdpath="" next i
  case "$prev" in
    -b|--backend) COMPREPLY=($(compgen -W ${quote(backends.join(' '))} -- "$cur")); return ;;
    -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
${otherValueOptions(tree, '    ', 'COMPREPLY=(); return ;;')}
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    next="\${cmdpath:+$cmdpath }\${COMP_WORDS[i]}"
    if _rollcall_words "$next" >/dev/null; then cmdpath="$next"; fi
  done
  COMPREPLY=($(compgen -W "$(_rollcall_words "$cmdpath")" -- "$cur"))
}
complete -F _rollcall rollcall
`;
}

function zshScript(tree: Tree, backends: readonly string[]): string {
  const cases = [...tree.paths].map(
    ([path, words]) =>
      `    ${quote(path)}) print -rl -- ${words.map((w) => quote(`${w.name.replace(/:/g, '\\:')}:${w.description}`)).join(' ')} ;;`,
  );
  return `#compdef rollcall
# zsh completion for rollcall. Load it (after compinit) with:
#   source <(rollcall completion zsh)
# or save it as _rollcall in a directory of your $fpath.
_rollcall_words() {
  case "$1" in
${cases.join('\n')}
    *) return 1 ;;
  esac
}
_rollcall() {
  local cmdpath="" next i
  local -a candidates
  case "\${words[CURRENT-1]}" in
    -b|--backend) compadd -- ${backends.join(' ')}; return ;;
    -c|--config) _files; return ;;
${otherValueOptions(tree, '    ', 'return 1 ;;')}
  esac
  for ((i = 2; i < CURRENT; i++)); do
    next="\${cmdpath:+$cmdpath }\${words[i]}"
    if _rollcall_words "$next" >/dev/null; then cmdpath="$next"; fi
  done
  candidates=("\${(@f)$(_rollcall_words "$cmdpath")}")
  _describe -t commands 'rollcall' candidates
}
if (( $+functions[compdef] )); then compdef _rollcall rollcall; fi
`;
}

/** The completion script for `shell`, generated from the program's commands and options. */
function completionScript(program: Command, shell: string): string {
  const tree = treeOf(program);
  const backends = availableBackends();
  if (shell === 'bash') return bashScript(tree, backends);
  if (shell === 'zsh') return zshScript(tree, backends);
  throw new UsageError(`completion: unknown shell '${shell}'; use bash or zsh`);
}

/** `completion bash|zsh`. */
export function completionCommand(program: Command, ctx: CliContext): void {
  program
    .command('completion')
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
    .description('print a shell completion script (bash or zsh)')
    .addHelpText(
      'after',
      '\nExamples:\n  source <(rollcall completion bash)\n  source <(rollcall completion zsh)   # after compinit',
    )
    .action((shell: string) => {
      for (const line of completionScript(program, shell).trimEnd().split('\n')) ctx.out(line);
    });
}
