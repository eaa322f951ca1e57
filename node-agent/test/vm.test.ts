import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureGuestImages } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execCode } from '../src/guest/exec.ts';
import { listGuestFiles, readGuestFile, writeGuestFile } from '../src/guest/files.ts';
import { installPackages } from '../src/guest/packages.ts';
import { type GuestConnections, runCommand } from '../src/guest/ssh-connections.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import { pidsWithMarker } from '../src/vm/proc.ts';
import type { GuestImages, VMManager } from '../src/vm/vm-manager.ts';
import { testConnections, testManager, testNetworks } from './vm-fixtures.ts';

let stateDir = '';
let images: GuestImages;
let tscKHz = 0;
let networks: VMNetworks;

function manager(): VMManager {
  return testManager({ stateDir, images, networks, tscKHz });
}

const connections = (vms: VMManager) => testConnections(vms);

const spec = (vmId: string, runtime: 'python' | 'node' | 'shell' = 'python') => ({
  vmId,
  runtime,
  cpus: 1,
  memoryMiB: 512,
  diskMiB: 1024,
  egress: 'all' as const,
});

beforeAll(async () => {
  images = await ensureGuestImages(['python', 'node', 'shell']);
  tscKHz = await readHostTscKHz();
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-agent-test-'));
  networks = await testNetworks('10.253.200.0/24');
}, 900_000);

afterAll(async () => {
  const vms = manager();
  await vms.adopt();
  for (const vm of vms.list()) await vms.destroyInstance(vm.instanceId);
  await rm(stateDir, { recursive: true, force: true });
  await networks.removeHostTable();
});

describe('VMs under TCG (real QEMU microvm, real SSH)', () => {
  it('boots a python VM, runs code exactly, survives an agent restart, and destroys cleanly', {
    timeout: 240_000,
  }, async () => {
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
    vms.close();
    const restarted = manager();
    const adoption = await restarted.adopt();
    expect(adoption.adopted).toEqual([vm.instanceId]);
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
    // Its network namespace and the node's end of its link are gone too.
    expect(existsSync(`/run/netns/${vm.network.netns}`)).toBe(false);
    expect(existsSync(`/sys/class/net/${vm.network.hostIface}`)).toBe(false);
  });

  it('kills a timed-out run and returns its partial output', { timeout: 240_000 }, async () => {
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

describe('files and packages in a guest', () => {
  const vms = () => manager();
  let shared: VMManager;
  let conns: GuestConnections;

  beforeAll(async () => {
    shared = vms();
    await shared.create(spec('vm-files'));
    conns = connections(shared);
  }, 300_000);

  afterAll(async () => {
    conns?.closeAll();
    await shared?.destroy('vm-files');
  });

  it('round-trips a 5 MiB random binary file byte for byte', async () => {
    const client = await conns.get('vm-files');
    const data = randomBytes(5 * 1024 * 1024);
    const w = await writeGuestFile(client, 'data/blob.bin', data, { maxBytes: 10 << 20 });
    expect(w).toEqual({ path: '/home/sandbox/data/blob.bin', bytesWritten: data.length });
    const r = await readGuestFile(client, '/home/sandbox/data/blob.bin', { maxBytes: 10 << 20 });
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(sha(r.data)).toBe(sha(data));
    // The sandbox user owns what it was given, and the guest sees the same bytes.
    const check = await execCode(client, {
      code: 'stat -c %U data/blob.bin data; sha256sum data/blob.bin | cut -d" " -f1',
      language: 'shell',
      timeoutMs: 30_000,
      maxOutputBytes: 4096,
    });
    expect(check.stdout).toBe(`sandbox\nsandbox\n${sha(data)}\n`);
  });

  it('lists names with spaces and newlines exactly', async () => {
    const client = await conns.get('vm-files');
    await writeGuestFile(client, 'odd/a file\nwith newline.txt', Buffer.from('x'), { maxBytes: 1024 });
    await writeGuestFile(client, 'odd/sub dir/inner.txt', Buffer.from('hello'), { maxBytes: 1024 });
    const list = await listGuestFiles(client, 'odd', { maxEntries: 100 });
    expect(list.entries.map((e) => [e.name, e.type, e.size])).toEqual([
      ['a file\nwith newline.txt', 'file', 1],
      ['sub dir', 'directory', expect.any(Number)],
    ]);
    expect(list.entries[0]?.mode).toBe('0644');
    expect(Date.parse(list.entries[0]?.modified ?? '')).toBeGreaterThan(Date.now() - 3_600_000);
  });

  it('gives clear errors for missing files, directories, size limits and escapes', async () => {
    const client = await conns.get('vm-files');
    await expect(readGuestFile(client, 'missing.txt', { maxBytes: 1024 })).rejects.toMatchObject({
      code: 'not_found',
      message: expect.stringContaining('/home/sandbox/missing.txt does not exist'),
    });
    await expect(readGuestFile(client, 'odd', { maxBytes: 1024 })).rejects.toMatchObject({
      code: 'is_directory',
    });
    await expect(readGuestFile(client, 'data/blob.bin', { maxBytes: 1024 })).rejects.toMatchObject({
      code: 'too_large',
      message: expect.stringContaining('5242880 bytes; the read limit is 1024'),
    });
    await expect(writeGuestFile(client, 'odd', Buffer.from('x'), { maxBytes: 10 })).rejects.toMatchObject({
      code: 'is_directory',
    });
    await expect(listGuestFiles(client, 'data/blob.bin', { maxEntries: 10 })).rejects.toMatchObject({
      code: 'not_directory',
    });
    await expect(
      writeGuestFile(client, '../../etc/cron.d/x', Buffer.from('x'), { maxBytes: 10 }),
    ).rejects.toThrow(/outside the sandbox/);
  });

  it('installs a real package with pip (PEP 668 venv fallback) and later code uses it', {
    timeout: 300_000,
  }, async () => {
    const client = await conns.get('vm-files');
    await expect(
      installPackages(client, {
        runtime: 'python',
        packages: ['six; reboot'],
        timeoutMs: 10_000,
        maxOutputBytes: 4096,
      }),
    ).rejects.toThrow(/invalid pip package/);
    const r = await installPackages(client, {
      runtime: 'python',
      packages: ['six==1.16.0'],
      timeoutMs: 240_000,
      maxOutputBytes: 1 << 20,
    });
    expect(r.stderr + r.stdout).toMatch(/Successfully installed six-1\.16\.0/);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/externally managed \(PEP 668\)/);
    const use = await execCode(client, {
      code: 'import six, sys\nprint(six.__version__, sys.prefix)',
      language: 'python',
      timeoutMs: 30_000,
      maxOutputBytes: 4096,
    });
    expect(use.stdout).toBe('1.16.0 /home/sandbox/.venv\n');
  });
});

describe('concurrency and runtimes', () => {
  it('boots four VMs at once (python, node, shell), runs each runtime and npm, isolates egress none', {
    timeout: 300_000,
  }, async () => {
    const vms = manager();
    const ids = [
      spec('vm-c1', 'python'),
      spec('vm-c2', 'node'),
      spec('vm-c3', 'shell'),
      { ...spec('vm-c4', 'python'), egress: 'none' as const },
    ];
    const t0 = Date.now();
    const created = await Promise.all(ids.map((s) => vms.create(s)));
    process.stderr.write(`vm.test: four concurrent boots ready in ${Date.now() - t0} ms\n`);
    expect(created.map((v) => v.state)).toEqual(['running', 'running', 'running', 'running']);
    expect(new Set(created.map((v) => v.network.nsIP)).size).toBe(4);
    const conns = connections(vms);
    try {
      const nodeRun = await execCode(await conns.get('vm-c2'), {
        // biome-ignore lint/suspicious/noTemplateCurlyInString: JavaScript source for the guest
        code: 'const n = 1 + 1;\nconsole.log(`tpl ${n} "q" ✓`);\nconsole.error("e");\nprocess.exit(7);',
        language: 'node',
        timeoutMs: 30_000,
        maxOutputBytes: 4096,
      });
      expect(nodeRun).toMatchObject({ stdout: 'tpl 2 "q" ✓\n', stderr: 'e\n', exitCode: 7 });
      const shellRun = await execCode(await conns.get('vm-c3'), {
        code: 'cat <<\'EOF\'\n$HOME stays literal\nEOF\necho "$HOME" >&2; exit 4',
        language: 'shell',
        timeoutMs: 30_000,
        maxOutputBytes: 4096,
      });
      expect(shellRun).toMatchObject({
        stdout: '$HOME stays literal\n',
        stderr: '/home/sandbox\n',
        exitCode: 4,
      });

      // npm installs into the sandbox home and later code can require() it.
      const npm = await installPackages(await conns.get('vm-c2'), {
        runtime: 'node',
        packages: ['is-number@7.0.0'],
        timeoutMs: 240_000,
        maxOutputBytes: 1 << 20,
      });
      expect(npm.exitCode, npm.stderr).toBe(0);
      const useNpm = await execCode(await conns.get('vm-c2'), {
        code: "console.log(require('is-number')(5), require('is-number')('x'))",
        language: 'node',
        timeoutMs: 30_000,
        maxOutputBytes: 1024,
      });
      expect(useNpm.stdout).toBe('true false\n');

      // egress none: not even the package index (network-boundary.test.ts covers egress all).
      const offline = await execCode(await conns.get('vm-c4'), {
        code: 'import urllib.request\ntry:\n    urllib.request.urlopen("https://pypi.org/simple/six/", timeout=5)\n    print("reached")\nexcept OSError as e:\n    print("blocked")',
        language: 'python',
        timeoutMs: 30_000,
        maxOutputBytes: 1024,
      });
      expect(offline.stdout).toBe('blocked\n');
    } finally {
      conns.closeAll();
      await Promise.all(ids.map((s) => vms.destroy(s.vmId)));
    }
    expect(vms.list()).toEqual([]);
  });
});
