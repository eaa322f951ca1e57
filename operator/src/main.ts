// operator entry point: all wiring lives here.
import { KubeConfig } from '@kubernetes/client-node';
import { logRenamedVariables, parseHostPort } from '@waggle/crds';
import { createRotatingNodeAgentClient, watchAgentTls } from '@waggle/node-agent/client';
import { fastify } from 'fastify';
import { pino } from 'pino';
import { loadOperatorConfig, OPERATOR_RENAMED_VARIABLES } from './config.ts';
import { CreateLatency } from './environment/create-latency.ts';
import { createOperatorMetrics } from './metrics.ts';
import { type RunningOperator, startOperator } from './operator.ts';
import { AgentCertificateRotator } from './pki/agent-certificate-rotator.ts';
import { NodeAgentSigner } from './pki/node-agent-signer.ts';
import { secretAgentTls } from './pki/secret-tls-source.ts';
import { NamespaceQuotas } from './quota/namespace-quotas.ts';
import { setRuntimeMetrics } from './runtime/metrics.ts';
import { readVersion, serveVersion } from './version.ts';

async function main(): Promise<void> {
  const config = loadOperatorConfig();
  const version = readVersion();
  const log = pino({ name: 'operator', level: config.LOG_LEVEL });
  logRenamedVariables(log, process.env, OPERATOR_RENAMED_VARIABLES);
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const clientTls = config.WAGGLE_AGENT_CLIENT_SECRET
    ? secretAgentTls(kc, {
        namespace: config.POD_NAMESPACE,
        secret: config.WAGGLE_AGENT_CLIENT_SECRET,
        intervalMs: config.WAGGLE_AGENT_TLS_RELOAD_INTERVAL,
        log,
      })
    : undefined;
  const agentTls =
    clientTls ??
    (config.WAGGLE_AGENT_TLS_DIR
      ? watchAgentTls(config.WAGGLE_AGENT_TLS_DIR, { intervalMs: config.WAGGLE_AGENT_TLS_RELOAD_INTERVAL })
      : undefined);

  let operator: RunningOperator | undefined;
  const metrics = createOperatorMetrics({
    phases: () => operator?.phases() ?? {},
    isLeader: () => operator?.isLeader() ?? false,
    leaseName: config.WAGGLE_LEASE_NAME,
    certificates: () => {
      try {
        const held = agentTls?.current();
        return held ? [held.cert, held.ca] : [];
      } catch {
        return []; // not issued yet
      }
    },
  });
  setRuntimeMetrics(metrics.runtime); // every controller's reconciles and queue
  const createLatency = new CreateLatency((path, s) => metrics.createSeconds.observe({ path }, s));

  const ops = fastify({ logger: false });
  ops.get('/healthz', async () => ({ status: 'ok' }));
  serveVersion(ops, version);
  ops.get('/readyz', async (_req, reply) =>
    operator ? { status: 'ready' } : reply.code(503).send({ status: 'starting' }),
  );
  ops.get('/metrics', async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  await ops.listen(parseHostPort(config.WAGGLE_OPERATOR_OPS_LISTEN));

  const rotator =
    config.WAGGLE_AGENT_CA_SECRET && config.WAGGLE_AGENT_CERT_SECRETS
      ? new AgentCertificateRotator({
          kc,
          namespace: config.POD_NAMESPACE,
          caSecret: config.WAGGLE_AGENT_CA_SECRET,
          ...(config.WAGGLE_AGENT_CA_CONFIGMAP ? { caConfigMap: config.WAGGLE_AGENT_CA_CONFIGMAP } : {}),
          labels: {
            'app.kubernetes.io/component': 'agent-pki',
            'app.kubernetes.io/managed-by': 'waggle-operator',
          },
          leaves: config.WAGGLE_AGENT_CERT_SECRETS,
          validityMs: config.WAGGLE_AGENT_CERT_VALIDITY,
          log,
          onRenewed: (secret) => {
            metrics.certificatesRenewed.inc({ secret });
            if (secret === config.WAGGLE_AGENT_CLIENT_SECRET)
              void clientTls?.refresh().catch(() => undefined);
          },
        })
      : undefined;
  // Node-agents request their serving certificates (CSRs); the leader judges and signs them.
  const signer =
    rotator && config.WAGGLE_NODE_AGENT_SIGNER && config.WAGGLE_NODE_AGENT_REQUESTER
      ? new NodeAgentSigner({
          kc,
          signerName: config.WAGGLE_NODE_AGENT_SIGNER,
          requester: config.WAGGLE_NODE_AGENT_REQUESTER,
          validityMs: config.WAGGLE_AGENT_CERT_VALIDITY,
          ca: () => rotator.ca(),
          log,
        })
      : undefined;
  const certificateTask = rotator && {
    start: () => {
      rotator.start(config.WAGGLE_AGENT_CERT_CHECK_INTERVAL);
      signer?.start(config.WAGGLE_AGENT_CSR_CHECK_INTERVAL);
    },
    stop: () => {
      rotator.stop();
      signer?.stop();
    },
  };

  // Environments per namespace: a ResourceQuota in each of them (CEL cannot count objects).
  const quotaTask =
    config.WAGGLE_NAMESPACE_QUOTA === undefined
      ? undefined
      : new NamespaceQuotas({
          kc,
          log,
          quotaName: config.WAGGLE_NAMESPACE_QUOTA_NAME,
          agentClusterRole: config.WAGGLE_AGENT_CLUSTER_ROLE,
          limit: config.WAGGLE_NAMESPACE_QUOTA,
          ...(config.WAGGLE_WATCH_NAMESPACE ? { namespace: config.WAGGLE_WATCH_NAMESPACE } : {}),
        });

  operator = await startOperator({
    leaderTasks: [...(certificateTask ? [certificateTask] : []), ...(quotaTask ? [quotaTask] : [])],
    kc,
    log,
    identity: config.POD_NAME,
    ...(agentTls
      ? {
          agentFactory: (endpoint: string, nodeName: string) =>
            createRotatingNodeAgentClient(endpoint, agentTls, nodeName),
        }
      : {}),
    ...(config.WAGGLE_WATCH_NAMESPACE ? { namespace: config.WAGGLE_WATCH_NAMESPACE } : {}),
    pullSecretNamespace: config.POD_NAMESPACE,
    config: {
      workers: config.WAGGLE_RECONCILE_WORKERS,
      resyncMs: config.WAGGLE_RESYNC,
      nodeCheckEveryMs: config.WAGGLE_NODE_CHECK_INTERVAL,
      nodeStaleAfterMs: config.WAGGLE_NODE_STALE_AFTER,
      nodeLostGraceMs: config.WAGGLE_NODE_LOST_GRACE,
      agentCallTimeoutMs: config.WAGGLE_AGENT_CALL_TIMEOUT,
      unschedulableRetryMs: config.WAGGLE_UNSCHEDULABLE_RETRY,
      destroyTimeoutMs: config.WAGGLE_DESTROY_TIMEOUT,
      createVMTimeoutMs: config.WAGGLE_CREATE_VM_TIMEOUT,
      verifyEveryMs: config.WAGGLE_VERIFY_INTERVAL,
      orphanVMCheckEveryMs: config.WAGGLE_ORPHAN_VM_CHECK_INTERVAL,
      orphanVMGraceMs: config.WAGGLE_ORPHAN_VM_GRACE,
    },
    ...(config.WAGGLE_LEADER_ELECTION === 'true'
      ? {
          leaderElection: {
            namespace: config.POD_NAMESPACE,
            name: config.WAGGLE_LEASE_NAME,
            leaseDurationMs: config.WAGGLE_LEASE_DURATION,
            renewDeadlineMs: config.WAGGLE_RENEW_DEADLINE,
            retryPeriodMs: config.WAGGLE_RETRY_PERIOD,
          },
        }
      : {}),
    observe: {
      schedulingFailure: () => metrics.schedulingFailures.inc(),
      orphanVMDestroyed: () => metrics.orphanVMsDestroyed.inc(),
      environmentChanged: (type, env) => createLatency.changed(type, env),
    },
    // Like controller-runtime: a replica that loses the lease exits and is restarted clean.
    onLeadershipLost: () => {
      log.error('lost leadership; exiting');
      process.exit(1);
    },
  });
  log.info(
    { identity: config.POD_NAME, ops: config.WAGGLE_OPERATOR_OPS_LISTEN, version: version.version },
    'operator started',
  );

  const shutdown = async (signal: string) => {
    log.info({ signal }, 'operator stopping');
    await Promise.race([operator?.stop(), new Promise((r) => setTimeout(r, 5_000).unref())]);
    await ops.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: Error) => {
  process.stderr.write(`operator: ${err.message}\n`);
  process.exit(1);
});
