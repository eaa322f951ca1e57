import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { loadKubeConfig } from '@waggle/test';
import { pino } from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { LeaderElector } from '../src/runtime/leader-election.ts';

const kc = loadKubeConfig(inject('kubeconfigPath'));
const log = pino({ level: 'silent' });

function elector(name: string, identity: string, state: Record<string, boolean>) {
  return new LeaderElector({
    kc,
    namespace: 'default',
    name,
    identity,
    leaseDurationMs: 4_000,
    renewDeadlineMs: 3_000,
    retryPeriodMs: 250,
    onStartedLeading: () => {
      state[identity] = true;
    },
    onStoppedLeading: () => {
      state[identity] = false;
    },
    log,
  });
}

async function until(check: () => boolean, what: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

describe('leader election on a real Lease', () => {
  it('elects exactly one leader and hands over on release', { timeout: 30_000 }, async () => {
    const state: Record<string, boolean> = {};
    const a = elector('waggle-le-release', 'a', state);
    const b = elector('waggle-le-release', 'b', state);
    a.start();
    await until(() => state.a === true, 'a to lead', 5_000);
    b.start();
    await new Promise((r) => setTimeout(r, 1_000));
    expect(state).toEqual({ a: true }); // b keeps waiting while a renews
    await a.stop(); // releases the lease
    const ms = await until(() => state.b === true, 'b to take over', 5_000);
    expect(ms).toBeLessThan(2_000); // released: no need to wait out the lease
    expect(state.a).toBe(false);
    await b.stop();
  });

  it('takes over from a killed leader within the lease duration', { timeout: 30_000 }, async () => {
    const leader = spawn(
      process.execPath,
      [join(import.meta.dirname, 'fixtures', 'elector.ts'), 'waggle-le-crash', 'a'],
      {
        env: { ...process.env, KUBECONFIG: inject('kubeconfigPath') },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    leader.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      await until(() => out.includes('LEADING'), 'the child to lead', 10_000);
      const state: Record<string, boolean> = {};
      const b = elector('waggle-le-crash', 'b', state);
      b.start();
      await new Promise((r) => setTimeout(r, 1_000));
      expect(state.b).toBeUndefined(); // the live leader keeps the lease
      leader.kill('SIGKILL'); // no release: b must wait for the lease to expire
      const ms = await until(() => state.b === true, 'b to take over', 10_000);
      expect(ms).toBeGreaterThanOrEqual(2_500); // waited for expiry…
      expect(ms).toBeLessThan(4_000 + 2_500); // …but not much longer than one lease duration
      await b.stop();
    } finally {
      leader.kill('SIGKILL');
    }
  });
});
