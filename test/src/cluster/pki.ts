import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
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
