import { EnvironmentReason, type WaggleEnvironment } from '@waggle/crds';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { keyOf } from '../placement.ts';
import type { VmAgent } from '../ports.ts';
import * as status from '../status.ts';
import { createdStatus, createVM } from './boot.ts';
import type { Lifetime, PhaseContext } from './context.ts';

/**
 * How long a pass waits for a warm bind (a few milliseconds on the node) before it records the
 * placement as Scheduled and lets the call go on off the worker: the node had no warm VM left
 * and restores or boots one instead (seconds), or it does not answer.
 */
export const WARM_BIND_WAIT_MS = 1_000;

/**
 * A new environment placed where a warm VM of its pool waits: bind it and write Running in one
 * status write — no Scheduled write before the call (docs/adr/0014, "The create path").
 *
 * Returns undefined when the bind did not finish in `warmBindWaitMs` (WARM_BIND_WAIT_MS) or
 * failed: the caller then records Scheduled and goes on as for any create (the call's result, or
 * its completion, is taken by `boot`). Should this operator stop between the bind and the write,
 * the placement is not recorded: a new leader places the environment again — on the same node
 * CreateVM returns the bound VM (same vm id); on another node the orphan collector destroys the
 * first VM once the environment's status names the other node.
 */
export async function bindWarm(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  node: string,
  pool: string,
  agent: VmAgent,
  life: Lifetime,
): Promise<ReconcileResult | undefined> {
  const uid = env.metadata.uid as string;
  const key = keyOf(env);
  const first = ctx.calls.creates.take(uid, createVM(ctx, env, agent, pool), () => ctx.enqueue(key), node);
  if (first.state !== 'started') {
    // An earlier pass's call (in flight, or finished but not written): `boot` takes it.
    if (first.state !== 'pending') ctx.calls.creates.restore(uid, first);
    return undefined;
  }
  const bound = await ctx.calls.creates.wait(uid, ctx.config.warmBindWaitMs);
  if (bound?.state !== 'done') {
    if (bound?.state === 'failed') ctx.calls.creates.restore(uid, bound);
    return undefined;
  }
  const scheduled = status.scheduled(env, ctx.now, node, life.expiresAt);
  const placed = { ...env, status: { ...env.status, ...scheduled } } as WaggleEnvironment;
  // A failed write throws; the retry is pinned to this node (the call's tag) and takes this
  // result instead of calling again.
  const written = await ctx
    .setStatus(env, {
      ...scheduled,
      ...status.running(placed, ctx.now, node, life.expiresAt),
      pool,
      ...createdStatus(bound.value, life),
    })
    .catch((err: unknown) => {
      ctx.calls.creates.restore(uid, bound);
      throw err;
    });
  // The call's completion queued the key; until the cache shows this write, a pass would see
  // the environment unplaced.
  ctx.written.note(written);
  await ctx.events.record(env, 'Normal', EnvironmentReason.Scheduled, `Assigned to ${node}`);
  await ctx.events.record(
    written,
    'Normal',
    EnvironmentReason.Running,
    `VM ready on ${node} (warm pool ${pool})`,
  );
  return { requeueAfterMs: Math.min(life.untilExpiryMs, ctx.config.verifyEveryMs) };
}
