import { EnvironmentReason, type WaggleEnvironment } from '@waggle/crds';
import { classifyNodeAgentError } from '@waggle/node-agent/client';
import type { ReconcileResult } from '../../runtime/controller.ts';

import { keyOf } from '../placement.ts';
import * as status from '../status.ts';
import { FINALIZER } from '../store.ts';
import type { PhaseContext } from './context.ts';

/**
 * However late a destroy starts (a CreateVM in flight delays it up to its own deadline; a new
 * leader takes over), its failures are retried at least this long (capped by destroyTimeout)
 * before the environment is released with its VM possibly left behind.
 */
const MIN_DESTROY_RETRY_MS = 30_000;

const ORPHAN_HINT =
  "If the node comes back, the operator destroys the orphaned VM (id = this environment's UID) there.";

/**
 * Deletion: destroy the VM on its node, then release the finalizer. How long the node may stay
 * unreachable is measured from metadata.deletionTimestamp, so the deadline holds across
 * operator restarts and leader changes (level-based: nothing about it lives only in memory).
 */
export async function finalize(
  ctx: PhaseContext,
  env: WaggleEnvironment,
): Promise<ReconcileResult | undefined> {
  const uid = env.metadata.uid as string;
  if (!env.metadata.finalizers?.includes(FINALIZER)) return undefined;
  // No placement recorded, but a CreateVM ran (a warm bind whose Running write never came): its
  // node may hold the VM.
  const node = env.status?.nodeName ?? ctx.calls.creates.tagOf(uid);
  if (env.status?.phase !== 'Terminating') {
    env = await ctx.setStatus(env, status.terminating(env, ctx.now)).catch(() => env);
    await ctx.events.record(
      env,
      'Normal',
      EnvironmentReason.Terminating,
      node ? `Destroying the VM on ${node}` : 'Deleting (no VM was started)',
    );
  }
  // A CreateVM (or ResumeVM, SuspendVM) still in flight would race the destroy and could leave a
  // VM behind; its completion (bounded by its deadline) enqueues this key again.
  const { creates, suspends, resumes } = ctx.calls;
  if (creates.inFlight(uid) || suspends.inFlight(uid) || resumes.inFlight(uid))
    return { requeueAfterMs: 5_000 };
  if (node) {
    const released = await destroyOnNode(ctx, env, node);
    if (released !== true) return released;
  }
  ctx.calls.creates.forget(uid);
  ctx.imagePulls.forget(uid);
  ctx.calls.verifies.forget(uid);
  ctx.calls.destroys.forget(uid);
  ctx.calls.suspends.forget(uid);
  ctx.calls.resumes.forget(uid);
  ctx.suspendRetry.clear(uid);
  ctx.resumeRetry.clear(uid);
  ctx.written.forget(uid);
  ctx.failedReleased.delete(uid);
  ctx.destroyFailingSince.delete(uid);
  ctx.placement.forget(keyOf(env));
  await ctx.store.setFinalizer(env, false);
  // Capacity freed: let pending environments try again.
  for (const e of ctx.listEnvs())
    if (!e.status?.nodeName && !e.metadata.deletionTimestamp) ctx.enqueue(keyOf(e));
  return undefined;
}

/**
 * Destroys the environment's VM on its node. Returns true when the finalizer may be released:
 * the VM is gone, or the node could not be reached (or was not registered) for destroyTimeoutMs
 * since the deletion — and failed destroys were retried for MIN_DESTROY_RETRY_MS —, which is
 * recorded as an Event. Otherwise returns when to try again. The deletion time is the
 * apiserver's; a skewed operator clock can only shorten the wait to the retry window.
 */
async function destroyOnNode(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  node: string,
): Promise<true | ReconcileResult> {
  const uid = env.metadata.uid as string;
  const limitMs = ctx.config.destroyTimeoutMs;
  const deletedAt = Date.parse(env.metadata.deletionTimestamp ?? '');
  const waitedMs = Number.isNaN(deletedAt) ? 0 : Math.max(0, ctx.now.getTime() - deletedAt);
  const limit = `${Math.round(limitMs / 1000)} s`;
  const endpoint = ctx.health.endpoint(node);
  if (!endpoint) {
    // The WaggleNode is gone (deleted, or its agent not re-registered yet): wait for it, bounded.
    if (waitedMs < limitMs) return { requeueAfterMs: Math.min(5_000, limitMs - waitedMs) };
    await ctx.events.record(
      env,
      'Warning',
      'VMNotDestroyed',
      `node ${node} has not been registered for ${limit} since the deletion; releasing the environment. ${ORPHAN_HINT}`,
    );
    return true;
  }
  const agent = ctx.agents.for(endpoint, node);
  const r = ctx.calls.destroys.take(
    uid,
    () => agent.destroyVM({ vmId: uid }, { timeoutMs: ctx.config.agentCallTimeoutMs }),
    () => ctx.enqueue(keyOf(env)),
  );
  if (r.state === 'started' || r.state === 'pending') {
    return { requeueAfterMs: ctx.config.agentCallTimeoutMs + 1_000 }; // its completion enqueues the key sooner
  }
  if (r.state === 'done') return true;
  const failingSince = ctx.destroyFailingSince.get(uid) ?? ctx.now.getTime();
  ctx.destroyFailingSince.set(uid, failingSince);
  const retriedMs = ctx.now.getTime() - failingSince;
  if (waitedMs < limitMs || retriedMs < Math.min(MIN_DESTROY_RETRY_MS, limitMs)) throw r.error; // retry with backoff
  await ctx.events.record(
    env,
    'Warning',
    'VMNotDestroyed',
    `could not destroy the VM on ${node} for ${limit} since the deletion ` +
      `(${classifyNodeAgentError(r.error).message}); releasing the environment. ${ORPHAN_HINT}`,
  );
  return true;
}
