import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureGuestImages } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.ts';
import { GuestFileError, GuestUnavailableError } from '../src/errors.ts';
import { type GuestConnections, runCommand } from '../src/guest/ssh-connections.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import type { GuestImages, VMManager } from '../src/vm/vm-manager.ts';
import { pythonSpec, testAgent, testConnections, testManager, testNetworks } from './vm-fixtures.ts';

// What a hostile guest tries (issue #15, "node-agent survives any guest" and "inside the
// guest"): code running as the sandbox user must not crash the agent, read root's files or
// become root. Two VMs at most (the agent's own path: Agent → guest/*), each test one hole.

let stateDir = '';
let images: GuestImages;
let networks: VMNetworks;
let vms: VMManager;
let agent: Agent;
/** The test's own root connections, to inspect the guests from outside the sandbox. */
let inspect: GuestConnections;
const A = 'hostile-a';
const B = 'hostile-b';

const spec = pythonSpec;

/** Runs shell code as the sandbox user through the agent. */
async function sh(vmId: string, code: string, timeoutMs = 30_000) {
  return agent.exec({ vmId, code, language: 'shell', timeoutMs, maxOutputBytes: 1 << 16 });
}

/** Runs a command as root, outside the sandbox (the test looking at the guest). */
async function asRoot(vmId: string, command: string): Promise<string> {
  const r = await runCommand(await inspect.get(vmId), command, undefined, { timeoutMs: 30_000 });
  return r.stdout.toString();
}

/** The error a call fails with (a call that succeeds is an error of its own). */
const failure = (p: Promise<unknown>): Promise<Error> =>
  p.then(
    (v) => new Error(`the call succeeded: ${JSON.stringify(v).slice(0, 200)}`),
    (e: unknown) => e as Error,
  );

beforeAll(async () => {
  images = await ensureGuestImages(['python']);
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-hostile-test-'));
  networks = await testNetworks('10.253.215.0/24');
  vms = testManager({ stateDir, images, networks, tscKHz: await readHostTscKHz() });
  await Promise.all([vms.create(spec(A)), vms.create(spec(B))]);
  agent = testAgent(vms, 'hostile-test');
  inspect = testConnections(vms);
}, 900_000);

afterAll(async () => {
  agent?.close();
  inspect?.closeAll();
  if (vms) for (const vm of vms.list()) await vms.destroyInstance(vm.instanceId);
  await networks?.removeHostTable();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

describe('a hostile guest', () => {
  it('writes files as the sandbox user: owned by sandbox, and no root-only directory is writable', async () => {
    const w = await agent.writeFile(A, 'owned/deep/x.txt', Buffer.from('mine'));
    expect(w.path).toBe('/home/sandbox/owned/deep/x.txt');
    expect(await asRoot(A, 'stat -c "%U:%G %a" /home/sandbox/owned /home/sandbox/owned/deep/x.txt')).toBe(
      'sandbox:sandbox 755\nsandbox:sandbox 644\n',
    );
    // The SFTP server the file tools talk to runs as sandbox.
    expect(await asRoot(A, 'ps -eo user:20,args | grep "[i]nternal-sftp" | cut -d" " -f1 | sort -u')).toBe(
      'sandbox\n',
    );
    // A directory root made under /tmp is root's: the file tools cannot write into it (as root
    // they could, and then hand the file over with chown).
    await asRoot(A, 'mkdir -m 755 /tmp/rootdir');
    expect(await failure(agent.writeFile(A, '/tmp/rootdir/x', Buffer.from('x')))).toMatchObject({
      code: 'permission_denied',
    });
    expect(await asRoot(A, 'ls -A /tmp/rootdir')).toBe('');
  });

  it('refuses symbolic links out of the sandbox (~/s -> /etc/shadow and friends)', async () => {
    const setup = await sh(
      A,
      'ln -s /etc/shadow ~/s; ln -s /etc ~/etc-link; ln -s /root /tmp/root-link; ' +
        'mkdir -p ~/data; echo inside > ~/data/f; ln -s ~/data ~/data-link; echo ok',
    );
    expect(setup.stdout).toBe('ok\n');
    for (const p of ['s', 'etc-link/shadow', '/tmp/root-link']) {
      const err = await failure(agent.readFile(A, p));
      expect(err, p).toBeInstanceOf(GuestFileError);
      expect(err, p).toMatchObject({ code: 'outside_sandbox' });
      expect(err.message).toMatch(/leads \(through a symbolic link\) to \/(etc|root)\b.*outside the sandbox/);
    }
    // Below a link to a directory the sandbox cannot search, the guest refuses first.
    expect((await failure(agent.readFile(A, '/tmp/root-link/.bashrc'))) as GuestFileError).toSatisfy(
      (e: GuestFileError) => e.code === 'outside_sandbox' || e.code === 'permission_denied',
    );
    expect(await failure(agent.listFiles(A, 'etc-link'))).toMatchObject({ code: 'outside_sandbox' });
    expect(await failure(agent.writeFile(A, 'etc-link/cron.d/x', Buffer.from('x')))).toMatchObject({
      code: 'outside_sandbox',
    });
    expect(await failure(agent.writeFile(A, 's', Buffer.from('x')))).toMatchObject({
      code: 'outside_sandbox',
    });
    // Links that stay inside work.
    expect((await agent.readFile(A, 'data-link/f')).data.toString()).toBe('inside\n');
    expect((await agent.listFiles(A, 'data-link')).entries.map((e) => e.name)).toEqual(['f']);
    expect(await asRoot(A, 'ls /etc/cron.d')).not.toMatch(/^x$/m);
  });

  it('gives root nothing from a hijacked PATH (~/.local/bin/setpriv, rm, head, …) or a planted /tmp/waggle', {
    timeout: 300_000,
  }, async () => {
    // Every tool an exec or install script might call by name, planted where the sandbox's PATH
    // looks first; each records who ran it, then does the real thing.
    const tools = [
      'setpriv',
      'rm',
      'head',
      'mkdir',
      'cat',
      'prlimit',
      'pkill',
      'env',
      'sh',
      'bash',
      'python3',
      'apt-get',
    ];
    const plant = await sh(
      A,
      [
        'set -e',
        'mkdir -p ~/.local/bin /tmp/hijack /tmp/waggle',
        'chmod 1777 /tmp/hijack',
        `for t in ${tools.join(' ')}; do`,
        '  real=$(command -v "$t" || echo /usr/bin/"$t")',
        '  printf \'#!/bin/sh\\nid -un > /tmp/hijack/%s.$$ 2>/dev/null\\nexec %s "$@"\\n\' "$t" "$real" > ~/.local/bin/"$t"',
        '  chmod 755 ~/.local/bin/"$t"',
        'done',
        'echo planted',
      ].join('\n'),
    );
    expect(plant.stdout, plant.stderr).toBe('planted\n');
    const run = await sh(A, 'echo "$(id -un) runs"');
    expect(run.stdout).toBe('sandbox runs\n');
    const timedOut = await sh(A, 'echo start; sleep 60', 2_000);
    expect(timedOut).toMatchObject({ timedOut: true, stdout: 'start\n' });
    // The install need not succeed (or even finish: the timeout kill runs as root too).
    await agent.installPackages(A, ['six==1.16.0'], 'pip', 20_000);
    await sh(A, 'echo again');
    const owners = await asRoot(A, 'cd /tmp/hijack && for f in *; do stat -c "%U %n" "$f"; done');
    // The hijack is in effect for the sandbox's own processes (bash is found on its PATH) …
    expect(owners).toMatch(/^sandbox bash\.\d+$/m);
    // … and never ran anything as root.
    expect(owners).not.toMatch(/^root /m);
    // Code and pid files live in root's 0711 directory; /tmp/waggle, which the sandbox created
    // before any exec, holds nothing of the agent's.
    expect(await asRoot(A, 'stat -c "%U %a" /run/waggle/exec; ls -A /tmp/waggle')).toBe('root 711\n');
  });

  it('reads of /dev/zero through a symlink fail quickly with a clear error', {
    timeout: 30_000,
  }, async () => {
    await sh(A, 'ln -sf /dev/zero ~/zero; ln -sf /dev/zero /tmp/zero');
    for (const p of ['zero', '/tmp/zero']) {
      const t0 = Date.now();
      const err = await failure(agent.readFile(A, p));
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(err).toBeInstanceOf(GuestFileError);
      expect(err.message).toMatch(/\/dev\/zero|character device/);
    }
  });

  it('refuses FIFOs (also one swapped in after the check) and the file tools keep working', {
    timeout: 120_000,
  }, async () => {
    await sh(A, 'mkfifo ~/fifo /tmp/fifo');
    for (const p of ['fifo', '/tmp/fifo']) {
      const t0 = Date.now();
      const err = await failure(agent.readFile(A, p));
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(err).toMatchObject({
        code: 'not_regular_file',
        message: `${p.startsWith('/') ? p : `/home/sandbox/${p}`} is a FIFO (named pipe), not a regular file`,
      });
    }
    expect(await failure(agent.writeFile(A, 'fifo', Buffer.from('x')))).toMatchObject({
      code: 'not_regular_file',
    });
    // A guest swapping a FIFO and a regular file under one name: whatever each read meets, it
    // ends within the request timeout with the data or a clear error.
    const swapper = sh(
      A,
      'cd ~ && echo regular > race; end=$(($(date +%s) + 25)); while [ "$(date +%s)" -lt "$end" ]; do ' +
        'mkfifo race.f; mv -f race.f race; echo regular > race.r; mv -f race.r race; done; echo swapped',
      60_000,
    );
    const outcomes = new Set<string>();
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const t0 = Date.now();
      const r = await agent.readFile(A, 'race').then(
        (v) => `data:${v.data.toString().trim()}`,
        (e: unknown) => (e instanceof GuestFileError ? e.code : `unexpected:${(e as Error).message}`),
      );
      expect(Date.now() - t0).toBeLessThan(8_000);
      expect(r).toMatch(/^(data:(regular)?|not_regular_file|not_found|timed_out)$/);
      outcomes.add(r);
    }
    expect((await swapper).stdout).toBe('swapped\n');
    process.stderr.write(`guest-hostile: FIFO race outcomes ${[...outcomes].join(', ')}\n`);
    // The file tools still work on that VM.
    await agent.writeFile(A, 'after-fifo.txt', Buffer.from('still here'));
    expect((await agent.readFile(A, 'after-fifo.txt')).data.toString()).toBe('still here');
    expect((await agent.listFiles(A, '/home/sandbox')).entries.map((e) => e.name)).toContain(
      'after-fifo.txt',
    );
  });

  it('survives a fork bomb: the agent lives, the other VM answers, the bombed VM recovers', {
    timeout: 300_000,
  }, async () => {
    // Settled at once into a value: a rejection must not wait unhandled while the test goes on.
    const bomb = sh(A, ':(){ :|:& };:', 10_000).catch((e: unknown) => e as Error);
    await new Promise((r) => setTimeout(r, 4_000));
    // During the bomb: the other VM answers; new connections to the bombed VM either work or
    // fail with GuestUnavailableError (ssh2 emits several errors for a connection lost before
    // its handshake; none may escape).
    expect((await sh(B, 'echo other')).stdout).toBe('other\n');
    const fresh = testConnections(vms);
    try {
      const during = await Promise.allSettled([
        fresh.get(A),
        fresh.get(A, 'sandbox'),
        agent.listFiles(A, '/tmp'),
      ]);
      for (const d of during) {
        if (d.status === 'rejected') {
          expect(d.reason).toSatisfy(
            (e: unknown) =>
              e instanceof GuestUnavailableError || (e instanceof GuestFileError && e.code === 'timed_out'),
          );
        }
      }
    } finally {
      fresh.closeAll();
    }
    const r = await bomb;
    if (r instanceof Error) expect(r).toBeInstanceOf(GuestUnavailableError);
    else expect(r).toMatchObject({ timedOut: true, exitCode: null });
    // Afterwards the bombed VM answers again, and nothing of the bomb is left.
    let after = '';
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      after = await sh(A, 'echo alive; ps -u sandbox -o comm= | grep -c "^bash$"', 30_000).then(
        (x) => x.stdout,
        (e: unknown) => {
          expect(e).toBeInstanceOf(GuestUnavailableError);
          return '';
        },
      );
      if (after.startsWith('alive')) break;
      await new Promise((res) => setTimeout(res, 2_000));
    }
    expect(after).toMatch(/^alive\n/);
    // The bash running this check (and a child of it not yet exec'd) is all that is left.
    expect(Number(after.split('\n')[1])).toBeLessThanOrEqual(3);
    expect((await sh(B, 'echo other')).stdout).toBe('other\n');
    await agent.writeFile(A, 'after-bomb.txt', Buffer.from('ok'));
    expect((await agent.readFile(A, 'after-bomb.txt')).data.toString()).toBe('ok');
  });
});
