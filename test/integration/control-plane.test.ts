import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pidsMentioning, startControlPlane } from '../src/index.ts';

describe('startControlPlane', () => {
  it('runs a real etcd + kube-apiserver and removes every trace on stop', async () => {
    const cp = await startControlPlane();
    let stopped = false;
    try {
      expect(cp.serverVersion).toBe('v1.36.3');
      expect(await pidsMentioning(cp.dir)).toHaveLength(2); // etcd and kube-apiserver

      const version = await cp.kubectl(['version', '-o', 'json']);
      expect(version.code).toBe(0);
      expect(JSON.parse(version.stdout).serverVersion.gitVersion).toBe('v1.36.3');

      const created = await cp.kubectl(['create', 'namespace', 'harness-check']);
      expect(created.stderr).toBe('');
      expect(created.stdout).toMatch(/namespace\/harness-check created/);

      // RBAC is enforced: an unknown user is forbidden, not allowed by default.
      const denied = await cp.kubectl(['get', 'pods', '-A', '--as=nobody']);
      expect(denied.code).not.toBe(0);
      expect(denied.stderr).toMatch(/forbidden/i);

      await cp.stop();
      stopped = true;
      expect(existsSync(cp.dir)).toBe(false);
      expect(await pidsMentioning(cp.dir)).toEqual([]);
      await cp.stop(); // idempotent
    } finally {
      if (!stopped) await cp.stop();
    }
  });

  it('reports a component that fails to start with its log', async () => {
    await expect(startControlPlane({ apiserverArgs: ['--no-such-flag=1'] })).rejects.toThrow(
      /kube-apiserver exited early[\s\S]*unknown flag: --no-such-flag/,
    );
  });
});
