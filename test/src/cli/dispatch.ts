// Argument dispatch shared by `pnpm waggle` and its `cluster` group: a table of commands, each
// loaded only when run, usage text generated from the table, and the exit codes every command
// keeps (0 done, 1 failed or unhealthy, 2 used wrongly).

/** Where a command writes: `out` for results (stdout), `err` for progress and problems (stderr). */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
}

export const processIO: CliIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** A command module: runs with the arguments after its name and returns the exit code. */
export interface CommandModule {
  run(args: string[], io: CliIO): Promise<number>;
}

export interface LeafCommand {
  name: string;
  /** Argument synopsis shown after the name, e.g. `[--image <rootfs.ext4>]`. */
  args?: string;
  summary: string;
  load: () => Promise<CommandModule>;
}

export interface CommandGroup {
  name: string;
  summary: string;
  commands: readonly Command[];
  footer?: string;
}

export type Command = LeafCommand | CommandGroup;

/** Wrong use of a command (missing or extra arguments); exit code 2 with the usage. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const isGroup = (c: Command): c is CommandGroup => 'commands' in c;
const HELP = new Set(['-h', '--help', 'help']);
/** Longer command synopses put their summary on the next line. */
const MAX_NAME_COLUMN = 24;

/** node:util parseArgs rejects unknown or malformed options with these codes. */
const isParseArgsError = (err: unknown): err is Error =>
  err instanceof Error && String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');

/** The usage text of a group: one line per command, aligned. */
export function groupUsage(prefix: string, group: CommandGroup): string {
  const rows = group.commands.map(
    (c) =>
      [isGroup(c) ? `${c.name} <command>` : `${c.name}${c.args ? ` ${c.args}` : ''}`, c.summary] as const,
  );
  const width = Math.min(Math.max(...rows.map(([left]) => left.length)), MAX_NAME_COLUMN) + 2;
  const lines = rows.map(([left, summary]) =>
    left.length + 2 > width
      ? `  ${left}\n  ${' '.repeat(width)}${summary}`
      : `  ${left.padEnd(width)}${summary}`,
  );
  return [`usage: ${prefix} <command>`, '', ...lines, ...(group.footer ? ['', group.footer] : [])].join('\n');
}

const leafUsage = (prefix: string, c: LeafCommand) =>
  `usage: ${prefix} ${c.name}${c.args ? ` ${c.args}` : ''}\n\n  ${c.summary}`;

/**
 * Runs the command `argv` names in `group` and returns its exit code. Help goes to stdout (0);
 * no command, an unknown command, an unknown option or a UsageError go to stderr with the
 * usage (2). Other errors propagate to the caller.
 */
export async function dispatch(
  prefix: string,
  group: CommandGroup,
  argv: readonly string[],
  io: CliIO,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(groupUsage(prefix, group));
    return EXIT_USAGE;
  }
  if (HELP.has(name)) {
    io.out(groupUsage(prefix, group));
    return EXIT_OK;
  }
  const command = group.commands.find((c) => c.name === name);
  if (!command) {
    io.err(`${prefix}: unknown command "${name}"\n`);
    io.err(groupUsage(prefix, group));
    return EXIT_USAGE;
  }
  if (isGroup(command)) return dispatch(`${prefix} ${command.name}`, command, rest, io);
  if (rest.some((a) => a === '-h' || a === '--help')) {
    io.out(leafUsage(prefix, command));
    return EXIT_OK;
  }
  const module = await command.load();
  try {
    return await module.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      io.err(`${prefix} ${command.name}: ${err.message}\n`);
      io.err(leafUsage(prefix, command));
      return EXIT_USAGE;
    }
    throw err;
  }
}

/** For commands that take no arguments: rejects any (as an unknown option or extra argument). */
export function expectNoArguments(args: readonly string[]): void {
  if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
}
