import { EnvironmentReason, k8sTime, suspension, type WaggleEnvironment } from '@waggle/crds';
import { classifyNodeAgentError } from '@waggle/node-agent/client';
import type { ReconcileResult } from '../../runtime/controller.ts';

import { keyOf } from '../placement.ts';
import type { VmAgent } from '../ports.ts';
import * as status from '../status.ts';
import type { Lifetime, PhaseContext } from './context.ts';
import { fail } from './fail.ts';

/**
 * Running and idle past its timeout with idleAction Suspend (ADR 0014): save the VM on its node
 * (SuspendVM, off the worker) and go Suspended. While the call runs the environment says so
 * (Ready=False, reason Suspended, phase still Running): the gateway waits for the resume instead
 * of calling a VM that is being saved, and its activity — later than the activity this suspension
 * judged idle, kept in status.lastActivityTime — resumes the VM once it is saved.
 */
export async function suspendIdle(
  ctx: PhaseContext,
  running: WaggleEnvironment,
  node: string,
  agent: VmAgent,
  life: Lifetime,
): Promise<ReconcileResult | undefined> {
  let env = running;
  const uid = env.metadata.uid as string;
  if (suspension(env) !== 'suspending') {
    env = await ctx.setStatus(
      env,
      status.suspending(env, ctx.now, node, k8sTime(life.lastActivity), life.expiresAt),
    );
  }
  const call = ctx.calls.suspends.take(
    uid,
    () => agent.suspendVM({ vmId: uid }, { timeoutMs: ctx.config.createVMTimeoutMs }),
    () => ctx.enqueue(keyOf(env)),
  );
  switch (call.state) {
    case 'started':
    case 'pending':
      return undefined; // its completion enqueues the key
    case 'failed': {
      const failure = classifyNodeAgentError(call.error);
      if (failure.kind === 'vm-not-found' || failure.kind === 'vm-exited') {
        const [reason, message] =
          failure.kind === 'vm-not-found'
            ? [EnvironmentReason.VMFailed, `the VM disappeared from ${node}`]
            : [EnvironmentReason.VMExited, `the VM on ${node} stopped: ${failure.message}`];
        await fail(ctx, env, reason, message, life.expiresAt);
        return { requeueAfterMs: life.untilExpiryMs };
      }
      // The VM still runs: ready again, and the suspension is tried again after a backoff.
      const retryMs = ctx.suspendRetry.failed(uid, ctx.now.getTime());
      await ctx.setStatus(env, status.suspendFailed(env, ctx.now, node, failure.message, life.expiresAt));
      await ctx.events.record(
        env,
        'Warning',
        'SuspendFailed',
        `could not suspend the idle VM on ${node} (${failure.message}); trying again in ${Math.round(retryMs / 1000)} s`,
      );
      return { requeueAfterMs: retryMs };
    }
    case 'done': {
      ctx.suspendRetry.clear(uid);
      const vm = call.value.vm;
      const suspendedAt = vm?.suspendedAt ? { suspendedAt: vm.suspendedAt } : {};
      const written = await ctx
        .setStatus(env, status.suspended(env, ctx.now, node, life.expiresAt, suspendedAt))
        .catch((err: unknown) => {
          ctx.calls.suspends.restore(uid, call); // e.g. a conflict: the next pass writes it
          throw err;
        });
      ctx.written.note(written);
      const mib = Math.round(Number(call.value.stateBytes) / 2 ** 20);
      await ctx.events.record(
        env,
        'Normal',
        EnvironmentReason.Suspended,
        `VM suspended on ${node} after ${env.spec.idleTimeout} idle (${mib} MiB saved in ${call.value.suspendMs} ms)`,
      );
      // A later activity (the update brings the key back) resumes it; otherwise its lifetime ends it.
      return { requeueAfterMs: life.untilExpiryMs };
    }
  }
}
