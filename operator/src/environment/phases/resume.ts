import { EnvironmentReason, k8sTime, type WaggleEnvironment } from '@waggle/crds';
import { classifyNodeAgentError } from '@waggle/node-agent/client';
import type { ReconcileResult } from '../../runtime/controller.ts';

import { keyOf } from '../placement.ts';
import type { VmAgent } from '../ports.ts';
import * as status from '../status.ts';
import type { Lifetime, PhaseContext } from './context.ts';
import { fail } from './fail.ts';

/**
 * Whether `env` (Suspended) was used after its suspension: its last activity is later than the
 * activity the suspension judged idle (status.lastActivityTime, written when it began; earlier
 * than suspendedAt, so a use while the VM was being saved counts too).
 */
export function usedSinceSuspension(env: WaggleEnvironment, lastActivity: Date): boolean {
  const judged = Date.parse(env.status?.lastActivityTime ?? env.status?.suspendedAt ?? '');
  return Number.isNaN(judged) || lastActivity.getTime() > judged;
}

/**
 * Suspended: the VM's state is on its node's disk and no guest runs. Activity since the
 * suspension (the gateway records it at once when a tool call finds the environment suspended)
 * resumes it: ResumeVM off the worker, then Running with resumedAt and lastResumeMs. A failed
 * resume says why in status.message and is tried again with backoff.
 */
export async function resumeOnActivity(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  node: string,
  agent: VmAgent,
  life: Lifetime,
): Promise<ReconcileResult | undefined> {
  const uid = env.metadata.uid as string;
  // A SuspendVM result not taken (a repeated call from a lagging view) is of no use any more.
  ctx.calls.suspends.forget(uid);
  if (!usedSinceSuspension(env, life.lastActivity) && !ctx.calls.resumes.inFlight(uid)) {
    if (env.status?.expiresAt !== life.expiresAt) await ctx.setStatus(env, { expiresAt: life.expiresAt });
    return { requeueAfterMs: life.untilExpiryMs };
  }
  const waitMs = ctx.resumeRetry.waitMs(uid, ctx.now.getTime());
  if (waitMs > 0) return { requeueAfterMs: waitMs };
  const call = ctx.calls.resumes.take(
    uid,
    () => agent.resumeVM({ vmId: uid }, { timeoutMs: ctx.config.createVMTimeoutMs }),
    () => ctx.enqueue(keyOf(env)),
  );
  switch (call.state) {
    case 'started':
      // After a failure the message keeps saying why until a resume succeeds.
      if (!ctx.resumeRetry.failing(uid))
        await ctx.setStatus(env, status.resuming(env, ctx.now, node, life.expiresAt));
      return undefined;
    case 'pending':
      return undefined; // its completion enqueues the key
    case 'failed': {
      const failure = classifyNodeAgentError(call.error);
      if (failure.kind === 'vm-not-found' || failure.kind === 'vm-exited') {
        ctx.resumeRetry.clear(uid);
        const [reason, message] =
          failure.kind === 'vm-not-found'
            ? [EnvironmentReason.VMFailed, `the suspended VM is gone from ${node}`]
            : [EnvironmentReason.VMExited, `the VM on ${node} did not resume: ${failure.message}`];
        await fail(ctx, env, reason, message, life.expiresAt);
        return { requeueAfterMs: life.untilExpiryMs };
      }
      const retryMs = ctx.resumeRetry.failed(uid, ctx.now.getTime());
      const before = env.status?.message;
      const next = await ctx.setStatus(
        env,
        status.resuming(env, ctx.now, node, life.expiresAt, failure.message),
      );
      if (next.status?.message !== before)
        await ctx.events.record(env, 'Warning', 'ResumeFailed', next.status?.message ?? failure.message);
      return { requeueAfterMs: retryMs };
    }
    case 'done': {
      const resumeMs = call.value.resumeMs;
      const written = await ctx
        .setStatus(
          env,
          status.resumed(env, ctx.now, node, resumeMs, k8sTime(life.lastActivity), life.expiresAt),
        )
        .catch((err: unknown) => {
          ctx.calls.resumes.restore(uid, call); // e.g. a conflict: the next pass writes it
          throw err;
        });
      ctx.written.note(written);
      ctx.resumeRetry.clear(uid);
      await ctx.events.record(env, 'Normal', 'Resumed', `VM resumed on ${node} in ${resumeMs} ms`);
      return { requeueAfterMs: Math.min(life.untilExpiryMs, ctx.config.verifyEveryMs) };
    }
  }
}
