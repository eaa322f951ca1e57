import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { ENV_ID_HEADER, parseEnvId } from '../env-id.ts';
import type { EnvIds } from '../logger.ts';
import { clientIdentity } from './client-authz.ts';

/**
 * One child logger per RPC (`rpc`, `caller`, `vmId`, `envId`): a failed call is logged with its
 * Connect code (one `debug` line for each call served). The environment id comes from the
 * caller's `waggle-env-id` header, taken only when well-formed (env-id.ts) and used for logs
 * alone; a call naming a VM and its environment teaches `envIds` the pair, so the agent's other
 * lines about that VM carry the same `envId`. A streamed response's later failure is the
 * stream's, not logged here.
 */
export function logRequests(log: Logger, envIds?: EnvIds): Interceptor {
  return (next) => async (req) => {
    const envId = parseEnvId(req.header.get(ENV_ID_HEADER));
    const vmId = req.stream ? undefined : vmIdOf(req.message);
    if (envId && vmId) envIds?.remember(vmId, envId);
    const caller = req.contextValues.get(clientIdentity);
    const reqLog = log.child({
      rpc: req.method.name,
      ...(caller ? { caller } : {}),
      ...(vmId ? { vmId } : {}),
      ...(envId ? { envId } : {}),
    });
    const t0 = performance.now();
    try {
      const res = await next(req);
      reqLog.debug({ ms: Math.round(performance.now() - t0) }, 'rpc served');
      return res;
    } catch (err) {
      const e = ConnectError.from(err);
      reqLog.info(
        { code: Code[e.code], err: e.rawMessage, ms: Math.round(performance.now() - t0) },
        'rpc failed',
      );
      throw err;
    }
  };
}

/** The VM a request names: `vmId`, or CreateVM's `spec.vmId`. */
function vmIdOf(message: unknown): string | undefined {
  const m = message as { vmId?: unknown; spec?: { vmId?: unknown } } | undefined;
  const vmId = m?.vmId ?? m?.spec?.vmId;
  return typeof vmId === 'string' && vmId ? vmId : undefined;
}
