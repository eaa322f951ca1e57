import { EnvironmentReason, type WaggleEnvironment } from '@waggle/crds';
import { classifyNodeAgentError, toProtoEgress, toProtoRuntime } from '@waggle/node-agent/client';
import type { ReconcileResult } from '../../runtime/controller.ts';

import { keyOf } from '../placement.ts';
import type { VmAgent } from '../ports.ts';
import * as status from '../status.ts';
import type { Lifetime, PhaseContext } from './context.ts';
import { fail } from './fail.ts';

/**
 * Scheduled or Booting: create the VM on the node. The CreateVM call runs off the worker (it
 * boots a VM: seconds to minutes); its completion queues the key, and the next pass reads it.
 */
export async function boot(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  node: string,
  agent: VmAgent,
  life: Lifetime,
): Promise<ReconcileResult | undefined> {
  const uid = env.metadata.uid as string;
  const key = keyOf(env);
  const creation = ctx.calls.creates.take(
    uid,
    () =>
      agent.createVM(
        {
          spec: {
            vmId: uid,
            runtime: toProtoRuntime(env.spec.runtime),
            cpus: env.spec.resources.cpus,
            memoryMib: env.spec.resources.memoryMiB,
            diskMib: env.spec.resources.diskMiB,
            egress: toProtoEgress(env.spec.network.egress),
            allowDomains: env.spec.network.allowDomains ?? [],
          },
        },
        { timeoutMs: ctx.config.createVMTimeoutMs },
      ),
    () => ctx.enqueue(key),
  );
  switch (creation.state) {
    case 'started':
      await ctx.setStatus(env, status.booting(env, ctx.now, node, life.expiresAt));
      return undefined;
    case 'pending':
      return undefined; // its completion enqueues the key
    case 'failed': {
      const failure = classifyNodeAgentError(creation.error);
      // The node-agent went away mid-call (restart, rollout: its stream ends with CANCEL, since
      // the operator never cancels its own CreateVM) or did not answer: retry with backoff; the
      // agent adopts or re-creates the VM under the same id.
      if (failure.kind === 'transient') throw failure.error;
      if (failure.kind === 'resource-exhausted') {
        // The node is fuller than its WaggleNode said (a VM the operator does not count, a
        // capacity change): not the environment's fault. Give the slot back and schedule again.
        ctx.placement.forget(key);
        const message = `node ${node} refused the VM (${failure.message}); scheduling again`;
        await ctx.setStatus(env, status.refusedByNode(env, ctx.now, message, life.expiresAt));
        await ctx.events.record(env, 'Warning', EnvironmentReason.Unschedulable, message);
        return { requeueAfterMs: Math.min(ctx.config.unschedulableRetryMs, life.untilExpiryMs) };
      }
      await fail(
        ctx,
        env,
        EnvironmentReason.VMFailed,
        `the VM did not start: ${failure.message}`,
        life.expiresAt,
      );
      return { requeueAfterMs: life.untilExpiryMs };
    }
    case 'done':
      await ctx.setStatus(env, status.running(env, ctx.now, node, life.expiresAt));
      await ctx.events.record(env, 'Normal', EnvironmentReason.Running, `VM ready on ${node}`);
      return { requeueAfterMs: Math.min(life.untilExpiryMs, ctx.config.verifyEveryMs) };
  }
}
