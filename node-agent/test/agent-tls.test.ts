import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { type AgentProcess, createCA, freePorts, startAgentProcess, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Code,
  ConnectError,
  createNodeAgentClient,
  loadAgentTls,
  nodeAgentServerName,
} from '../src/client.ts';

// The agent under test is node A's: its serving certificate names node A only.
const NODE_A = 'node-a';
const NODE_B = 'node-b';
const tlsDir = (name: string) => ({ ...loadAgentTls(join(dir, name)), nodeName: NODE_A });

let dir: string;
let agent: AgentProcess;
let httpsUrl: string;
let ca: Awaited<ReturnType<typeof createCA>>;

/** Writes ca.crt, tls.crt, tls.key as the chart's Secrets mount them. */
async function writeTlsDir(path: string, ca: string, pair: { certPem: string; keyPem: string }) {
  await mkdir(path, { recursive: true });
  await writeFile(join(path, 'ca.crt'), ca);
  await writeFile(join(path, 'tls.crt'), pair.certPem);
  await writeFile(join(path, 'tls.key'), pair.keyPem, { mode: 0o600 });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'waggle-agent-tls-'));
  ca = await createCA('waggle-agent-ca');
  const rogue = await createCA('someone-else');
  await writeTlsDir(
    join(dir, 'server'),
    ca.certPem,
    await ca.issue({ cn: 'waggle-node-agent', usage: 'server', dnsNames: [nodeAgentServerName(NODE_A)] }),
  );
  await writeTlsDir(
    join(dir, 'client'),
    ca.certPem,
    await ca.issue({ cn: 'waggle-operator', usage: 'client' }),
  );
  await writeTlsDir(
    join(dir, 'gateway'),
    ca.certPem,
    await ca.issue({ cn: 'waggle-gateway', usage: 'client' }),
  );
  // Signed by the right CA, but not a client identity the agent knows (a node's own certificate).
  await writeTlsDir(
    join(dir, 'node'),
    ca.certPem,
    await ca.issue({ cn: 'waggle-node-agent', usage: 'both', dnsNames: [nodeAgentServerName(NODE_B)] }),
  );
  // The operator's name on a certificate made for serving (a node's usage): not a client identity.
  await writeTlsDir(
    join(dir, 'server-only'),
    ca.certPem,
    await ca.issue({ cn: 'waggle-operator', usage: 'server', dnsNames: [nodeAgentServerName(NODE_B)] }),
  );
  // Trusts the agents' CA but presents a certificate from another CA.
  await writeTlsDir(join(dir, 'rogue'), ca.certPem, await rogue.issue({ cn: 'intruder', usage: 'client' }));
  const [apiPort, opsPort] = (await freePorts(2)) as [number, number];
  agent = await startAgentProcess({
    apiPort,
    opsPort,
    env: {
      WAGGLE_STATE_DIR: join(dir, 'state'),
      WAGGLE_VM_NETWORK_CIDR: '10.253.26.0/24',
      WAGGLE_REGISTER: 'false',
      WAGGLE_GUEST_RUNTIMES: 'shell',
      WAGGLE_AGENT_TLS_DIR: join(dir, 'server'),
      WAGGLE_AGENT_TLS_RELOAD_INTERVAL: '300ms',
    },
  });
  httpsUrl = agent.apiUrl.replace(/^http:/, 'https:');
}, 120_000);

afterAll(async () => {
  await agent?.kill('SIGTERM');
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('node-agent API over mutual TLS', () => {
  it('answers a client whose certificate the CA signed', async () => {
    const client = createNodeAgentClient(httpsUrl, tlsDir('client'));
    const info = await client.getNodeInfo({});
    expect(info.runtimes).toEqual(['shell']);
  });

  it('refuses a client certificate from another CA, and cleartext HTTP/2', async () => {
    const rogue = createNodeAgentClient(httpsUrl, tlsDir('rogue'));
    await expect(rogue.getNodeInfo({}, { timeoutMs: 5_000 })).rejects.toThrow();
    const cleartext = createNodeAgentClient(agent.apiUrl);
    await expect(cleartext.getNodeInfo({}, { timeoutMs: 5_000 })).rejects.toThrow();
  });

  it("refuses node A's certificate when the caller means node B (the name is checked, not the IP)", async () => {
    // The same address and CA, but the caller asks for node B: node A's certificate does not do.
    const meantB = createNodeAgentClient(httpsUrl, {
      ...loadAgentTls(join(dir, 'client')),
      nodeName: NODE_B,
    });
    const err = await meantB
      .getNodeInfo({}, { timeoutMs: 5_000 })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).rawMessage).toMatch(
      new RegExp(
        `Host: ${nodeAgentServerName(NODE_B).replaceAll('.', '\\.')}. is not in the cert's altnames`,
      ),
    );
    // …and node A's identity works at the same address.
    expect((await createNodeAgentClient(httpsUrl, tlsDir('client')).getNodeInfo({})).runtimes).toEqual([
      'shell',
    ]);
    expect(() => createNodeAgentClient(httpsUrl)).toThrow(/uses TLS: configure the client certificate/);
  });

  it('refuses a serving-only certificate as a client, even one with the operator’s name', async () => {
    const err = await createNodeAgentClient(httpsUrl, tlsDir('server-only'))
      .listVMs({}, { timeoutMs: 5_000 })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    // Refused in the handshake — the server checks the certificate's purpose and drops the
    // connection (TLS 1.3: the client sees a reset or a cancelled stream, whichever comes
    // first) — not by the RPC authorization (no PermissionDenied). The same CN
    // from the same CA with client usage ('client') is answered (first test).
    expect([Code.PermissionDenied, Code.DeadlineExceeded]).not.toContain((err as ConnectError).code);
    expect((await createNodeAgentClient(httpsUrl, tlsDir('client')).listVMs({})).vms).toBeDefined();
  });

  it('refuses an http:// endpoint when mutual TLS is configured, before any request', async () => {
    // A WaggleNode whose endpoint says http:// (a compromised or misconfigured agent) must not
    // turn the caller's mTLS off: the client is never made, with an error that says why.
    expect(() => createNodeAgentClient(agent.apiUrl, tlsDir('client'))).toThrow(
      /is not https: refusing to call it without TLS while mutual TLS is configured/,
    );
  });

  it('lets each client identity call only its RPCs (operator: lifecycle; gateway: exec and files)', async () => {
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => ConnectError.from(e).code,
      );
    const operator = createNodeAgentClient(httpsUrl, tlsDir('client'));
    const gateway = createNodeAgentClient(httpsUrl, tlsDir('gateway'));
    const node = createNodeAgentClient(httpsUrl, tlsDir('node'));

    expect(await code(operator.listVMs({}))).toBe('ok');
    expect(await code(operator.destroyVM({ vmId: 'none' }))).toBe('ok');
    expect(await code(operator.readFile({ vmId: 'none', path: 'x' }))).toBe(Code.PermissionDenied);
    expect(await code(gateway.getNodeInfo({}))).toBe('ok');
    // Allowed, so it reaches the handler: the VM does not exist.
    expect(await code(gateway.readFile({ vmId: 'none', path: 'x' }))).toBe(Code.NotFound);
    expect(await code(gateway.listVMs({}))).toBe(Code.PermissionDenied);
    expect(await code(gateway.destroyVM({ vmId: 'none' }))).toBe(Code.PermissionDenied);
    const denied = await node.getNodeInfo({}).catch((e: unknown) => ConnectError.from(e));
    expect(denied).toBeInstanceOf(ConnectError);
    expect((denied as ConnectError).code).toBe(Code.PermissionDenied);
    expect((denied as ConnectError).rawMessage).toMatch(
      /client "waggle-node-agent" may not call GetNodeInfo/,
    );
  });

  it('serves a renewed certificate without restarting, and ignores a half-written one', async () => {
    const client = loadAgentTls(join(dir, 'client'));
    const port = Number(new URL(httpsUrl).port);
    const served = () =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({
          host: '127.0.0.1',
          port,
          servername: nodeAgentServerName(NODE_A),
          ca: client.ca,
          cert: client.cert,
          key: client.key,
          ALPNProtocols: ['h2'],
        });
        s.once('secureConnect', () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.destroy();
        });
        s.once('error', reject);
      });
    const before = await served();
    const next = await ca.issue({
      cn: 'node-agent',
      usage: 'server',
      dnsNames: [nodeAgentServerName(NODE_A)],
    });
    const other = await ca.issue({
      cn: 'node-agent',
      usage: 'server',
      dnsNames: [nodeAgentServerName(NODE_A)],
    });
    const serverDir = join(dir, 'server');

    // A certificate with the wrong key (files caught mid-update) is not loaded; the agent lives on.
    await writeFile(join(serverDir, 'tls.crt'), next.certPem);
    await writeFile(join(serverDir, 'tls.key'), other.keyPem);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await served()).toBe(before);

    await writeFile(join(serverDir, 'tls.key'), next.keyPem);
    const expected = new X509Certificate(next.certPem).serialNumber;
    await waitFor(served, (serial) => serial === expected, 'the renewed certificate', {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    // The API keeps answering over the new certificate, in the same agent process.
    const info = await createNodeAgentClient(httpsUrl, tlsDir('client')).getNodeInfo({});
    expect(info.runtimes).toEqual(['shell']);
    expect(agent.child.exitCode).toBeNull();
  });
});
