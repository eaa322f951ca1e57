import { hostname } from 'node:os';
import { durationMsSchema, parseEnvConfig } from '@waggle/crds';
import { z } from 'zod';

const durationMs = durationMsSchema;
const hostPort = z.string().regex(/^[^:\s]+:\d{1,5}$/, { error: 'use host:port, e.g. 0.0.0.0:8081' });

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
  WAGGLE_NODE_CHECK_INTERVAL: durationMs.default(5_000),
  WAGGLE_UNSCHEDULABLE_RETRY: durationMs.default(15_000),
  WAGGLE_DESTROY_TIMEOUT: durationMs.default(120_000),
  WAGGLE_VERIFY_INTERVAL: durationMs.default(30_000),
  /** How often Ready nodes are checked for VMs whose environment is gone; "0s" turns it off. */
  WAGGLE_ORPHAN_VM_CHECK_INTERVAL: durationMs.default(60_000),
  WAGGLE_ORPHAN_VM_GRACE: durationMs.default(120_000),
  /** Directory with ca.crt, tls.crt, tls.key: talk mutual TLS to node-agents. */
  WAGGLE_AGENT_TLS_DIR: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});
export type OperatorConfig = z.output<typeof operatorConfigSchema>;

export function loadOperatorConfig(env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  return parseEnvConfig(operatorConfigSchema, env, 'operator');
}
