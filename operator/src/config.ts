import { hostname } from 'node:os';
import {
  CREATE_DEADLINE_DEFAULTS,
  durationMsSchema,
  hostPortSchema,
  logLevelSchema,
  parseEnvConfig,
  type RenamedVariable,
} from '@waggle/crds';
import { z } from 'zod';

const durationMs = durationMsSchema;
const hostPort = hostPortSchema;

const NAME = '[a-z0-9]([-a-z0-9.]*[a-z0-9])?';
const LEAF = new RegExp(`^${NAME}:${NAME}(:${NAME})?$`);

/** `secret:cn[:dnsName]`, comma-separated: the leaf Secrets the operator keeps renewed. */
const agentCertSecrets = z
  .string()
  .refine((v) => v.split(',').every((item) => LEAF.test(item.trim())), {
    error:
      'use secret:commonName[:dnsName] items separated by commas, e.g. waggle-node-agent-tls:waggle-node-agent:waggle-node-agent',
  })
  .transform((v) =>
    v.split(',').map((item) => {
      const [secret, cn, dnsName] = item.trim().split(':') as [string, string, string | undefined];
      // Without a DNS name it is a client identity (operator, gateway): client usage only, so it
      // can never serve as a node-agent.
      return {
        secret,
        spec: dnsName
          ? { cn, dnsNames: [dnsName], usage: 'both' as const }
          : { cn, usage: 'client' as const },
      };
    }),
  );

/** Operator configuration from the environment; every variable is listed in operator/README.md. */
export const operatorConfigSchema = z.object({
  POD_NAME: z.string().min(1).default(`${hostname()}-${process.pid}`),
  POD_NAMESPACE: z.string().min(1).default('waggle-system'),
  WAGGLE_WATCH_NAMESPACE: z.string().optional(),
  WAGGLE_OPERATOR_OPS_LISTEN: hostPort.default('127.0.0.1:8081'),
  WAGGLE_LEADER_ELECTION: z.enum(['true', 'false']).default('true'),
  WAGGLE_LEASE_NAME: z.string().min(1).default('waggle-operator'),
  WAGGLE_LEASE_DURATION: durationMs.default(15_000),
  WAGGLE_RENEW_DEADLINE: durationMs.default(10_000),
  WAGGLE_RETRY_PERIOD: durationMs.default(2_000),
  WAGGLE_RECONCILE_WORKERS: z.coerce.number().int().min(1).max(64).default(4),
  WAGGLE_RESYNC: durationMs.default(300_000),
  WAGGLE_NODE_STALE_AFTER: durationMs.default(40_000),
  /** How long an environment's node may be unreachable before the environment fails (NodeLost). */
  WAGGLE_NODE_LOST_GRACE: durationMs.default(600_000),
  /** Deadline of the operator's short node-agent calls (GetVM, DestroyVM, ListVMs). */
  WAGGLE_AGENT_CALL_TIMEOUT: durationMs
    .refine((ms) => ms >= 1_000, { error: 'must be at least 1s' })
    .default(15_000),
  WAGGLE_NODE_CHECK_INTERVAL: durationMs.default(5_000),
  WAGGLE_UNSCHEDULABLE_RETRY: durationMs.default(15_000),
  WAGGLE_DESTROY_TIMEOUT: durationMs.default(120_000),
  /**
   * Deadline of one CreateVM call, guest boot included (formerly WAGGLE_CREATE_TIMEOUT); longer
   * than the node-agent's WAGGLE_BOOT_TIMEOUT. See docs/reliability.md#timeouts-and-how-they-nest.
   */
  WAGGLE_CREATE_VM_TIMEOUT: durationMs
    .refine((ms) => ms >= 1_000, { error: 'must be at least 1s' })
    .default(CREATE_DEADLINE_DEFAULTS.createVMMs),
  WAGGLE_VERIFY_INTERVAL: durationMs.default(10_000),
  /** How often Ready nodes are checked for VMs whose environment is gone; "0s" turns it off. */
  WAGGLE_ORPHAN_VM_CHECK_INTERVAL: durationMs.default(60_000),
  WAGGLE_ORPHAN_VM_GRACE: durationMs.default(120_000),
  /** Directory with ca.crt, tls.crt, tls.key: talk mutual TLS to node-agents. */
  WAGGLE_AGENT_TLS_DIR: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  WAGGLE_AGENT_TLS_RELOAD_INTERVAL: durationMs.default(30_000),
  /** Secret with the node-agent CA (`ca.crt`, `ca.key`); with WAGGLE_AGENT_CERT_SECRETS, turns rotation on. */
  WAGGLE_AGENT_CA_SECRET: z
    .string()
    .regex(new RegExp(`^${NAME}$`))
    .optional(),
  WAGGLE_AGENT_CERT_SECRETS: agentCertSecrets.optional(),
  WAGGLE_AGENT_CERT_VALIDITY: durationMs
    .refine((ms) => ms >= 600_000, { error: 'must be at least 10m' })
    .default(86_400_000),
  WAGGLE_AGENT_CERT_CHECK_INTERVAL: durationMs.default(60_000),
  /** ConfigMap the leader publishes the CA certificate in (node-agents verify clients with it). */
  WAGGLE_AGENT_CA_CONFIGMAP: z
    .string()
    .regex(new RegExp(`^${NAME}$`))
    .optional(),
  /** The operator's own client identity, read through the API (instead of WAGGLE_AGENT_TLS_DIR). */
  WAGGLE_AGENT_CLIENT_SECRET: z
    .string()
    .regex(new RegExp(`^${NAME}$`))
    .optional(),
  /** Signer name of node-agent serving certificates (CSRs); with WAGGLE_NODE_AGENT_REQUESTER, turns signing on. */
  WAGGLE_NODE_AGENT_SIGNER: z
    .string()
    .regex(/^[a-z0-9.-]+\/[a-z0-9.-]+$/, { error: 'use domain/name, e.g. waggle.dev/node-agent' })
    .optional(),
  /** The only user whose CSRs are signed: system:serviceaccount:<namespace>:<node-agent ServiceAccount>. */
  WAGGLE_NODE_AGENT_REQUESTER: z
    .string()
    .regex(/^system:serviceaccount:[a-z0-9-]+:[a-z0-9.-]+$/, {
      error: 'use system:serviceaccount:<namespace>:<name>',
    })
    .optional(),
  WAGGLE_AGENT_CSR_CHECK_INTERVAL: durationMs.default(2_000),
  /**
   * WaggleEnvironments per namespace, kept as a ResourceQuota in every namespace bound to the agent
   * ClusterRole or holding an environment (0: remove those quotas); unset: quotas not managed.
   */
  WAGGLE_NAMESPACE_QUOTA: z.coerce.number().int().min(0).optional(),
  WAGGLE_NAMESPACE_QUOTA_NAME: z
    .string()
    .regex(new RegExp(`^${NAME}$`))
    .default('waggle-environments'),
  /** The ClusterRole whose RoleBindings make a namespace Waggle's (the chart's <release>-agent). */
  WAGGLE_AGENT_CLUSTER_ROLE: z
    .string()
    .regex(new RegExp(`^${NAME}$`))
    .default('waggle-agent'),
  LOG_LEVEL: logLevelSchema,
});
export type OperatorConfig = z.output<typeof operatorConfigSchema>;

/** Old names still read for one release (with a warning at start). */
export const OPERATOR_RENAMED_VARIABLES: readonly RenamedVariable[] = [
  { old: 'WAGGLE_CREATE_TIMEOUT', current: 'WAGGLE_CREATE_VM_TIMEOUT' },
];

export function loadOperatorConfig(env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const c = parseEnvConfig(operatorConfigSchema, env, 'operator', undefined, OPERATOR_RENAMED_VARIABLES);
  if (!c.WAGGLE_AGENT_CA_SECRET !== !c.WAGGLE_AGENT_CERT_SECRETS) {
    throw new Error(
      'invalid operator configuration:\n  WAGGLE_AGENT_CA_SECRET and WAGGLE_AGENT_CERT_SECRETS go together (certificate rotation needs both)',
    );
  }
  if (!c.WAGGLE_NODE_AGENT_SIGNER !== !c.WAGGLE_NODE_AGENT_REQUESTER) {
    throw new Error(
      'invalid operator configuration:\n  WAGGLE_NODE_AGENT_SIGNER and WAGGLE_NODE_AGENT_REQUESTER go together (signing checks the requester)',
    );
  }
  if (c.WAGGLE_NODE_AGENT_SIGNER && !c.WAGGLE_AGENT_CA_SECRET) {
    throw new Error(
      'invalid operator configuration:\n  WAGGLE_NODE_AGENT_SIGNER needs WAGGLE_AGENT_CA_SECRET',
    );
  }
  return c;
}
