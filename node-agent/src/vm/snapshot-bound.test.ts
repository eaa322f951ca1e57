import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { VMNetworks } from './network/vm-network.ts';
import { templateOf } from './template.ts';
import { snapshotPaths, VMManager } from './vm-manager.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A manager on a scratch state dir with image files of its own; no VM is ever started. */
async function scratchManager(maxSnapshots: number) {
  const dir = await mkdtemp(join(tmpdir(), 'waggle-snap-bound-'));
  dirs.push(dir);
  for (const f of ['vmlinuz', 'initrd', 'rootfs.ext4']) await writeFile(join(dir, f), f);
  const networks = { reapOrphans: async () => [] } as unknown as VMNetworks;
  const vms = new VMManager({
    stateDir: join(dir, 'state'),
    images: {
      kernel: join(dir, 'vmlinuz'),
      initrd: join(dir, 'initrd'),
      rootfs: { shell: join(dir, 'rootfs.ext4') },
    },
    networks,
    accelerator: 'tcg',
    snapshots: true,
    maxSnapshots,
    log: pino({ level: 'silent' }),
  });
  return { vms, snapshotsDir: join(dir, 'state', 'snapshots') };
}

/** A complete snapshot of a shell template of `diskMiB`, last restored `ageS` seconds ago. */
async function fakeSnapshot(vms: VMManager, snapshotsDir: string, diskMiB: number, ageS: number) {
  const template = templateOf({ runtime: 'shell', cpus: 1, memoryMiB: 256, diskMiB, egress: 'all' });
  const hash = await vms.templateHash(template);
  const s = snapshotPaths(join(snapshotsDir, hash));
  await mkdir(join(snapshotsDir, hash), { recursive: true });
  await writeFile(s.state, 'state');
  await writeFile(s.disk, 'disk');
  await writeFile(
    s.meta,
    JSON.stringify({
      templateHash: hash,
      template,
      hostPublicKey: 'k',
      createdAt: new Date().toISOString(),
      stateBytes: 5,
    }),
  );
  const t = new Date(Date.now() - ageS * 1000);
  await utimes(s.meta, t, t);
  return hash;
}

describe('template snapshots on a node are bounded', () => {
  it('keeps the most recently restored ones up to maxSnapshots and deletes the rest', async () => {
    const { vms, snapshotsDir } = await scratchManager(2);
    await mkdir(snapshotsDir, { recursive: true });
    const oldest = await fakeSnapshot(vms, snapshotsDir, 1024, 400);
    const old = await fakeSnapshot(vms, snapshotsDir, 1100, 300);
    const recent = await fakeSnapshot(vms, snapshotsDir, 1200, 200);
    const newest = await fakeSnapshot(vms, snapshotsDir, 1300, 100);
    await vms.adopt();
    expect((await readdir(snapshotsDir)).sort()).toEqual([recent, newest].sort());
    expect([oldest, old]).not.toContain(recent);
  });

  it('keeps everything within the bound', async () => {
    const { vms, snapshotsDir } = await scratchManager(8);
    await mkdir(snapshotsDir, { recursive: true });
    const a = await fakeSnapshot(vms, snapshotsDir, 1024, 10);
    const b = await fakeSnapshot(vms, snapshotsDir, 2048, 5);
    await vms.adopt();
    expect((await readdir(snapshotsDir)).sort()).toEqual([a, b].sort());
  });
});
