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
  // A CreateVM already ran for it (a warm bind whose status write failed): its VM may be on
  // that node, so it is placed there again — whatever the load says now.
  const ran = ctx.calls.creates.tagOf(env.metadata.uid as string);
  const result = ran ? ctx.placement.pin(env, ran) : await ctx.placement.place(env);
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
    // Not written: give the slot back, unless a CreateVM ran there (its tag pins the retry).
    if (!ctx.calls.creates.tagOf(env.metadata.uid as string)) ctx.placement.forget(keyOf(env));
    throw err;
  }
  await ctx.events.record(env, 'Normal', EnvironmentReason.Scheduled, `Assigned to ${result.node}`);
  // The warm bind did not finish at once (or failed): with the placement stored, go on with its
  // call instead of waiting for the watch to bring the written object back.
  if (agent) return boot(ctx, written, result.node, agent, life);
  return { requeueAfterMs: Math.min(life.untilExpiryMs, ctx.config.verifyEveryMs) };
}
