import { describe, expect, it } from 'vitest';
import { newInstanceId, parseRecord, vmRecordSchema } from './vm-record.ts';

const network = {
  slot: 3,
  hostIP: '10.254.0.13',
  nsIP: '10.254.0.14',
  netns: 'wgl-0afe000c',
  hostIface: 'wgl-0afe000c',
  mode: 'all',
  allowDomains: [],
};
/** A record as agents wrote it before instance ids (its directory is its vm id). */
const legacy = {
  vmId: 'env-7',
  runtime: 'python',
  cpus: 1,
  memoryMiB: 512,
  diskMiB: 1024,
  egress: 'all',
  allowDomains: [],
  state: 'running',
  network,
  pid: 4242,
  createdAt: '2026-12-01T10:00:00.000Z',
  readyAt: '2026-12-01T10:00:06.000Z',
  bootMs: 6000,
  hostPublicKey: 'ecdsa-sha2-nistp256 AAAA',
};

describe('VM records', () => {
  it('adopts a record written before instance ids with instance id = its directory, origin cold', () => {
    const r = parseRecord(legacy, 'env-7');
    expect(r).toMatchObject({
      instanceId: 'env-7',
      vmId: 'env-7',
      origin: 'cold',
      templateHash: '',
      pid: 4242,
    });
    expect(r?.pool).toBeUndefined();
  });

  it('reads an unowned warm record and a suspended one as written', () => {
    const id = newInstanceId();
    const warm = {
      ...legacy,
      vmId: undefined,
      instanceId: id,
      templateHash: '0123456789abcdef',
      pool: 'team-a/py',
      origin: 'cold',
    };
    expect(parseRecord(JSON.parse(JSON.stringify(warm)), id)).toMatchObject({
      instanceId: id,
      pool: 'team-a/py',
    });
    expect(parseRecord(JSON.parse(JSON.stringify(warm)), id)?.vmId).toBeUndefined();
    const suspended = {
      ...warm,
      vmId: 'env-8',
      state: 'suspended',
      suspendedAt: '2026-12-02T00:00:00Z',
      pid: 0,
    };
    expect(parseRecord(suspended, id)).toMatchObject({ state: 'suspended', vmId: 'env-8' });
  });

  it('refuses a record whose instance id is not its directory, or that is not a record', () => {
    const id = newInstanceId();
    expect(
      parseRecord({ ...legacy, instanceId: id, templateHash: 'x', origin: 'cold' }, 'i-other'),
    ).toBeUndefined();
    expect(parseRecord({ ...legacy, state: 'dancing' }, 'env-7')).toBeUndefined();
    expect(parseRecord(null, 'env-7')).toBeUndefined();
    expect(parseRecord('vm.json', 'env-7')).toBeUndefined();
  });

  it('makes instance ids that name a directory and never collide', () => {
    const ids = new Set(Array.from({ length: 1000 }, newInstanceId));
    expect(ids.size).toBe(1000);
    for (const id of [...ids].slice(0, 10)) {
      expect(id).toMatch(/^i-[0-9a-f]{16}$/);
      expect(vmRecordSchema.shape.instanceId.safeParse(id).success).toBe(true);
    }
  });
});
