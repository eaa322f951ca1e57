/**
 * The network boundary of a guest (docs/security.md): an `egress: all` guest reaches the internet
 * (the package indexes) but nothing of the node, of other VMs or of private/link-local ranges;
 * an `allowDomains` guest reaches only the names it was given. Every target here is an address
 * this test creates on this machine: listeners on 127.0.0.1 and on the node's addresses, another
 * VM's namespace, and a network namespace of the test's own holding a private and a link-local
 * address. Real QEMU microVMs under TCG, real SSH, real nftables.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureGuestImages } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execCode } from '../src/guest/exec.ts';
import type { GuestConnections } from '../src/guest/ssh-connections.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import type { VMManager } from '../src/vm/vm-manager.ts';
import { testConnections, testManager, testNetworks } from './vm-fixtures.ts';

const run = promisify(execFile);
// A namespace of the test's own, routed from the node, standing in for a pod or private service
// (192.168.251.2), the cloud metadata service (169.254.169.254) and a public internet server
// (198.51.100.7, a documentation address: reachable from `egress: all` guests, which shows the
// refusals below are the boundary's and not a broken route).
const PRIVATE_NS = 'wgt-private';
const PRIVATE_IP = '192.168.251.2';
const METADATA_IP = '169.254.169.254';
const PUBLIC_IP = '198.51.100.7';

let stateDir = '';
let networks: VMNetworks;
let vms: VMManager;
let conns: GuestConnections;
const servers: Server[] = [];

async function listen(host: string): Promise<number> {
  const srv = createServer((sock) => sock.end('hello\n'));
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, host, r));
  return (srv.address() as AddressInfo).port;
}

/** A TCP server answering "outside" inside the test's namespace (stops after two minutes). */
function serveInPrivateNs(ip: string, port: number): void {
  void run('ip', [
    'netns',
    'exec',
    PRIVATE_NS,
    'timeout',
    '240',
    'python3',
    '-c',
    `import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(("${ip}",${port}))\ns.listen()\nwhile True:\n  c,_=s.accept(); c.sendall(b"outside\\n"); c.close()`,
  ]).catch(() => undefined);
}

/** Runs in the guest: tries each target, prints one line per target ("reached"/"refused"/…). */
function probe(targets: Array<[string, number]>): string {
  return [
    'import socket, time',
    `for host, port in ${JSON.stringify(targets)}:`,
    '    t0 = time.time()',
    '    try:',
    '        s = socket.create_connection((host, port), timeout=4)',
    '        data = s.recv(16).decode().strip()',
    '        print(host, port, "reached", data)',
    '    except OSError as e:',
    '        kind = "timeout" if isinstance(e, socket.timeout) else "refused"',
    '        print(host, port, kind, round(time.time() - t0, 1))',
  ].join('\n');
}

async function inGuest(vmId: string, code: string, timeoutMs = 60_000): Promise<string> {
  const r = await execCode(await conns.get(vmId), {
    code,
    language: 'python',
    timeoutMs,
    maxOutputBytes: 1 << 16,
  });
  expect(r.stderr).toBe('');
  return r.stdout;
}

const spec = (vmId: string, extra: { egress?: 'all' | 'none'; allowDomains?: string[] } = {}) => ({
  vmId,
  runtime: 'python' as const,
  cpus: 1,
  memoryMiB: 512,
  diskMiB: 1024,
  egress: extra.egress ?? ('all' as const),
  allowDomains: extra.allowDomains ?? [],
});

beforeAll(async () => {
  const images = await ensureGuestImages(['python']);
  const tscKHz = await readHostTscKHz();
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-net-test-'));
  networks = await testNetworks('10.253.201.0/24');
  vms = testManager({ stateDir, images, networks, tscKHz });
  await vms.adopt();
  conns = testConnections(vms);
  // The test's private namespace.
  await run('ip', ['netns', 'del', PRIVATE_NS]).catch(() => undefined);
  await run('ip', ['link', 'del', 'wgt-priv0']).catch(() => undefined);
  await run('ip', ['netns', 'add', PRIVATE_NS]);
  await run('ip', ['link', 'add', 'wgt-priv0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', PRIVATE_NS]);
  await run('ip', ['addr', 'add', '192.168.251.1/30', 'dev', 'wgt-priv0']);
  await run('ip', ['link', 'set', 'wgt-priv0', 'up']);
  await run('ip', ['route', 'add', `${METADATA_IP}/32`, 'via', PRIVATE_IP]);
  await run('ip', ['route', 'add', `${PUBLIC_IP}/32`, 'via', PRIVATE_IP]);
  for (const cmd of [
    ['addr', 'add', `${PRIVATE_IP}/30`, 'dev', 'eth0'],
    ['addr', 'add', `${METADATA_IP}/32`, 'dev', 'eth0'],
    ['addr', 'add', `${PUBLIC_IP}/32`, 'dev', 'eth0'],
    ['link', 'set', 'eth0', 'up'],
    ['link', 'set', 'lo', 'up'],
    ['route', 'add', 'default', 'via', '192.168.251.1'],
  ])
    await run('ip', ['-n', PRIVATE_NS, ...cmd]);
  serveInPrivateNs(PRIVATE_IP, 8080);
  serveInPrivateNs(METADATA_IP, 80);
  serveInPrivateNs(PUBLIC_IP, 8080);
  await Promise.all([vms.create(spec('net-all')), vms.create(spec('net-neighbour'))]);
}, 900_000);

afterAll(async () => {
  conns?.closeAll();
  for (const s of servers) s.close();
  for (const vm of vms?.list() ?? []) await vms.destroyInstance(vm.instanceId);
  await run('ip', ['route', 'del', `${METADATA_IP}/32`]).catch(() => undefined);
  await run('ip', ['route', 'del', `${PUBLIC_IP}/32`]).catch(() => undefined);
  await run('ip', ['link', 'del', 'wgt-priv0']).catch(() => undefined);
  await run('ip', ['netns', 'del', PRIVATE_NS]).catch(() => undefined);
  await networks?.removeHostTable();
  await rm(stateDir, { recursive: true, force: true });
});

describe('egress: all reaches the internet, never the node, other VMs or private ranges', () => {
  it('cannot reach the node loopback (10.0.2.2), the node addresses, its own link, another VM or a private/link-local service', {
    timeout: 180_000,
  }, async () => {
    const loopbackPort = await listen('127.0.0.1');
    const anyPort = await listen('0.0.0.0');
    const nodeIPv4 = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .filter((a) => a.family === 'IPv4' && !a.internal)
      .map((a) => a.address);
    expect(nodeIPv4.length, 'this machine has no non-loopback IPv4 address to test with').toBeGreaterThan(0);
    const neighbour = vms.get('net-neighbour');
    const self = vms.get('net-all');
    // The node can reach the private namespace (so the refusals below are the guest's boundary).
    await expect
      .poll(
        async () =>
          (
            await run('python3', [
              '-c',
              `import socket;print(socket.create_connection(("${PRIVATE_IP}",8080),timeout=2).recv(16).decode().strip())`,
            ]).catch(() => ({ stdout: '' }))
          ).stdout.trim(),
        { timeout: 10_000 },
      )
      .toBe('outside');

    const targets: Array<[string, number]> = [
      ['10.0.2.2', loopbackPort], // QEMU's alias for the node's 127.0.0.1 (etcd, the MCP port, …)
      ['10.0.2.2', anyPort],
      ...nodeIPv4.map((ip): [string, number] => [ip, anyPort]),
      [self.network.hostIP, anyPort], // the node's end of the guest's own link
      [neighbour.network.nsIP, 22], // another VM's SSH forward
      [PRIVATE_IP, 8080],
      [METADATA_IP, 80],
    ];
    // The positive control first: the guest does reach a server outside the node.
    expect(await inGuest('net-all', probe([[PUBLIC_IP, 8080]]))).toBe(`${PUBLIC_IP} 8080 reached outside\n`);
    const out = await inGuest('net-all', probe(targets));
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(targets.length);
    for (const line of lines) {
      // Refused at once (no hang): the namespace's firewall rejects, QEMU resets the connection.
      expect(line).toMatch(/ refused (0|1)\.\d$/);
    }
    // IPv6: the guest has no IPv6 route at all (QEMU's ipv6=off; the namespace disables it).
    const v6 = await inGuest(
      'net-all',
      'import socket\nfor host in ["fec0::2", "::ffff:10.0.2.2", "fd00::2"]:\n    try:\n        socket.create_connection((host, 22), timeout=3); print(host, "reached")\n    except OSError:\n        print(host, "refused")',
    );
    expect(v6).toBe('fec0::2 refused\n::ffff:10.0.2.2 refused\nfd00::2 refused\n');
  });

  it('still resolves names through the node and reaches the package index', {
    timeout: 120_000,
  }, async () => {
    const out = await inGuest(
      'net-all',
      'import urllib.request\nr = urllib.request.urlopen("https://pypi.org/simple/six/", timeout=30)\nprint(r.status)',
    );
    expect(out).toBe('200\n');
  });
});

describe('allowDomains: only the names given', () => {
  it('reaches an allowed registry, and is refused fast for another name and for an address it never resolved', {
    timeout: 300_000,
  }, async () => {
    await vms.create(spec('net-domains', { allowDomains: ['pypi.org', '*.pythonhosted.org'] }));
    try {
      const out = await inGuest(
        'net-domains',
        [
          'import socket, time, urllib.request',
          'r = urllib.request.urlopen("https://pypi.org/simple/six/", timeout=30)',
          'print("pypi", r.status)',
          't0 = time.time()',
          'try:',
          '    socket.getaddrinfo("registry.npmjs.org", 443)',
          '    print("npm resolved")',
          'except socket.gaierror:',
          '    print("npm refused", time.time() - t0 < 3)',
        ].join('\n'),
      );
      expect(out).toBe('pypi 200\nnpm refused True\n');
      // A server the guest never resolved through an allowed name (egress all reaches it).
      const direct = await inGuest('net-domains', probe([[PUBLIC_IP, 8080]]));
      expect(direct).toMatch(/ refused (0|1)\.\d\n$/);
    } finally {
      await vms.destroy('net-domains');
    }
  });
});
