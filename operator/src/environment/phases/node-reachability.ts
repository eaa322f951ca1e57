import { EnvironmentConditionType, EnvironmentReason, type WaggleEnvironment } from '@waggle/crds';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { getCondition } from '../conditions.ts';
import * as status from '../status.ts';
import { type Lifetime, type PhaseContext, seconds } from './context.ts';
import { fail } from './fail.ts';

/**
 * The environment's node has not heartbeated past the stale window. Its VM is most likely fine
 * (an agent restart, a slow rollout, an apiserver or network blip): keep it, say so in
 * NodeReachable=False, and wait. Only past the node-lost grace does the environment fail.
 */
export async function nodeUnreachable(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  node: string,
  unreachableMs: number,
  life: Lifetime,
): Promise<ReconcileResult> {
  const graceMs = ctx.config.nodeLostGraceMs;
  const silentMs = unreachableMs + ctx.config.nodeStaleAfterMs;
  if (unreachableMs >= graceMs) {
    await fail(
      ctx,
      env,
      EnvironmentReason.NodeLost,
      `node ${node} sent no heartbeat for ${seconds(silentMs)} (node-lost grace ${seconds(graceMs)}); ` +
        'the environment is lost, and its VM is destroyed if the node comes back',
      life.expiresAt,
    );
    return { requeueAfterMs: life.untilExpiryMs };
  }
  const wasReachable = !isMarkedUnreachable(env);
  const message =
    `node ${node} stopped heartbeating; the VM is kept and the environment recovers when ` +
    `the node reports again (it fails as NodeLost after ${seconds(graceMs)} unreachable)`;
  await ctx.setStatus(env, status.nodeUnreachable(env, ctx.now, message, life.expiresAt));
  if (wasReachable) await ctx.events.record(env, 'Warning', EnvironmentReason.NodeUnreachable, message);
  // Node events bring the key back when heartbeats return; poll too (no call is made).
  return {
    requeueAfterMs: Math.max(
      1_000,
      Math.min(graceMs - unreachableMs, life.untilExpiryMs, ctx.config.verifyEveryMs),
    ),
  };
}

export function isMarkedUnreachable(env: WaggleEnvironment): boolean {
  return getCondition(env.status?.conditions, EnvironmentConditionType.NodeReachable)?.status === 'False';
}

/** The node heartbeats again: NodeReachable=True (and Ready again if the VM was running). */
export async function nodeReachableAgain(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  node: string,
): Promise<void> {
  await ctx.setStatus(env, status.nodeReachableAgain(env, ctx.now, node));
  await ctx.events.record(env, 'Normal', EnvironmentReason.NodeReachable, `node ${node} heartbeats again`);
}
