import { CustomObjectsApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import {
  ENVIRONMENT_PLURAL,
  GROUP,
  NodeConditionType,
  VERSION,
  type WaggleEnvironment,
  type WaggleNode,
} from '@waggle/crds';
import {
  environmentInformer,
  type InformerEvent,
  keyOf,
  nodeInformer,
  poolInformer,
  templateInformer,
} from '@waggle/crds/informer';
import type { Logger } from 'pino';
import { AgentClients, type AgentFactory } from './environment/agent-clients.ts';
import { EventRecorder } from './environment/events.ts';
import { NodeHealth } from './environment/placement.ts';
import { TemplatePullConfigs } from './environment/pull-configs.ts';
import { EnvironmentReconciler, type ReconcilerConfig } from './environment/reconciler.ts';
import { EnvironmentStore } from './environment/store.ts';
import { HeartbeatTracker } from './node/heartbeat-tracker.ts';
import { NodeLifecycle } from './node/node-lifecycle.ts';
import { OrphanVMCollector } from './node/orphan-vms.ts';
import { PoolController, type PoolControllerConfig } from './pool/pool-controller.ts';
import { PoolStore } from './pool/store.ts';
import { Controller } from './runtime/controller.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import { TemplateStore } from './template/store.ts';
import { TemplateController, type TemplateControllerConfig } from './template/template-controller.ts';

export interface OperatorOptions {
  kc: KubeConfig;
  log: Logger;
  identity: string;
  config: ReconcilerConfig & {
    workers: number;
    resyncMs: number;
    nodeCheckEveryMs: number;
    /** Orphaned-VM collection interval; 0 or unset: off. */
    orphanVMCheckEveryMs?: number;
    orphanVMGraceMs?: number;
    /** Warm pools: SetWarmPools resync and drift settings (defaults: 60 s, 15 s). */
    pools?: PoolControllerConfig;
    /** Template image pre-pulls: recheck and retry intervals (defaults: 10 min, 60 s). */
    templates?: TemplateControllerConfig;
  };
  /** Lease for leader election; without it this instance always leads. */
  leaderElection?: {
    namespace: string;
    name: string;
    leaseDurationMs?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  /** Watch one namespace only (default: all namespaces). */
  namespace?: string;
  /** Waggle's own namespace: where templates' image pull secrets are read (default: none read). */
  pullSecretNamespace?: string;
  /** For tests: how node-agent clients are made. */
  agentFactory?: AgentFactory;
  onLeadershipLost?: () => void;
  /** Started when this replica starts leading, stopped when it stops (e.g. certificate rotation). */
  leaderTasks?: ReadonlyArray<{ start(): void; stop(): void }>;
  /** Scheduling failures, collected VMs and (while leading) environment changes, for metrics. */
  observe?: {
    schedulingFailure: () => void;
    orphanVMDestroyed?: () => void;
    environmentChanged?: (type: InformerEvent, env: WaggleEnvironment) => void;
  };
}

export interface RunningOperator {
  isLeader(): boolean;
  queueDepth(): number;
  /** Environments in the cache by status.phase ("None" before the first status). */
  phases(): Record<string, number>;
  stop(): Promise<void>;
}

/** What of a WaggleNode the reconciler's decisions depend on (not its heartbeat time). */
export function schedulingSignature(n: WaggleNode): string {
  const ready = n.status?.conditions?.find((c) => c.type === NodeConditionType.Ready)?.status;
  return JSON.stringify([
    ready,
    n.spec?.unschedulable ?? false,
    n.status?.endpoint,
    n.status?.capacity,
    n.status?.runtimes,
    n.status?.ociImages,
  ]);
}

/**
 * Wires informers → work queue → reconciler, the node heartbeat watcher and (optionally) leader
 * election. Only the leader reconciles; followers keep warm caches.
 */
export async function startOperator(o: OperatorOptions): Promise<RunningOperator> {
  const api = o.kc.makeApiClient(CustomObjectsApi);
  const log = o.log.child({ identity: o.identity });
  let controller: Controller | undefined;
  const enqueue = (key: string) => controller?.enqueue(key);
  let poolController: PoolController | undefined;
  let templateController: TemplateController | undefined;

  const envs = environmentInformer({
    kc: o.kc,
    namespace: o.namespace,
    onEvent: (type, env) => {
      if (controller) o.observe?.environmentChanged?.(type, env);
      enqueue(keyOf(env));
      poolController?.changed(); // room on its node changed
    },
    resyncMs: o.config.resyncMs,
    log,
  });
  const envsOnNode = (node: string) => {
    for (const e of envs.list()) {
      if (e.status?.nodeName === node || !e.status?.nodeName) enqueue(keyOf(e));
    }
  };
  const nodeSignatures = new Map<string, string>();
  // Heartbeats judged by this process's clock; followers track them too, so a new leader
  // knows which nodes went quiet before it took over.
  const heartbeats = new HeartbeatTracker(() => nodes.healthySince());
  const nodes = nodeInformer({
    kc: o.kc,
    onEvent: (type, node) => {
      // A heartbeat rewrites the node's status every few seconds; only a change that can alter
      // a decision (readiness, capacity, runtimes, endpoint, cordon) re-queues its environments.
      const name = node.metadata.name ?? '';
      if (type === 'delete') heartbeats.forget(name);
      else heartbeats.observe(name, node.status?.lastHeartbeatTime);
      poolController?.changed(); // its readiness, room or warm-pool report may have changed
      const signature = type === 'delete' ? undefined : schedulingSignature(node);
      if (type !== 'add' && signature !== undefined && nodeSignatures.get(name) === signature) return;
      templateController?.changed(); // a node that runs images came, went, or changed readiness
      if (signature === undefined) nodeSignatures.delete(name);
      else nodeSignatures.set(name, signature);
      envsOnNode(name);
    },
    log,
  });
  const pools = poolInformer({
    kc: o.kc,
    ...(o.namespace ? { namespace: o.namespace } : {}),
    onEvent: () => poolController?.changed(),
    log,
  });
  const templates = templateInformer({
    kc: o.kc,
    onEvent: (_type, t) => templateController?.templateChanged(t.metadata.name as string),
    log,
  });
  // Not the pools or templates: environments run without them (a cluster whose WagglePool CRD is not applied
  // yet creates cold); the pool controller waits for them itself.
  await Promise.all([envs.synced, nodes.synced]);

  const agents = new AgentClients(o.agentFactory);
  const pullConfigs = o.pullSecretNamespace
    ? new TemplatePullConfigs(o.kc, o.pullSecretNamespace)
    : undefined;
  const events = new EventRecorder(o.kc, { component: 'waggle-operator', instance: o.identity, log });
  const reconciler = new EnvironmentReconciler({
    getEnv: (key) => envs.get(key),
    listEnvs: () => envs.list(),
    getNode: (name) => nodes.get(name),
    listNodes: () => nodes.list(),
    listPools: () => pools.list(),
    nodeSilentForMs: (name) => heartbeats.silentForMs(name),
    store: new EnvironmentStore(o.kc),
    agents,
    events,
    log,
    config: o.config,
    enqueue,
    ...(o.observe ? { onSchedulingFailure: o.observe.schedulingFailure } : {}),
    ...(pullConfigs ? { pullConfigs } : {}),
  });
  const nodeHealth = new NodeHealth({
    getNode: (name) => nodes.get(name),
    nodeSilentForMs: (name) => heartbeats.silentForMs(name),
    nodeStaleAfterMs: o.config.nodeStaleAfterMs,
  });
  const templatePulls = new TemplateController({
    getTemplate: (name) => templates.get(name),
    listTemplates: () => templates.list(),
    listNodes: () => nodes.list(),
    health: nodeHealth,
    agents,
    ...(pullConfigs ? { pullConfigs } : {}),
    store: new TemplateStore(o.kc),
    log,
    config: {
      ...(o.config.createVMTimeoutMs ? { pullTimeoutMs: o.config.createVMTimeoutMs } : {}),
      ...o.config.templates,
    },
  });
  const warmPools = new PoolController({
    getPool: (key) => pools.get(key),
    listPools: () => pools.list(),
    getNode: (name) => nodes.get(name),
    listNodes: () => nodes.list(),
    listEnvs: () => envs.list(),
    health: nodeHealth,
    nodeStaleAfterMs: o.config.nodeStaleAfterMs,
    agents,
    store: new PoolStore(o.kc),
    log,
    config: { agentCallTimeoutMs: o.config.agentCallTimeoutMs, ...o.config.pools },
  });
  const lifecycle = new NodeLifecycle(o.kc, {
    listNodes: () => nodes.list(),
    silentForMs: (name) => heartbeats.silentForMs(name),
    staleAfterMs: o.config.nodeStaleAfterMs,
    log,
    onNodeLost: envsOnNode,
  });

  const orphans = o.config.orphanVMCheckEveryMs
    ? new OrphanVMCollector({
        listNodes: () => nodes.list(),
        agentFor: (endpoint, nodeName) => agents.for(endpoint, nodeName),
        cachedPlacements: () =>
          new Map(envs.list().map((e) => [e.metadata.uid as string, e.status?.nodeName])),
        livePlacements: async () => {
          const all = (await api.listCustomObjectForAllNamespaces({
            group: GROUP,
            version: VERSION,
            resourcePlural: ENVIRONMENT_PLURAL,
          })) as { items: Array<KubernetesObject & { status?: { nodeName?: string } }> };
          return new Map(all.items.map((e) => [e.metadata?.uid as string, e.status?.nodeName]));
        },
        graceMs: o.config.orphanVMGraceMs ?? 120_000,
        log,
        onCollected: (node, vmId, why) => {
          o.observe?.orphanVMDestroyed?.();
          void events.record(node, 'Warning', 'OrphanedVMDestroyed', `destroyed VM ${vmId}: ${why}`);
        },
      })
    : undefined;

  const startLeading = () => {
    controller = new Controller({
      name: 'waggleenvironment',
      workers: o.config.workers,
      reconcile: (key) => reconciler.reconcile(key),
      log,
      logKey: 'envId', // the key is "<namespace>/<name>": the environment's id in every log
    });
    controller.start();
    for (const e of envs.list()) controller.enqueue(keyOf(e));
    poolController = warmPools;
    // Only from a full cache: an empty one would tell every node to drain its warm VMs.
    void pools.synced.then(() => {
      if (poolController === warmPools) warmPools.start();
    });
    templateController = templatePulls;
    void templates.synced.then(() => {
      if (templateController === templatePulls) templatePulls.start();
    });
    lifecycle.start(o.config.nodeCheckEveryMs);
    if (orphans && o.config.orphanVMCheckEveryMs) orphans.start(o.config.orphanVMCheckEveryMs);
    for (const t of o.leaderTasks ?? []) t.start();
    log.info('leading: reconciling');
  };
  const stopLeading = async () => {
    lifecycle.stop();
    orphans?.stop();
    for (const t of o.leaderTasks ?? []) t.stop();
    const c = controller;
    controller = undefined;
    poolController = undefined;
    templateController = undefined;
    await Promise.all([c?.stop(), warmPools.stop(), templatePulls.stop()]);
  };

  let elector: LeaderElector | undefined;
  let stopping = false;
  if (o.leaderElection) {
    elector = new LeaderElector({
      kc: o.kc,
      identity: o.identity,
      ...o.leaderElection,
      onStartedLeading: startLeading,
      onStoppedLeading: () => {
        void stopLeading();
        if (!stopping) o.onLeadershipLost?.();
      },
      log,
    });
    elector.start();
  } else {
    startLeading();
  }

  return {
    isLeader: () => controller !== undefined,
    queueDepth: () => controller?.queue.length ?? 0,
    phases: () => {
      const out: Record<string, number> = {};
      for (const e of envs.list()) {
        const p = e.status?.phase ?? 'None';
        out[p] = (out[p] ?? 0) + 1;
      }
      return out;
    },
    async stop() {
      stopping = true;
      await elector?.stop();
      await stopLeading();
      await events.flush(2_000); // what the last reconciles recorded
      await Promise.all([envs.stop(), nodes.stop(), pools.stop(), templates.stop()]);
    },
  };
}
