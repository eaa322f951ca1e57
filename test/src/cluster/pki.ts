import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { writeKubeconfig } from '../kubeconfig.ts';
import { apiserverServingRequest, createCA, serviceAccountKeyPair, writeCertPair } from '../pki.ts';
import { CLUSTER, type ClusterPaths } from './layout.ts';

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** Client identities of the cluster's components: kubeconfig name → (CN, groups). */
const CLIENTS = {
  admin: { cn: 'waggle-admin', orgs: ['system:masters'] },
  'kube-controller-manager': { cn: 'system:kube-controller-manager', orgs: [] },
  'kube-scheduler': { cn: 'system:kube-scheduler', orgs: [] },
  kubelet: { cn: `system:node:${CLUSTER.nodeName}`, orgs: ['system:nodes'] },
  'kube-proxy': { cn: 'system:kube-proxy', orgs: [] },
} as const;

export const apiserverURL = `https://${CLUSTER.nodeIP}:${CLUSTER.apiserverPort}`;

/** etcd's own CA and certificates (as kubeadm keeps them): only the apiserver's client key opens it. */
export const etcdPki = (p: ClusterPaths) => ({
  ca: join(p.pki, 'etcd', 'ca.crt'),
  serverCert: join(p.pki, 'etcd', 'server.crt'),
  serverKey: join(p.pki, 'etcd', 'server.key'),
  clientCert: join(p.pki, 'apiserver-etcd-client.crt'),
  clientKey: join(p.pki, 'apiserver-etcd-client.key'),
});

/**
 * A request to etcd's client port the way the apiserver makes it (etcd's CA, and the apiserver's
 * client certificate unless `withClientCert` is false); resolves to the HTTP status, rejects
 * when TLS refuses the connection.
 */
export async function etcdRequest(
  p: ClusterPaths,
  opts: { path?: string; method?: string; body?: string; withClientCert?: boolean } = {},
): Promise<number> {
  const t = etcdPki(p);
  const [ca, cert, key] = await Promise.all([
    readFile(t.ca, 'utf8'),
    readFile(t.clientCert, 'utf8'),
    readFile(t.clientKey, 'utf8'),
  ]);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: CLUSTER.etcdClientPort,
        path: opts.path ?? '/health',
        method: opts.method ?? 'GET',
        ca,
        ...(opts.withClientCert === false ? {} : { cert, key }),
        timeout: 5_000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy(new Error('etcd did not answer within 5 s')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Creates etcd's CA, its serving/peer certificate and the apiserver's etcd client certificate
 * once (also for a cluster made before etcd spoke TLS). A CA of its own: no certificate of the
 * cluster CA (admin, kubelet, …) is accepted by etcd.
 */
export async function ensureEtcdPki(p: ClusterPaths): Promise<{ created: boolean }> {
  const files = etcdPki(p);
  if (await exists(join(p.pki, 'etcd', 'done'))) return { created: false };
  await mkdir(join(p.pki, 'etcd'), { recursive: true, mode: 0o700 });
  const ca = await createCA('waggle-etcd-ca', 3650);
  await writeFile(files.ca, ca.certPem);
  await writeCertPair(
    join(p.pki, 'etcd'),
    'server',
    await ca.issue({
      cn: 'waggle-etcd',
      usage: 'both',
      dnsNames: ['localhost'],
      ips: ['127.0.0.1'],
      validDays: 3650,
    }),
  );
  await writeCertPair(
    p.pki,
    'apiserver-etcd-client',
    await ca.issue({ cn: 'kube-apiserver-etcd-client', usage: 'client', validDays: 3650 }),
  );
  await writeFile(join(p.pki, 'etcd', 'done'), `${new Date().toISOString()}\n`);
  return { created: true };
}

/**
 * Creates the cluster CA, every component's certificate and kubeconfig, and the ServiceAccount
 * signing key — once. A second `up` reuses them (so the admin kubeconfig stays valid).
 */
export async function ensureClusterPki(p: ClusterPaths): Promise<{ created: boolean }> {
  if (await exists(join(p.pki, 'done'))) return { created: false };
  await mkdir(p.pki, { recursive: true, mode: 0o700 });
  const ca = await createCA('waggle-local-ca', 3650);
  await writeFile(join(p.pki, 'ca.crt'), ca.certPem);
  await writeFile(join(p.pki, 'ca.key'), ca.keyPem, { mode: 0o600 });
  await writeCertPair(
    p.pki,
    'apiserver',
    await ca.issue(apiserverServingRequest(['127.0.0.1', CLUSTER.nodeIP, CLUSTER.apiserverServiceIP], 3650)),
  );
  await writeCertPair(
    p.pki,
    'apiserver-kubelet-client',
    await ca.issue({
      cn: 'kube-apiserver-kubelet-client',
      orgs: ['system:masters'],
      usage: 'client',
      validDays: 3650,
    }),
  );
  await writeCertPair(
    p.pki,
    'kubelet-serving',
    await ca.issue({
      cn: CLUSTER.nodeName,
      usage: 'server',
      dnsNames: [CLUSTER.nodeName, 'localhost'],
      ips: [CLUSTER.nodeIP, '127.0.0.1'],
      validDays: 3650,
    }),
  );
  for (const [name, who] of Object.entries(CLIENTS)) {
    const pair = await ca.issue({ cn: who.cn, orgs: [...who.orgs], usage: 'client', validDays: 3650 });
    await writeKubeconfig(join(p.pki, `${name}.kubeconfig`), {
      server: apiserverURL,
      caPem: ca.certPem,
      user: who.cn,
      certPem: pair.certPem,
      keyPem: pair.keyPem,
      cluster: CLUSTER.name,
    });
  }
  const sa = serviceAccountKeyPair();
  await writeFile(join(p.pki, 'sa.pub'), sa.publicPem);
  await writeFile(join(p.pki, 'sa.key'), sa.privatePem, { mode: 0o600 });
  await writeFile(p.adminKubeconfig, await readFile(join(p.pki, 'admin.kubeconfig')), { mode: 0o600 });
  await writeFile(join(p.pki, 'done'), `${new Date().toISOString()}\n`);
  return { created: true };
}
