import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureGuestImages } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toConnectError } from '../src/api/connect-errors.ts';
import { Code } from '../src/client.ts';
import { type GuestConnections, runCommand } from '../src/guest/ssh-connections.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';

const run = promisify(execFile);

import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import { pidsWithMarker } from '../src/vm/proc.ts';
import { QmpClient } from '../src/vm/qemu/qmp.ts';
import { type GuestImages, snapshotPaths, type VMManager, vmPaths } from '../src/vm/vm-manager.ts';
import { pythonSpec, testAgent, testConnections, testManager, testNetworks } from './vm-fixtures.ts';

// Snapshot restore and suspend/resume on real TCG VMs (docs/adr/0014). One cold VM (A) makes
// the template's snapshot (through a dedicated VM the manager boots), is suspended, survives an
// agent restart suspended, and resumes; B is created from the snapshot.

let stateDir = '';
let images: GuestImages;
let tscKHz = 0;
let networks: VMNetworks;
let vms: VMManager;

const manager = () => testManager({ stateDir, images, networks, tscKHz, snapshots: true });

async function asRoot(conns: GuestConnections, vmId: string, command: string): Promise<string> {
  const r = await runCommand(await conns.get(vmId), command, undefined, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${command}: exit ${r.code}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** Seconds between the guest's wall clock and the node's. */
async function clockSkew(conns: GuestConnections, vmId: string): Promise<number> {
  const guest = Number(await asRoot(conns, vmId, 'date +%s.%N'));
  return Math.abs(guest - Date.now() / 1000);
}

beforeAll(async () => {
  images = await ensureGuestImages(['python']);
  tscKHz = await readHostTscKHz();
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-snapshot-test-'));
  networks = await testNetworks('10.253.231.0/24');
  vms = manager();
  await vms.adopt();
}, 900_000);

afterAll(async () => {
  // The test's manager first: no snapshot job of it and no monitor pass (which records a VM
  // whose QEMU went away) may write into a directory the last manager is removing.
  await vms?.snapshotsSettled();
  vms?.close();
  const last = manager();
  await last.adopt();
  for (const vm of last.list()) await last.destroyInstance(vm.instanceId);
  last.close();
  networks.close();
  await rm(stateDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  await networks.removeHostTable();
});

describe('snapshots and suspend (real QEMU microvm)', () => {
  it('snapshots a template after its first boot, suspends and resumes a VM across an agent restart, and restores new VMs from the snapshot', {
    timeout: 300_000,
  }, async () => {
    // A boots cold; the template's snapshot is made in the background by a VM of its own.
    const a = await vms.create(pythonSpec('snap-a'));
    expect(a.origin).toBe('cold');
    let conns = testConnections(vms);
    await asRoot(conns, 'snap-a', 'echo only-in-a > /home/sandbox/before.txt');
    // Something installed into the VM, and a process the guest runs by itself.
    await asRoot(
      conns,
      'snap-a',
      'printf "#!/bin/sh\\necho installed\\n" > /usr/local/bin/tool && chmod +x /usr/local/bin/tool',
    );
    await asRoot(
      conns,
      'snap-a',
      "setsid nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done' >/dev/null 2>&1 </dev/null & echo started",
    );
    await vms.snapshotsSettled();
    expect(await vms.hasSnapshot(pythonSpec('x'))).toBe(true);
    const hash = await vms.templateHash(pythonSpec('x'));
    const snap = snapshotPaths(join(stateDir, 'snapshots', hash));
    expect((await stat(snap.state)).size).toBeGreaterThan(1 << 20);
    const snapshotAt = Date.parse(JSON.parse(await readFile(snap.meta, 'utf8')).createdAt);
    // Only A and no leftover of the snapshot VM.
    expect(vms.list().map((vm) => vm.vmId)).toEqual(['snap-a']);

    // Suspend A: its state is on disk, its QEMU is gone, calls into it are refused clearly.
    const agent = testAgent(vms, 'snapshot-test');
    const counterBefore = Number(await asRoot(conns, 'snap-a', 'cat /tmp/counter'));
    expect(counterBefore).toBeGreaterThan(0);
    conns.closeAll();
    const suspended = await agent.suspendVM('snap-a');
    expect(suspended.vm.state).toBe('suspended');
    expect(suspended.stateBytes).toBeGreaterThan(1 << 20);
    const dirA = vms.vmDir('snap-a');
    expect((await stat(vmPaths(dirA).suspendState)).size).toBe(suspended.stateBytes);
    expect(await pidsWithMarker(`${dirA}/`)).toEqual([]);
    const refused = await agent.exec({ vmId: 'snap-a', code: 'print(1)' }).catch((e: Error) => e);
    expect(refused).toBeInstanceOf(Error);
    const wire = toConnectError(refused);
    expect([wire.code, wire.rawMessage]).toEqual([
      Code.FailedPrecondition,
      'VM snap-a is suspended; resume it (ResumeVM) first',
    ]);
    expect(agent.info()).toMatchObject({ allocated: { vms: 0, cpus: 0, memoryMiB: 0 }, suspendedVMs: 1 });
    // Suspending again is a no-op.
    expect((await agent.suspendVM('snap-a')).suspendMs).toBe(0);

    // The agent restarts: A is adopted suspended, and resumes where it stopped.
    agent.close();
    vms.close();
    vms = manager();
    const adoption = await vms.adopt();
    expect(adoption.adopted).toEqual([a.instanceId]);
    expect(vms.get('snap-a').state).toBe('suspended');
    const agent2 = testAgent(vms, 'snapshot-test');
    const resumed = await agent2.resumeVM('snap-a');
    expect(resumed.vm).toMatchObject({ state: 'running', origin: 'cold' });
    expect(resumed.resumeMs).toBeGreaterThan(0);
    expect(resumed.vm.resumedAt).toBeTruthy();
    process.stderr.write(
      `snapshots.test: suspend ${suspended.suspendMs} ms (${suspended.stateBytes} bytes), resume ${resumed.resumeMs} ms\n`,
    );
    expect(existsSync(vmPaths(dirA).suspendState)).toBe(false);
    conns = testConnections(vms);
    expect(await asRoot(conns, 'snap-a', 'cat /home/sandbox/before.txt; tool')).toBe(
      'only-in-a\ninstalled\n',
    );
    const c1 = Number(await asRoot(conns, 'snap-a', 'cat /tmp/counter'));
    await new Promise((r) => setTimeout(r, 1_000));
    const c2 = Number(await asRoot(conns, 'snap-a', 'cat /tmp/counter'));
    expect(c1).toBeGreaterThanOrEqual(counterBefore); // it continued from where it was …
    expect(c2).toBeGreaterThan(c1); // … and still runs
    expect(await clockSkew(conns, 'snap-a')).toBeLessThan(5);
    const ran = await agent2.exec({ vmId: 'snap-a', code: 'print(6 * 7)' });
    expect(ran.stdout).toBe('42\n');
    // Resuming a running VM is a no-op.
    expect((await agent2.resumeVM('snap-a')).resumeMs).toBe(0);

    // B comes from the snapshot. The snapshot is old enough that an unfixed clock would show.
    await new Promise((r) => setTimeout(r, Math.max(0, snapshotAt + 7_000 - Date.now())));
    const b = await agent2.createVM({ ...pythonSpec('snap-b'), allowDomains: [] });
    expect(b.origin).toBe('restored');
    process.stderr.write(`snapshots.test: cold boot ${a.bootMs} ms, restore ${b.bootMs} ms\n`);
    expect(b.bootMs).toBeLessThan(a.bootMs ?? 0);
    expect(b.instanceId).not.toBe(a.instanceId);
    expect(b.network.nsIP).not.toBe(a.network.nsIP);
    const hello = await agent2.exec({ vmId: 'snap-b', code: 'import os; print(os.getuid())' });
    expect(hello.stdout).toBe('1000\n');
    // What A wrote never reaches B; what the template has does.
    expect(
      await asRoot(
        conns,
        'snap-b',
        'ls /home/sandbox/before.txt /usr/local/bin/tool 2>&1; test -s /etc/os-release && echo template',
      ),
    ).toMatch(/No such file.*\n.*No such file.*\ntemplate\n$/);
    expect(await clockSkew(conns, 'snap-b')).toBeLessThan(5);
    // B's disk is its own: A's and the snapshot's are untouched by what B writes.
    await asRoot(conns, 'snap-b', 'echo b > /home/sandbox/b.txt && sync');
    expect(await asRoot(conns, 'snap-a', 'ls /home/sandbox')).toBe('before.txt\n');

    // Siblings restored from one snapshot do not share the kernel's random number generator:
    // the fix-up re-keys it (without RNDRESEEDCRNG both would read the same bytes for a while).
    const c = await agent2.createVM({ ...pythonSpec('snap-c'), allowDomains: [] });
    expect(c.origin).toBe('restored');
    const urandom = 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"';
    const [rb, rc] = [await asRoot(conns, 'snap-b', urandom), await asRoot(conns, 'snap-c', urandom)];
    expect(rb).toMatch(/^[0-9a-f]{32}$/);
    expect(rb).not.toBe(rc);
    await agent2.destroyVM('snap-c');

    // A suspended VM is destroyable; it leaves nothing behind.
    conns.closeAll();
    await agent2.suspendVM('snap-b');
    const dirB = vms.vmDir('snap-b');
    // Its QEMU owned the overlay and could have rewritten the backing file in its header: a
    // resume refuses a disk backed by anything but a runtime image or a snapshot.
    await run('qemu-img', [
      'rebase',
      '-u',
      '-f',
      'qcow2',
      '-F',
      'raw',
      '-b',
      '/etc/shadow',
      join(dirB, 'overlay.qcow2'),
    ]);
    await expect(agent2.resumeVM('snap-b')).rejects.toThrow(
      /cannot be resumed: .*not a qcow2 overlay of a runtime image or snapshot/,
    );
    expect(await agent2.destroyVM('snap-b')).toBe(true);
    expect(existsSync(dirB)).toBe(false);
    expect(existsSync(`/run/netns/${b.network.netns}`)).toBe(false);
    agent2.close();
  });

  it('keeps a VM whose suspend the agent did not finish: paused by the save, it runs again after the restart', {
    timeout: 300_000,
  }, async () => {
    const d = await vms.create(pythonSpec('cut-d'));
    let conns = testConnections(vms);
    await asRoot(conns, 'cut-d', 'echo before > /root/kept');
    conns.closeAll();
    // What SuspendVM leaves when the agent stops mid-save: the vCPUs stopped (its first step),
    // part of a state file, and the record still saying running.
    const dir = vms.vmDir('cut-d');
    const qmp = await QmpClient.connect(vmPaths(dir).qmp);
    await qmp.execute('stop');
    expect((await qmp.execute<{ status: string }>('query-status')).status).toBe('paused');
    qmp.close();
    await writeFile(`${vmPaths(dir).suspendState}.tmp`, 'part of a saved state');

    await vms.snapshotsSettled();
    vms.close();
    vms = manager();
    expect((await vms.adopt()).adopted).toContain(d.instanceId);
    expect(vms.get('cut-d').state).toBe('running');
    conns = testConnections(vms);
    // A paused guest would never answer (the call times out); this one runs, with its files.
    expect(await asRoot(conns, 'cut-d', 'cat /root/kept')).toBe('before\n');
    expect(existsSync(`${vmPaths(dir).suspendState}.tmp`)).toBe(false);
    conns.closeAll();
    await vms.destroy('cut-d');
  });
});
