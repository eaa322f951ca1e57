import { EnvironmentReason, k8sTime, type WaggleEnvironment } from '@waggle/crds';
import { classifyNodeAgentError, VMState } from '@waggle/node-agent/client';
import type { ReconcileResult } from '../../runtime/controller.ts';

import { keyOf } from '../placement.ts';
import type { VmAgent } from '../ports.ts';
import * as status from '../status.ts';
import type { Lifetime, PhaseContext } from './context.ts';
import { fail } from './fail.ts';

/**
 * Running: keep the expiry current, and make sure the VM still exists and runs. The GetVM runs
 * off the worker with a deadline; its completion brings the key back.
 */
export async function verifyRunning(
  ctx: PhaseContext,
  running: WaggleEnvironment,
  node: string,
  agent: VmAgent,
  life: Lifetime,
): Promise<ReconcileResult | undefined> {
  let env = running;
  const uid = env.metadata.uid as string;
  const lastActivityTime = k8sTime(life.lastActivity);
  if (env.status?.expiresAt !== life.expiresAt || env.status?.lastActivityTime !== lastActivityTime) {
    env = await ctx.setStatus(env, { expiresAt: life.expiresAt, lastActivityTime });
  }
  const verify = ctx.calls.verifies.take(
    uid,
    () => agent.getVM({ vmId: uid }, { timeoutMs: ctx.config.agentCallTimeoutMs }),
    () => ctx.enqueue(keyOf(env)),
  );
  if (verify.state === 'started' || verify.state === 'pending') return undefined;
  if (verify.state === 'failed') {
    const failure = classifyNodeAgentError(verify.error);
    if (failure.kind === 'vm-not-found') {
      await fail(ctx, env, EnvironmentReason.VMFailed, `the VM disappeared from ${node}`, life.expiresAt);
      return { requeueAfterMs: life.untilExpiryMs };
    }
    throw failure.error; // retried with backoff; the VM is not judged on a failed call
  }
  const vm = verify.value.vm;
  if (vm?.state === VMState.VM_STATE_SUSPENDED) {
    // Saved on the node while the status said Running (a suspension whose status write was
    // lost): not a failure. Say so; the next use resumes it.
    await ctx.setStatus(
      env,
      status.suspended(env, ctx.now, node, life.expiresAt, {
        ...(vm.suspendedAt ? { suspendedAt: vm.suspendedAt } : {}),
        lastActivityTime,
      }),
    );
    await ctx.events.record(env, 'Normal', EnvironmentReason.Suspended, `the VM on ${node} is suspended`);
    return { requeueAfterMs: life.untilExpiryMs };
  }
  if (vm?.state === VMState.VM_STATE_FAILED) {
    await fail(
      ctx,
      env,
      EnvironmentReason.VMExited,
      `the VM on ${node} stopped: ${vm.message || 'its QEMU exited'}`,
      life.expiresAt,
    );
    return { requeueAfterMs: life.untilExpiryMs };
  }
  return { requeueAfterMs: Math.min(life.untilExpiryMs, ctx.config.verifyEveryMs) };
}
