import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, waitFor } from '@waggle/test';
import { afterEach, describe, expect, it } from 'vitest';
import { type AgentTlsSource, createRotatingNodeAgentClient, watchAgentTls } from './client.ts';

let dir = '';
let source: AgentTlsSource | undefined;
afterEach(async () => {
  source?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writePair(d: string, ca: string, pair: { certPem: string; keyPem: string }) {
  await writeFile(join(d, 'ca.crt'), ca);
  await writeFile(join(d, 'tls.crt'), pair.certPem);
  await writeFile(join(d, 'tls.key'), pair.keyPem);
}

describe('watchAgentTls', () => {
  it('picks up renewed files, skips a mismatched certificate and key, and rotates clients', async () => {
    dir = await mkdtemp(join(tmpdir(), 'waggle-tls-watch-'));
    const ca = await createCA('watch-ca');
    const [a, b, c] = await Promise.all(
      [1, 2, 3].map(() => ca.issue({ cn: 'waggle-gateway', usage: 'client' })),
    );
    await writePair(dir, ca.certPem, a as { certPem: string; keyPem: string });
    const seen: string[] = [];
    source = watchAgentTls(dir, { intervalMs: 50, onChange: (t) => seen.push(t.cert) });
    expect(source.version()).toBe(0);
    expect(source.current().cert).toBe(a?.certPem);
    const client = createRotatingNodeAgentClient('https://127.0.0.1:1', source, 'node-a');
    const firstExec = client.exec;

    await writeFile(join(dir, 'tls.crt'), b?.certPem as string); // key still a's: not loaded
    await new Promise((r) => setTimeout(r, 200));
    expect(source.version()).toBe(0);
    expect(client.exec).toBe(firstExec);
    // A certificate file caught truncated (empty) mid-write is not taken either.
    await writeFile(join(dir, 'tls.crt'), '');
    await new Promise((r) => setTimeout(r, 200));
    expect(source.version()).toBe(0);
    expect(source.current().cert).toBe(a?.certPem);

    await writePair(dir, ca.certPem, c as { certPem: string; keyPem: string });
    await waitFor(
      async () => source?.version() ?? 0,
      (v) => v === 1,
      'the renewed pair',
      { timeoutMs: 10_000, intervalMs: 20 }, // a loaded machine may delay the 50 ms poll
    );
    expect(source.current().cert).toBe(c?.certPem);
    expect(seen).toEqual([c?.certPem]);
    expect(client.exec).not.toBe(firstExec); // a new transport with the new certificate
  });
});
