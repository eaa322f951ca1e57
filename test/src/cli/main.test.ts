import { describe, expect, it } from 'vitest';
import type { CliIO } from './dispatch.ts';
import { main } from './main.ts';

async function waggle(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = await main(argv, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

// Only argument handling: every case here is refused (or answered with help) before a command
// touches the machine.
describe('pnpm waggle', () => {
  it('lists up, down, status, doctor and the cluster group in its help', async () => {
    const r = await waggle('--help');
    expect(r.code).toBe(0);
    for (const c of ['up', 'down', 'status', 'doctor', 'cluster <command>'])
      expect(r.out).toMatch(new RegExp(`^ {2}${c} `, 'm'));
  });

  it('refuses an unknown command with exit code 2, naming it, with the usage', async () => {
    const r = await waggle('upp');
    expect(r.code).toBe(2);
    expect(r.err).toContain('pnpm waggle: unknown command "upp"');
    expect(r.err).toContain('usage: pnpm waggle <command>');
  });

  it('refuses a missing command with exit code 2', async () => {
    expect((await waggle()).code).toBe(2);
  });

  it('refuses arguments a command does not take with exit code 2', async () => {
    const r = await waggle('status', 'now');
    expect(r.code).toBe(2);
    expect(r.err).toContain('pnpm waggle status: unexpected argument "now"');
  });

  it('refuses an unknown doctor option or runtime with exit code 2', async () => {
    const bogus = await waggle('doctor', '--bogus');
    expect(bogus.code).toBe(2);
    expect(bogus.err).toContain("Unknown option '--bogus'");
    expect(bogus.err).toContain('usage: pnpm waggle doctor [--image');
    const runtime = await waggle('doctor', '--image', 'x.ext4', '--runtime', 'ruby');
    expect(runtime.code).toBe(2);
    expect(runtime.err).toContain('unknown runtime "ruby"');
  });

  it('dispatches cluster subcommands (pnpm cluster …) and refuses unknown ones with exit code 2', async () => {
    const help = await waggle('cluster', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toContain('usage: pnpm waggle cluster <command>');
    expect(help.out).toMatch(/^ {2}control-plane /m);
    const unknown = await waggle('cluster', 'nope');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('pnpm waggle cluster: unknown command "nope"');
  });

  it('checks cluster subcommand arguments before doing anything', async () => {
    const which = await waggle('cluster', 'which');
    expect(which.code).toBe(2);
    expect(which.err).toContain('name exactly one component');
    const build = await waggle('cluster', 'build-kube', 'kubeflow');
    expect(build.code).toBe(2);
    expect(build.err).toContain('unknown component "kubeflow"');
  });
});
