// `node operator/src/drain.ts [environments|nodes]`, the chart's uninstall hooks:
// - environments (pre-delete): deletes every WaggleEnvironment and waits until the running
//   operator has finalized them all (VMs destroyed), so `helm uninstall` leaves no VM behind;
// - nodes (post-delete): deletes the WaggleNodes the node-agents registered, once they are gone,
//   and what the operator made for mTLS (no Helm release holds it): the CA Secret, the CA
//   ConfigMap, the client identity Secrets and the node-agents' CSRs.
import { CertificatesV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import {
  durationMsSchema,
  ENVIRONMENT_PLURAL,
  GROUP,
  logLevelSchema,
  NODE_PLURAL,
  VERSION,
} from '@waggle/crds';
import { pino } from 'pino';
import { z } from 'zod';

const config = z
  .object({
    WAGGLE_DRAIN_TIMEOUT: durationMsSchema.default(180_000),
    /** Namespace of the operator-made mTLS objects, and their names (comma-separated). */
    WAGGLE_PKI_NAMESPACE: z.string().optional(),
    WAGGLE_PKI_SECRETS: z.string().optional(),
    WAGGLE_PKI_CONFIGMAPS: z.string().optional(),
    /** CSRs of this signer are deleted. */
    WAGGLE_PKI_CSR_SIGNER: z.string().optional(),
    LOG_LEVEL: logLevelSchema,
  })
  .parse(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v)));
const log = pino({ name: 'operator-drain', level: config.LOG_LEVEL });
const kc = new KubeConfig();
kc.loadFromDefault();
const api = kc.makeApiClient(CustomObjectsApi);
const coords = { group: GROUP, version: VERSION, resourcePlural: ENVIRONMENT_PLURAL };

if (process.argv[2] === 'nodes') {
  const nodes = (await api.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_PLURAL,
  })) as {
    items: Array<{ metadata: { name: string } }>;
  };
  for (const n of nodes.items) {
    await api
      .deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_PLURAL,
        name: n.metadata.name,
      })
      .catch((err: { code?: number }) => {
        if (err.code !== 404) throw err;
      });
  }
  log.info({ nodes: nodes.items.length }, 'deleted the WaggleNodes');
  await removeAgentPki();
  process.exit(0);
}

async function removeAgentPki(): Promise<void> {
  const ignoreMissing = (err: { code?: number }) => {
    if (err.code !== 404) throw err;
  };
  const namespace = config.WAGGLE_PKI_NAMESPACE;
  const names = (v?: string) => (v ?? '').split(',').filter(Boolean);
  if (namespace) {
    const core = kc.makeApiClient(CoreV1Api);
    for (const name of names(config.WAGGLE_PKI_SECRETS)) {
      await core.deleteNamespacedSecret({ name, namespace }).catch(ignoreMissing);
    }
    for (const name of names(config.WAGGLE_PKI_CONFIGMAPS)) {
      await core.deleteNamespacedConfigMap({ name, namespace }).catch(ignoreMissing);
    }
  }
  if (config.WAGGLE_PKI_CSR_SIGNER) {
    const certs = kc.makeApiClient(CertificatesV1Api);
    const csrs = await certs.listCertificateSigningRequest({
      fieldSelector: `spec.signerName=${config.WAGGLE_PKI_CSR_SIGNER}`,
    });
    for (const c of csrs.items) {
      await certs.deleteCertificateSigningRequest({ name: c.metadata?.name as string }).catch(ignoreMissing);
    }
  }
  log.info('deleted the operator-made mTLS objects');
}

type Env = { metadata: { name: string; namespace: string } };
const list = async () => ((await api.listCustomObjectForAllNamespaces(coords)) as { items: Env[] }).items;

const deadline = Date.now() + config.WAGGLE_DRAIN_TIMEOUT;
let items = await list();
log.info({ environments: items.length }, 'deleting all environments');
for (const e of items) {
  await api
    .deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: ENVIRONMENT_PLURAL,
      namespace: e.metadata.namespace,
      name: e.metadata.name,
    })
    .catch((err: { code?: number }) => {
      if (err.code !== 404) throw err;
    });
}
while (items.length > 0 && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 1_000));
  items = await list();
}
if (items.length > 0) {
  log.error(
    { left: items.map((e) => `${e.metadata.namespace}/${e.metadata.name}`) },
    'environments still finalizing',
  );
  process.exit(1);
}
log.info('all environments are gone');
