import type { ForwardPortResponse } from '@waggle/node-agent/client';
import { describe, expect, it } from 'vitest';
import { openTunnel } from './port-tunnel.ts';

type Req = { msg: { case: string; value?: unknown } };
const response = (msg: ForwardPortResponse['msg']) =>
  ({ $typeName: 'waggle.nodeagent.v1.ForwardPortResponse', msg }) as ForwardPortResponse;

/** A fake ForwardPort: answers `opened`, then echoes every data chunk upper-cased. */
async function* echo(requests: AsyncIterable<Req>) {
  let opened = false;
  for await (const r of requests) {
    if (!opened) {
      expect(r.msg).toMatchObject({ case: 'open', value: { vmId: 'vm-1', port: 8000 } });
      opened = true;
      yield response({ case: 'opened', value: true });
      continue;
    }
    const text = Buffer.from(r.msg.value as Uint8Array).toString();
    yield response({ case: 'data', value: Buffer.from(text.toUpperCase()) });
  }
}

describe('openTunnel', () => {
  it('carries bytes both ways and ends when the caller ends', async () => {
    const t = await openTunnel((reqs) => echo(reqs as AsyncIterable<Req>), { vmId: 'vm-1', port: 8000 });
    const got: string[] = [];
    t.on('data', (d: Buffer) => got.push(d.toString()));
    t.write('hello ');
    t.end('world');
    await new Promise((r) => t.once('end', r));
    expect(got.join('')).toBe('HELLO WORLD');
  });

  it("rejects with the agent's error when the guest refuses, before any byte flows", async () => {
    // biome-ignore lint/correctness/useYield: fails before answering, as the agent does for a closed port
    async function* refused(): AsyncGenerator<never> {
      throw new Error('nothing is listening on port 8000');
    }
    await expect(openTunnel(() => refused(), { vmId: 'vm-1', port: 8000 })).rejects.toThrow(
      /nothing is listening/,
    );
  });

  it('behaves like a socket for node:http: an idle timeout fires when nothing moves', async () => {
    const t = await openTunnel((reqs) => echo(reqs as AsyncIterable<Req>), { vmId: 'vm-1', port: 8000 });
    const fired = new Promise<void>((r) =>
      (t as unknown as { setTimeout(ms: number, cb: () => void): void }).setTimeout(50, r),
    );
    await fired;
    t.destroy();
  });
});
