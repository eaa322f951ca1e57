// Each node-agent is its own identity (docs/adr/0012-per-node-identity.md), against the real
// apiserver with the chart's own RBAC and admission policy: the operator makes the CA, node-agents
// get serving certificates naming their node through CSRs signed only for the node their token is
// bound to, and a node-agent writes only its own WaggleNode.
import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import {
  CertificatesV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { nodeAgentServerName } from '@waggle/node-agent/client';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ServingCertificate } from '../../node-agent/src/pki/serving-certificate.ts';
import { AgentCertificateRotator } from '../../operator/src/pki/agent-certificate-rotator.ts';
import { NodeAgentSigner } from '../../operator/src/pki/node-agent-signer.ts';
import { applyCRDs, CHART, deleteTestNamespace, ensureHelm, kubeClients, waitFor } from '../src/index.ts';

const run = promisify(execFile);
const kubeconfigPath = inject('kubeconfigPath');
const { kc: admin, core, objects } = kubeClients(kubeconfigPath);
const certs = admin.makeApiClient(CertificatesV1Api);
const suffix = randomBytes(3).toString('hex');
const namespace = `node-identity-${suffix}`;
const release = `nid${suffix}`;
const fullname = `${release}-waggle`;
const signerName = `waggle.dev/${namespace}.${fullname}-node-agent`;
const NODE_A = `node-a-${suffix}`;
const NODE_B = `node-b-${suffix}`;
const log = pino({ level: 'silent' });
const WAGGLE_NODES = { group: 'waggle.dev', version: 'v1alpha1', plural: 'wagglenodes' };
const created: KubernetesObject[] = [];
let dir = '';
let operatorKc: KubeConfig;
let agentAKc: KubeConfig; // the node-agent ServiceAccount, token bound to node A
let unboundAgentKc: KubeConfig; // the node-agent ServiceAccount, token bound to no node
let rotator: AgentCertificateRotator;
let signer: NodeAgentSigner;

/** A kubeconfig for a ServiceAccount token (TokenRequest), optionally bound to a Node. */
async function tokenKubeconfig(sa: string, node?: { name: string; uid: string }): Promise<KubeConfig> {
  const tr = await core.createNamespacedServiceAccountToken({
    name: sa,
    namespace,
    body: {
      spec: {
        audiences: [],
        expirationSeconds: 3600,
        ...(node
          ? { boundObjectRef: { apiVersion: 'v1', kind: 'Node', name: node.name, uid: node.uid } }
          : {}),
      },
    },
  });
  const cluster = admin.getCurrentCluster();
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: cluster?.server as string, caData: cluster?.caData, skipTLSVerify: false },
    ],
    users: [{ name: sa, token: tr.status?.token as string }],
    contexts: [{ name: 'c', cluster: 'c', user: sa }],
    currentContext: 'c',
  });
  return kc;
}

const status = (err: unknown) => (err as { code?: number }).code;
const errorText = (err: unknown) => String((err as { body?: unknown }).body ?? (err as Error).message);

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  dir = await mkdtemp(join(tmpdir(), 'waggle-node-identity-'));
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  // The chart's RBAC (ServiceAccounts, roles) and its node admission policy, as installed.
  const helm = await ensureHelm();
  const { stdout } = await run(helm, [
    'template',
    release,
    CHART,
    '--namespace',
    namespace,
    '--show-only',
    'templates/rbac.yaml',
    '--show-only',
    'templates/node-admission-policy.yaml',
  ]);
  for (const doc of parseAllDocuments(stdout)) {
    const obj = doc.toJS() as KubernetesObject | null;
    if (!obj?.kind) continue;
    if (obj.metadata && ['ServiceAccount', 'Role', 'RoleBinding'].includes(obj.kind)) {
      obj.metadata.namespace = namespace;
    }
    created.push(await objects.create(obj));
  }
  for (const name of [NODE_A, NODE_B]) {
    created.push(await core.createNode({ body: { metadata: { name } } }));
  }
  const nodeA = await core.readNode({ name: NODE_A });
  operatorKc = await tokenKubeconfig(`${fullname}-operator`);
  agentAKc = await tokenKubeconfig(`${fullname}-node-agent`, {
    name: NODE_A,
    uid: nodeA.metadata?.uid as string,
  });
  unboundAgentKc = await tokenKubeconfig(`${fullname}-node-agent`);
  rotator = new AgentCertificateRotator({
    kc: operatorKc,
    namespace,
    caSecret: `${fullname}-agent-ca-key`,
    caConfigMap: `${fullname}-agent-ca`,
    leaves: [
      { secret: `${fullname}-operator-agent-identity`, spec: { cn: 'waggle-operator', usage: 'client' } },
      { secret: `${fullname}-gateway-agent-identity`, spec: { cn: 'waggle-gateway', usage: 'client' } },
    ],
    validityMs: 86_400_000,
    log,
  });
  signer = new NodeAgentSigner({
    kc: operatorKc,
    signerName,
    requester: `system:serviceaccount:${namespace}:${fullname}-node-agent`,
    validityMs: 86_400_000,
    ca: () => rotator.ca(),
    log,
  });
}, 300_000);

afterAll(async () => {
  signer?.stop();
  const csrs = await certs.listCertificateSigningRequest({ fieldSelector: `spec.signerName=${signerName}` });
  for (const c of csrs.items) {
    await certs.deleteCertificateSigningRequest({ name: c.metadata?.name as string }).catch(() => undefined);
  }
  const custom = admin.makeApiClient(CustomObjectsApi);
  for (const name of [NODE_A, NODE_B]) {
    await custom.deleteClusterCustomObject({ ...WAGGLE_NODES, name }).catch(() => undefined);
  }
  for (const obj of created.reverse()) await objects.delete(obj).catch(() => undefined);
  await deleteTestNamespace(admin, namespace);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('per-node identity (real apiserver, the chart’s RBAC and policy)', () => {
  it('the operator makes the CA when its Secret is absent, publishes ca.crt and issues client-only identities', async () => {
    await expect(
      core.readNamespacedSecret({ name: `${fullname}-agent-ca-key`, namespace }),
    ).rejects.toMatchObject({
      code: 404,
    });
    const renewed = await rotator.check(); // with the operator ServiceAccount's own permissions
    expect(renewed.map((r) => r.reason)).toEqual(['no certificate', 'no certificate']);
    const secret = await core.readNamespacedSecret({ name: `${fullname}-agent-ca-key`, namespace });
    const caPem = Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64').toString('utf8');
    const ca = new X509Certificate(caPem);
    expect(ca.ca).toBe(true);
    expect(secret.data?.['ca.key']).toBeTruthy();
    const cm = await core.readNamespacedConfigMap({ name: `${fullname}-agent-ca`, namespace });
    expect(cm.data?.['ca.crt']).toBe(caPem);
    expect(cm.data?.['ca.key']).toBeUndefined();
    for (const [s, cn] of [
      ['operator', 'waggle-operator'],
      ['gateway', 'waggle-gateway'],
    ] as const) {
      const leaf = await core.readNamespacedSecret({ name: `${fullname}-${s}-agent-identity`, namespace });
      const cert = new X509Certificate(Buffer.from(leaf.data?.['tls.crt'] ?? '', 'base64'));
      expect(cert.subject.trim()).toBe(`CN=${cn}`);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // clientAuth only: it cannot serve
      expect(cert.validToDate.getTime() - cert.validFromDate.getTime()).toBeLessThanOrEqual(
        86_400_000 + 60_000,
      );
    }
    // A second pass keeps the CA and the identities.
    expect(await rotator.check()).toEqual([]);
    expect((await rotator.ca()).certPem).toBe(caPem);
  });

  it('issues node A a serving certificate naming node A through a CSR; the key stays on the node', async () => {
    signer.start(200);
    const caPem = (await rotator.ca()).certPem;
    await writeFile(join(dir, 'ca.crt'), caPem);
    const serving = new ServingCertificate({
      kc: agentAKc,
      nodeName: NODE_A,
      signerName,
      dir: join(dir, 'node-a'),
      caFile: join(dir, 'ca.crt'),
      issueTimeoutMs: 30_000,
      log,
    });
    const tls = await serving.ensure();
    const cert = new X509Certificate(tls.cert);
    expect(cert.subjectAltName).toBe(`DNS:${nodeAgentServerName(NODE_A)}`);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth only: it cannot call agents
    expect(cert.verify(new X509Certificate(caPem).publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(tls.key))).toBe(true);
    // What the apiserver recorded about the requester, and the operator's decision.
    const csrs = await certs.listCertificateSigningRequest({
      fieldSelector: `spec.signerName=${signerName}`,
    });
    const csr = csrs.items.find((c) => c.metadata?.name?.startsWith(`waggle-node-agent-${NODE_A}-`));
    expect(csr?.spec.username).toBe(`system:serviceaccount:${namespace}:${fullname}-node-agent`);
    expect(csr?.spec.extra?.['authentication.kubernetes.io/node-name']).toEqual([NODE_A]);
    expect(csr?.status?.conditions?.find((c) => c.type === 'Approved')?.reason).toBe('NodeIdentityVerified');
    // A restart reuses the kept pair (no new CSR).
    const again = new ServingCertificate({
      kc: agentAKc,
      nodeName: NODE_A,
      signerName,
      dir: join(dir, 'node-a'),
      caFile: join(dir, 'ca.crt'),
      log,
    });
    expect((await again.ensure()).cert).toBe(tls.cert);
  });

  it("denies a CSR for node B from node A's token, and one from a token bound to no node, with the reason", async () => {
    const asNodeB = new ServingCertificate({
      kc: agentAKc, // node A's token, asking for node B's name
      nodeName: NODE_B,
      signerName,
      dir: join(dir, 'node-b'),
      caFile: join(dir, 'ca.crt'),
      issueTimeoutMs: 30_000,
      log,
    });
    await expect(asNodeB.ensure()).rejects.toThrow(
      `denied: NodeMismatch: requested a certificate for node ${NODE_B}, but the requester's token is bound to node ${NODE_A}`,
    );
    const unbound = new ServingCertificate({
      kc: unboundAgentKc,
      nodeName: NODE_A,
      signerName,
      dir: join(dir, 'unbound'),
      caFile: join(dir, 'ca.crt'),
      issueTimeoutMs: 30_000,
      log,
    });
    await expect(unbound.ensure()).rejects.toThrow(
      /denied: NoNodeBinding: the requester's token is not bound to a node/,
    );
    const denied = (
      await certs.listCertificateSigningRequest({ fieldSelector: `spec.signerName=${signerName}` })
    ).items
      .filter((c) => c.status?.conditions?.some((x) => x.type === 'Denied'))
      .map((c) => c.status?.certificate);
    expect(denied).toEqual([undefined, undefined]); // nothing signed for them
  });

  it("a caller that means node B refuses node A's certificate at node B's address", async () => {
    const caPem = (await rotator.ca()).certPem;
    const a = await new ServingCertificate({
      kc: agentAKc,
      nodeName: NODE_A,
      signerName,
      dir: join(dir, 'node-a'),
      caFile: join(dir, 'ca.crt'),
      log,
    }).ensure();
    const server: Server = createTlsServer({ cert: a.cert, key: a.key }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const handshake = (node: string) =>
      new Promise<string>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ca: caPem, servername: nodeAgentServerName(node) });
        s.once('secureConnect', () => {
          resolve('ok');
          s.destroy();
        });
        s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
    try {
      expect(await handshake(NODE_A)).toBe('ok');
      expect(await handshake(NODE_B)).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    } finally {
      server.close();
    }
  });

  it('a node-agent may write only its own WaggleNode (create, status, delete), and not at all without a node-bound token', async () => {
    const agentA = agentAKc.makeApiClient(CustomObjectsApi);
    const body = (name: string) => ({
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleNode',
      metadata: { name },
    });
    // The policy becomes active within a moment of its creation: wait until another node's
    // WaggleNode is refused (it never is without the policy, and then the test fails).
    const refused = await waitFor(
      () =>
        agentA.createClusterCustomObject({ ...WAGGLE_NODES, body: body(NODE_B) }).then(
          async () => {
            await admin
              .makeApiClient(CustomObjectsApi)
              .deleteClusterCustomObject({ ...WAGGLE_NODES, name: NODE_B });
            return undefined;
          },
          (err: unknown) => err,
        ),
      (err) => err !== undefined,
      "node A's agent to be refused node B's WaggleNode",
      { timeoutMs: 15_000, intervalMs: 500 },
    );
    expect(status(refused)).toBe(403);
    expect(errorText(refused)).toContain(
      `a node-agent may write only its own WaggleNode: the requester is the node-agent of node ${NODE_A}, not of ${NODE_B}`,
    );
    // Its own: create, write status, delete.
    const own = (await agentA.createClusterCustomObject({ ...WAGGLE_NODES, body: body(NODE_A) })) as {
      metadata: { resourceVersion: string };
    };
    await agentA.replaceClusterCustomObjectStatus({
      ...WAGGLE_NODES,
      name: NODE_A,
      body: {
        ...body(NODE_A),
        metadata: { name: NODE_A, resourceVersion: own.metadata.resourceVersion },
        status: { endpoint: 'https://10.0.0.1:7443' },
      },
    });
    // Node B's WaggleNode (made by someone else): no status write, no update, no delete from node A.
    const adminCustom = admin.makeApiClient(CustomObjectsApi);
    const b = (await adminCustom.createClusterCustomObject({ ...WAGGLE_NODES, body: body(NODE_B) })) as {
      metadata: { resourceVersion: string };
    };
    const hijack = await agentA
      .replaceClusterCustomObjectStatus({
        ...WAGGLE_NODES,
        name: NODE_B,
        body: {
          ...body(NODE_B),
          metadata: { name: NODE_B, resourceVersion: b.metadata.resourceVersion },
          status: { endpoint: 'https://10.0.0.1:7443' },
        },
      })
      .catch((e: unknown) => e);
    expect(status(hijack)).toBe(403);
    expect(errorText(hijack)).toContain('may write only its own WaggleNode');
    const del = await agentA
      .deleteClusterCustomObject({ ...WAGGLE_NODES, name: NODE_B })
      .catch((e: unknown) => e);
    expect(status(del)).toBe(403);
    const nodeB = (await adminCustom.getClusterCustomObject({ ...WAGGLE_NODES, name: NODE_B })) as {
      status?: unknown;
    };
    expect(nodeB.status).toBeUndefined();
    // A token bound to no node may not write any WaggleNode, not even one named like its pod's node.
    const unbound = unboundAgentKc.makeApiClient(CustomObjectsApi);
    const none = await unbound
      .deleteClusterCustomObject({ ...WAGGLE_NODES, name: NODE_A })
      .catch((e: unknown) => e);
    expect(status(none)).toBe(403);
    expect(errorText(none)).toContain('no node (its token is not bound to one)');
    await agentA.deleteClusterCustomObject({ ...WAGGLE_NODES, name: NODE_A });
  });
});
