import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, freePorts, isPortFree } from './ports.ts';

describe('port allocation', () => {
  it('returns a port that can be bound on loopback', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(await isPortFree(port)).toBe(true);
  });

  it('detects a port in use', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const addr = srv.address();
    if (addr === null || typeof addr === 'string') throw new Error('no address');
    try {
      expect(await isPortFree(addr.port)).toBe(false);
    } finally {
      srv.close();
    }
  });

  it('returns distinct ports', async () => {
    const ports = await freePorts(5);
    expect(new Set(ports).size).toBe(5);
  });
});
