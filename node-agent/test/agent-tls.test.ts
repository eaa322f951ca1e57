import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AgentProcess, createCA, freePorts, startAgentProcess } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AGENT_TLS_SERVER_NAME,
  Code,
  ConnectError,
  createNodeAgentClient,
  loadAgentTls,
} from '../src/client.ts';

let dir: string;
let agent: AgentProcess;
let httpsUrl: string;

/** Writes ca.crt, tls.crt, tls.key as the chart's Secrets mount them. */
async function writeTlsDir(path: string, ca: string, pair: { certPem: string; keyPem: string }) {
  await mkdir(path, { recursive: true });
  await writeFile(join(path, 'ca.crt'), ca);
  await writeFile(join(path, 'tls.crt'), pair.certPem);
  await writeFile(join(path, 'tls.key'), pair.keyPem, { mode: 0o600 });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'waggle-agent-tls-'));
  const ca = await createCA('waggle-agent-ca');
  const rogue = await createCA('someone-else');
  await writeTlsDir(
    join(dir, 'server'),
    ca.certPem,
    await ca.issue({ cn: 'node-agent', usage: 'server', dnsNames: [AGENT_TLS_SERVER_NAME] }),
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
    await ca.issue({ cn: 'waggle-node-agent', usage: 'both', dnsNames: [AGENT_TLS_SERVER_NAME] }),
  );
  // Trusts the agents' CA but presents a certificate from another CA.
  await writeTlsDir(join(dir, 'rogue'), ca.certPem, await rogue.issue({ cn: 'intruder', usage: 'client' }));
  const [apiPort, opsPort] = (await freePorts(2)) as [number, number];
  agent = await startAgentProcess({
    apiPort,
    opsPort,
    env: {
      WAGGLE_STATE_DIR: join(dir, 'state'),
      WAGGLE_REGISTER: 'false',
      WAGGLE_GUEST_RUNTIMES: 'shell',
      WAGGLE_AGENT_TLS_DIR: join(dir, 'server'),
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
    const client = createNodeAgentClient(httpsUrl, loadAgentTls(join(dir, 'client')));
    const info = await client.getNodeInfo({});
    expect(info.runtimes).toEqual(['shell']);
  });

  it('refuses a client certificate from another CA, and cleartext HTTP/2', async () => {
    const rogue = createNodeAgentClient(httpsUrl, loadAgentTls(join(dir, 'rogue')));
    await expect(rogue.getNodeInfo({}, { timeoutMs: 5_000 })).rejects.toThrow();
    const cleartext = createNodeAgentClient(agent.apiUrl);
    await expect(cleartext.getNodeInfo({}, { timeoutMs: 5_000 })).rejects.toThrow();
  });

  it('checks the agent is who the chart says (server name), and needs a client certificate for https', async () => {
    const wrongName = createNodeAgentClient(httpsUrl, {
      ...loadAgentTls(join(dir, 'client')),
      serverName: 'not-the-agent',
    });
    await expect(wrongName.getNodeInfo({}, { timeoutMs: 5_000 })).rejects.toThrow();
    expect(() => createNodeAgentClient(httpsUrl)).toThrow(/uses TLS: configure the client certificate/);
  });

  it('lets each client identity call only its RPCs (operator: lifecycle; gateway: exec and files)', async () => {
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => ConnectError.from(e).code,
      );
    const operator = createNodeAgentClient(httpsUrl, loadAgentTls(join(dir, 'client')));
    const gateway = createNodeAgentClient(httpsUrl, loadAgentTls(join(dir, 'gateway')));
    const node = createNodeAgentClient(httpsUrl, loadAgentTls(join(dir, 'node')));

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
});
