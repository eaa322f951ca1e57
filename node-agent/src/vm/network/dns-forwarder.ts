import { createSocket, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import dnsPacket from 'dns-packet';
import type { Logger } from 'pino';

/** What a VM may resolve, and what to do with the addresses of an allowed name. */
export interface DnsPolicy {
  /** Suffix patterns: `example.org` (exactly), `*.example.net` (any name below it). */
  allowDomains: readonly string[];
  /** Called with an allowed answer's IPv4 addresses before the answer reaches the guest. */
  onResolved(addresses: string[], ttlSeconds: number): Promise<void>;
}

const MAX_IN_FLIGHT = 64;
const UPSTREAM_TIMEOUT_MS = 5_000;

/** The node's resolvers, from resolv.conf (the guest never talks to them directly). */
export async function nodeResolvers(path = '/etc/resolv.conf'): Promise<string[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const found = text
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined && isIP(a) !== 0);
  return found.length > 0 ? found : ['127.0.0.1'];
}

/** True when `name` matches one of the allow patterns (case-insensitive, trailing dot ignored). */
export function domainAllowed(name: string, patterns: readonly string[]): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  return patterns.some((raw) => {
    const p = raw.toLowerCase().replace(/\.$/, '');
    if (p.startsWith('*.')) return n.endsWith(p.slice(1)) && n.length > p.length - 1;
    return n === p;
  });
}

/**
 * A DNS forwarder for one VM: listens on the node's end of the VM's veth (the only DNS server the
 * VM's namespace may reach) and relays queries to the node's resolvers. With a policy it answers
 * REFUSED for names outside the allow-list, and lets the firewall learn the allowed answers'
 * addresses before the guest sees them. Bounded: at most MAX_IN_FLIGHT queries per VM.
 */
export class DnsForwarder {
  readonly #socket: Socket;
  readonly #upstreams: readonly string[];
  readonly #log: Logger;
  #policy: DnsPolicy | undefined;
  #inFlight = 0;

  private constructor(socket: Socket, upstreams: readonly string[], log: Logger, policy?: DnsPolicy) {
    this.#socket = socket;
    this.#upstreams = upstreams;
    this.#log = log;
    this.#policy = policy;
    socket.on('message', (msg, from) => void this.#handle(msg, from.address, from.port));
    socket.on('error', (err) => log.warn({ err: err.message }, 'dns forwarder socket error'));
  }

  static async listen(opts: {
    address: string;
    port?: number;
    upstreams: readonly string[];
    log: Logger;
    policy?: DnsPolicy;
  }): Promise<DnsForwarder> {
    const socket = createSocket({ type: 'udp4', reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: opts.address, port: opts.port ?? 53, exclusive: true }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new DnsForwarder(socket, opts.upstreams, opts.log, opts.policy);
  }

  get port(): number {
    return this.#socket.address().port;
  }

  close(): void {
    try {
      this.#socket.close();
    } catch {
      // already closed
    }
  }

  #reply(msg: Buffer, address: string, port: number): void {
    this.#socket.send(msg, port, address);
  }

  async #handle(msg: Buffer, address: string, port: number): Promise<void> {
    if (this.#inFlight >= MAX_IN_FLIGHT) return; // a flooding guest loses its own queries
    this.#inFlight++;
    try {
      let query: dnsPacket.Packet;
      try {
        query = dnsPacket.decode(msg);
      } catch {
        return; // not DNS: no answer
      }
      const policy = this.#policy;
      const name = query.questions?.[0]?.name ?? '';
      if (policy && !domainAllowed(name, policy.allowDomains)) {
        this.#reply(refused(query), address, port);
        return;
      }
      const answer = await this.#ask(msg);
      if (!answer) {
        this.#reply(failure(query), address, port);
        return;
      }
      if (policy) {
        const decoded = safeDecode(answer);
        // A CNAME chain's final addresses are what the guest connects to; the chain's names were
        // resolved by the node's resolver on the guest's behalf, so they need no allowing.
        const a = (decoded?.answers ?? []).filter((r) => r.type === 'A') as dnsPacket.StringAnswer[];
        if (a.length > 0) {
          // At least an hour: a client that caches an address longer than its TTL keeps working.
          const ttl = Math.max(3600, Math.min(...a.map((r) => r.ttl ?? 60)));
          await policy.onResolved(
            a.map((r) => r.data),
            ttl,
          );
        }
      }
      this.#reply(answer, address, port);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'dns forwarding failed');
    } finally {
      this.#inFlight--;
    }
  }

  /** Sends the query to each upstream in turn; the first answer wins. */
  async #ask(msg: Buffer): Promise<Buffer | undefined> {
    for (const upstream of this.#upstreams) {
      const answer = await askOne(upstream, msg).catch(() => undefined);
      if (answer) return answer;
    }
    return undefined;
  }
}

/** `ip`, `ip:port` or `[ipv6]:port` → address and port (53 by default). */
export function parseUpstream(upstream: string): { address: string; port: number } {
  const m = /^\[(.+)\]:(\d+)$/.exec(upstream) ?? /^([\d.]+):(\d+)$/.exec(upstream);
  return m ? { address: m[1] as string, port: Number(m[2]) } : { address: upstream, port: 53 };
}

function askOne(upstream: string, msg: Buffer): Promise<Buffer> {
  const { address, port } = parseUpstream(upstream);
  const sock = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout')), UPSTREAM_TIMEOUT_MS);
    sock.once('error', reject);
    sock.once('message', (reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
    sock.send(msg, port, address);
  }).finally(() => sock.close());
}

function safeDecode(buf: Buffer): dnsPacket.Packet | undefined {
  try {
    return dnsPacket.decode(buf);
  } catch {
    return undefined;
  }
}

/** RFC 1035 response codes (dns-packet reads the code from the low 4 bits of `flags`). */
const RCODE = { SERVFAIL: 2, REFUSED: 5 } as const;

function responseTo(query: dnsPacket.Packet, rcode: keyof typeof RCODE): Buffer {
  return dnsPacket.encode({
    id: query.id ?? 0,
    type: 'response',
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | RCODE[rcode],
    questions: query.questions ?? [],
    answers: [],
  });
}

const refused = (query: dnsPacket.Packet) => responseTo(query, 'REFUSED');
const failure = (query: dnsPacket.Packet) => responseTo(query, 'SERVFAIL');
