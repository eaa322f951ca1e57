import type { WaggleEnvironment } from '@waggle/crds';
import { classifyNodeAgentError } from '@waggle/node-agent/client';

import { keyOf } from '../placement.ts';
import type { PhaseContext } from './context.ts';

/**
 * A Failed environment is terminal: nobody can use its VM, and a Failed environment does not
 * count against its node's capacity. So once its node answers again (a NodeLost node that came
 * back re-adopts the VM), destroy the VM there; the object stays for the user to read.
 */
export async function releaseFailedVM(ctx: PhaseContext, env: WaggleEnvironment): Promise<void> {
  const uid = env.metadata.uid as string;
  const node = env.status?.nodeName;
  if (!node || ctx.failedReleased.has(uid) || !ctx.health.alive(node)) return;
  const endpoint = ctx.health.endpoint(node);
  if (!endpoint) return;
  const agent = ctx.agents.for(endpoint, node);
  const r = ctx.calls.destroys.take(
    uid,
    () => agent.destroyVM({ vmId: uid }, { timeoutMs: ctx.config.agentCallTimeoutMs }),
    () => ctx.enqueue(keyOf(env)),
  );
  if (r.state === 'failed') {
    ctx.log.warn(
      { node, err: classifyNodeAgentError(r.error).message },
      'could not destroy a failed environment’s VM; trying again on the next reconcile',
    );
  } else if (r.state === 'done') {
    ctx.failedReleased.add(uid);
    if (r.value.existed)
      await ctx.events.record(
        env,
        'Normal',
        'VMDestroyed',
        `destroyed the failed environment's VM on ${node}`,
      );
  }
}
