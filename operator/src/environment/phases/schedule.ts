import { EnvironmentConditionType, EnvironmentReason, type WaggleEnvironment } from '@waggle/crds';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { getCondition } from '../conditions.ts';
import { keyOf } from '../placement.ts';
import * as status from '../status.ts';
import { bindWarm } from './bind-warm.ts';
import { boot } from './boot.ts';
import type { Lifetime, PhaseContext } from './context.ts';

/** Pending (no node yet): place the environment on a node, or say why none fits. */
export async function schedule(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  life: Lifetime,
): Promise<ReconcileResult | undefined> {
  const result = await ctx.placement.place(env);
  if ('reason' in result) {
    ctx.onSchedulingFailure();
    const wasUnschedulable =
      getCondition(env.status?.conditions, EnvironmentConditionType.Scheduled)?.reason ===
      EnvironmentReason.Unschedulable;
    await ctx.setStatus(env, status.unschedulable(env, ctx.now, result.reason, life.expiresAt));
    if (!wasUnschedulable)
      await ctx.events.record(env, 'Warning', EnvironmentReason.Unschedulable, result.reason);
    return { requeueAfterMs: Math.min(ctx.config.unschedulableRetryMs, life.untilExpiryMs) };
  }
  const endpoint = result.pool ? ctx.health.endpoint(result.node) : undefined;
  const agent = endpoint ? ctx.agents.for(endpoint, result.node) : undefined;
  const bindTried = Boolean(agent && result.pool);
  if (agent && result.pool) {
    const bound = await bindWarm(ctx, env, result.node, result.pool, agent, life);
    if (bound) return bound;
  }
  let written: WaggleEnvironment;
  try {
    written = await ctx.setStatus(env, {
      ...status.scheduled(env, ctx.now, result.node, life.expiresAt),
      pool: result.pool, // the warm pool its CreateVM names (unset: none matches)
    });
  } catch (err) {
    // Not written: give the slot back — unless a warm bind was tried there, whose VM may exist:
    // the retry then goes to the same node (Placement keeps the assumption for a while).
    if (!bindTried) ctx.placement.forget(keyOf(env));
    throw err;
  }
  await ctx.events.record(env, 'Normal', EnvironmentReason.Scheduled, `Assigned to ${result.node}`);
  // The warm bind did not finish at once (or failed): with the placement stored, go on with its
  // call instead of waiting for the watch to bring the written object back.
  if (agent) return boot(ctx, written, result.node, agent, life);
  return { requeueAfterMs: Math.min(life.untilExpiryMs, ctx.config.verifyEveryMs) };
}
