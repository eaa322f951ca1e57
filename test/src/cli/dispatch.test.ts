import { describe, expect, it } from 'vitest';
import { type CliIO, type CommandGroup, dispatch, groupUsage, UsageError } from './dispatch.ts';

function recorder() {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l) };
  return { io, out: () => out.join('\n'), err: () => err.join('\n') };
}

const calls: Array<[string, string[]]> = [];
const leaf = (name: string, run: (args: string[]) => Promise<number>) => ({
  name,
  summary: `the ${name} command`,
  load: async () => ({
    run: (args: string[]) => {
      calls.push([name, args]);
      return run(args);
    },
  }),
});

const PROGRAM: CommandGroup = {
  name: 'tool',
  summary: 'a tool',
  commands: [
    leaf('go', async () => 0),
    leaf('sick', async () => 1),
    leaf('picky', async (args) => {
      if (args.length) throw new UsageError(`unexpected argument "${args[0]}"`);
      return 0;
    }),
    leaf('boom', async () => {
      throw new Error('disk on fire');
    }),
    { name: 'group', summary: 'nested commands', commands: [leaf('inner', async () => 0)] },
  ],
  footer: 'see the docs',
};

describe('dispatch', () => {
  it('runs the named command with the arguments after its name and returns its exit code', async () => {
    calls.length = 0;
    const r = recorder();
    expect(await dispatch('tool', PROGRAM, ['go', 'a', '--b'], r.io)).toBe(0);
    expect(await dispatch('tool', PROGRAM, ['sick'], r.io)).toBe(1);
    expect(calls).toEqual([
      ['go', ['a', '--b']],
      ['sick', []],
    ]);
  });

  it('answers an unknown command with a clear error and the usage on stderr, exit code 2', async () => {
    const r = recorder();
    expect(await dispatch('tool', PROGRAM, ['nope'], r.io)).toBe(2);
    expect(r.err()).toContain('tool: unknown command "nope"');
    expect(r.err()).toContain('usage: tool <command>');
    expect(r.err()).toMatch(/^ {2}go\s+the go command$/m);
    expect(r.out()).toBe('');
  });

  it('prints the usage on stderr with exit code 2 when no command is given', async () => {
    const r = recorder();
    expect(await dispatch('tool', PROGRAM, [], r.io)).toBe(2);
    expect(r.err()).toContain('usage: tool <command>');
  });

  it('prints the usage on stdout with exit code 0 for --help, -h and help', async () => {
    for (const h of ['--help', '-h', 'help']) {
      const r = recorder();
      expect(await dispatch('tool', PROGRAM, [h], r.io)).toBe(0);
      expect(r.out()).toContain('usage: tool <command>');
      expect(r.out()).toContain('see the docs');
    }
  });

  it("prints a command's own usage for <command> --help without running it", async () => {
    calls.length = 0;
    const r = recorder();
    expect(await dispatch('tool', PROGRAM, ['go', '--help'], r.io)).toBe(0);
    expect(r.out()).toContain('usage: tool go');
    expect(calls).toEqual([]);
  });

  it("turns a command's UsageError into the message and its usage, exit code 2", async () => {
    const r = recorder();
    expect(await dispatch('tool', PROGRAM, ['picky', 'extra'], r.io)).toBe(2);
    expect(r.err()).toContain('tool picky: unexpected argument "extra"');
    expect(r.err()).toContain('usage: tool picky');
  });

  it('lets other errors through to the caller', async () => {
    await expect(dispatch('tool', PROGRAM, ['boom'], recorder().io)).rejects.toThrow('disk on fire');
  });

  it('dispatches into a group with the group in the prefix', async () => {
    calls.length = 0;
    const r = recorder();
    expect(await dispatch('tool', PROGRAM, ['group', 'inner', 'x'], r.io)).toBe(0);
    expect(calls).toEqual([['inner', ['x']]]);
    expect(await dispatch('tool', PROGRAM, ['group', 'nope'], r.io)).toBe(2);
    expect(r.err()).toContain('tool group: unknown command "nope"');
  });

  it('aligns the summaries in the usage', () => {
    const lines = groupUsage('tool', PROGRAM)
      .split('\n')
      .filter((l) => l.startsWith('  '));
    const columns = new Set(
      lines.map((l) => (l.indexOf('the ') >= 0 ? l.indexOf('the ') : l.indexOf('nested'))),
    );
    expect(columns.size).toBe(1);
  });
});
