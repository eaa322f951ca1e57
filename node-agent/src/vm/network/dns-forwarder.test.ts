import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../logger.ts';
import { DnsForwarder, domainAllowed } from './dns-forwarder.ts';

const log = createLogger({ level: 'silent' });
const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A fake upstream resolver on loopback answering every A query with 203.0.113.7. */
async function fakeUpstream(): Promise<{ port: number; queries: string[] }> {
  const sock = createSocket('udp4');
  const queries: string[] = [];
  sock.on('message', (msg, from) => {
    const q = dnsPacket.decode(msg);
    const name = q.questions?.[0]?.name ?? '';
    queries.push(name);
    sock.send(
      dnsPacket.encode({
        id: q.id ?? 0,
        type: 'response',
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: q.questions ?? [],
        answers: [{ type: 'A', name, ttl: 30, data: '203.0.113.7' }],
      }),
      from.port,
      from.address,
    );
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  closers.push(() => sock.close());
  return { port: sock.address().port, queries };
}

async function ask(port: number, name: string): Promise<dnsPacket.Packet> {
  const sock = createSocket('udp4');
  closers.push(() => sock.close());
  const reply = new Promise<Buffer>((r) => sock.once('message', r));
  sock.send(dnsPacket.encode({ id: 7, type: 'query', questions: [{ type: 'A', name }] }), port, '127.0.0.1');
  return dnsPacket.decode(await reply);
}

describe('domainAllowed', () => {
  it('matches exact names and wildcard suffixes, case-insensitively, never a look-alike', () => {
    const p = ['example.org', '*.example.net'];
    expect(domainAllowed('example.org', p)).toBe(true);
    expect(domainAllowed('EXAMPLE.org.', p)).toBe(true);
    expect(domainAllowed('www.example.org', p)).toBe(false);
    expect(domainAllowed('a.b.example.net', p)).toBe(true);
    expect(domainAllowed('example.net', p)).toBe(false);
    expect(domainAllowed('evilexample.net', p)).toBe(false);
    expect(domainAllowed('example.org.evil.com', p)).toBe(false);
  });
});

describe('DnsForwarder', () => {
  it('relays queries to the upstream resolver and its answers back', async () => {
    const up = await fakeUpstream();
    const fwd = await DnsForwarder.listen({
      address: '127.0.0.1',
      port: 0,
      upstreams: [`127.0.0.1:${up.port}`],
      log,
    });
    closers.push(() => fwd.close());
    const answer = await ask(fwd.port, 'anything.test');
    expect(answer.id).toBe(7);
    expect(answer.answers?.map((a) => (a as dnsPacket.StringAnswer).data)).toEqual(['203.0.113.7']);
    expect(up.queries).toEqual(['anything.test']);
  });

  it('with an allow-list: learns an allowed answer before the guest gets it', async () => {
    const up = await fakeUpstream();
    const events: string[] = [];
    const fwd = await DnsForwarder.listen({
      address: '127.0.0.1',
      port: 0,
      upstreams: [`127.0.0.1:${up.port}`],
      log,
      policy: {
        allowDomains: ['*.allowed.test'],
        onResolved: async (a, ttl) => {
          events.push(`learned ${a.join(',')} for ${ttl}s`);
        },
      },
    });
    closers.push(() => fwd.close());
    const answer = await ask(fwd.port, 'www.allowed.test');
    events.push('answered');
    expect(answer.answers).toHaveLength(1);
    expect(events).toEqual(['learned 203.0.113.7 for 3600s', 'answered']);
  });

  it('answers REFUSED for a name outside the allow-list without asking upstream, and learns allowed addresses first', async () => {
    const learned: string[][] = [];
    const fwd = await DnsForwarder.listen({
      address: '127.0.0.1',
      port: 0,
      upstreams: ['127.0.0.1:9'], // never asked
      log,
      policy: {
        allowDomains: ['allowed.test'],
        onResolved: async (a) => {
          learned.push(a);
        },
      },
    });
    closers.push(() => fwd.close());
    const t0 = Date.now();
    const refused = await ask(fwd.port, 'other.test');
    expect((refused as { rcode?: string }).rcode).toBe('REFUSED');
    expect(refused.answers).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(learned).toEqual([]);
  });
});
