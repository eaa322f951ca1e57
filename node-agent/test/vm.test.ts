import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureGuestImages } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execCode } from '../src/guest/exec.ts';
import { GuestConnections, runCommand } from '../src/guest/ssh-connections.ts';
import { createLogger } from '../src/logger.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import { canBind, PortAllocator } from '../src/vm/port-allocator.ts';
import { pidsWithMarker } from '../src/vm/proc.ts';
import { type GuestImages, VMManager, vmPaths } from '../src/vm/vm-manager.ts';

const log = createLogger({ level: 'warn' });
let stateDir = '';
let images: GuestImages;
let tscKHz = 0;
const ports = new PortAllocator({ from: 42200, to: 42299 });

function manager(): VMManager {
  return new VMManager({ stateDir, images, ports, accelerator: 'tcg', tscKHz, log, bootTimeoutMs: 120_000 });
}

function connections(vms: VMManager): GuestConnections {
  return new GuestConnections({
    log,
    resolve: async (vmId) => {
      const vm = vms.get(vmId);
      const { readFile } = await import('node:fs/promises');
      return {
        host: '127.0.0.1',
        port: vm.sshPort,
        username: 'root',
        privateKey: await readFile(vmPaths(vms.vmDir(vmId)).clientKey, 'utf8'),
        hostPublicKey: vm.hostPublicKey,
      };
    },
  });
}

const spec = (vmId: string) => ({
  vmId,
  runtime: 'python' as const,
  cpus: 1,
  memoryMiB: 512,
  diskMiB: 1024,
  egress: 'all' as const,
});

beforeAll(async () => {
  images = await ensureGuestImages(['python']);
  tscKHz = await readHostTscKHz();
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-agent-test-'));
}, 900_000);

afterAll(async () => {
  const vms = manager();
  await vms.adopt();
  for (const vm of vms.list()) await vms.destroy(vm.vmId);
  await rm(stateDir, { recursive: true, force: true });
});

describe('VMs under TCG (real QEMU microvm, real SSH)', () => {
  it('boots a python VM, runs code exactly, survives an agent restart, and destroys cleanly', async () => {
    const vms = manager();
    await vms.adopt();
    const vm = await vms.create(spec('vm-a'));
    expect(vm.state).toBe('running');
    process.stderr.write(`vm.test: boot to ready ${vm.bootMs} ms (tcg)\n`);

    // Idempotent: the same id and spec returns the same VM.
    const again = await vms.create(spec('vm-a'));
    expect(again.pid).toBe(vm.pid);
    await expect(vms.create({ ...spec('vm-a'), cpus: 2 })).rejects.toThrow(/different spec/);

    const conns = connections(vms);
    const client = await conns.get('vm-a');
    const code = [
      'import sys, os',
      "s = 'quotes \" \\' and a backslash \\\\ and $HOME `id` <<EOF'",
      'print(s)',
      "print('unicode: héllo ✓ 日本')",
      "print('err line', file=sys.stderr)",
      'print(os.getuid(), os.getcwd())',
      'sys.exit(3)',
    ].join('\n');
    const r = await execCode(client, {
      code,
      language: 'python',
      timeoutMs: 30_000,
      maxOutputBytes: 1 << 20,
    });
    expect(r.stdout).toBe(
      'quotes " \' and a backslash \\ and $HOME `id` <<EOF\nunicode: héllo ✓ 日本\n1000 /home/sandbox\n',
    );
    expect(r.stderr).toBe('err line\n');
    expect(r.exitCode).toBe(3);
    expect(r.timedOut).toBe(false);

    // The agent restarts (new manager, same state dir): the VM is re-adopted and still works.
    conns.closeAll();
    const restarted = manager();
    const adoption = await restarted.adopt();
    expect(adoption.adopted).toEqual(['vm-a']);
    const conns2 = connections(restarted);
    const r2 = await execCode(await conns2.get('vm-a'), {
      code: 'echo "$((6 * 7))"',
      language: 'shell',
      timeoutMs: 30_000,
      maxOutputBytes: 1024,
    });
    expect(r2.stdout).toBe('42\n');

    conns2.closeAll();
    const dir = restarted.vmDir('vm-a');
    expect(await restarted.destroy('vm-a')).toBe(true);
    expect(existsSync(dir)).toBe(false);
    expect(await pidsWithMarker(`${dir}/`)).toEqual([]);
    expect(await canBind(vm.sshPort)).toBe(true);
  });

  it('kills a timed-out run and returns its partial output', async () => {
    const vms = manager();
    await vms.create(spec('vm-timeout'));
    const conns = connections(vms);
    const client = await conns.get('vm-timeout');
    const t0 = Date.now();
    const r = await execCode(client, {
      code: 'echo started; sleep 100; echo never',
      language: 'shell',
      timeoutMs: 2_000,
      maxOutputBytes: 1024,
    });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBeNull();
    expect(r.stdout).toBe('started\n');
    const ps = await runCommand(client, 'ps -eo user,args');
    expect(ps.stdout.toString()).not.toMatch(/sleep 100/);

    const big = await execCode(client, {
      code: 'head -c 3000 /dev/zero | tr "\\0" x; echo; echo done >&2',
      language: 'shell',
      timeoutMs: 10_000,
      maxOutputBytes: 1000,
    });
    expect(big.stdout).toHaveLength(1000);
    expect(big.stdoutTruncated).toBe(true);
    expect(big.stdoutBytes).toBe(3001);
    expect(big.stderr).toBe('done\n');
    conns.closeAll();
    await vms.destroy('vm-timeout');
  });
});
