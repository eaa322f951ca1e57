import { EnvironmentConditionType, EnvironmentReason, k8sTime, type WaggleEnvironment } from '@waggle/crds';
import { classifyNodeAgentError, toProtoEgress, toProtoRuntime } from '@waggle/node-agent/client';
import { createdFrom } from '../../pool/template.ts';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { getCondition } from '../conditions.ts';
import { pullImageOnNode } from '../image-pulls.ts';

import { keyOf } from '../placement.ts';
import type { VmAgent } from '../ports.ts';
import * as status from '../status.ts';
import type { Lifetime, PhaseContext } from './context.ts';
import { fail } from './fail.ts';

/**
 * How long a create from a warm pool may stay Scheduled before it is reported as Booting
 * (timestamps have whole seconds, so this is at least one).
 */
export const WARM_BIND_GRACE_MS = 2_000;

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
    createVM(ctx, env, agent, env.status?.pool),
    () => ctx.enqueue(key),
    node,
  );
  switch (creation.state) {
    case 'started':
      // From a warm pool the VM is bound in milliseconds: Scheduled → Running, no Booting write.
      if (env.status?.pool) return { requeueAfterMs: WARM_BIND_GRACE_MS };
      await ctx.setStatus(env, status.booting(env, ctx.now, node, life.expiresAt));
      return undefined;
    case 'pending': {
      // Its completion enqueues the key; so does each step of an image pull, said here.
      if (env.spec.image && env.status?.phase === 'Booting') {
        await ctx.setStatus(env, status.booting(env, ctx.now, node, life.expiresAt, ctx.imagePulls.get(uid)));
        return undefined;
      }
      // A pooled create still pending after the grace found no warm VM (the node restores or
      // boots): say Booting after all.
      if (!env.status?.pool || env.status.phase !== 'Scheduled') return undefined;
      const scheduledAt = getCondition(
        env.status.conditions,
        EnvironmentConditionType.Scheduled,
      )?.lastTransitionTime;
      const elapsedMs = scheduledAt ? ctx.now.getTime() - Date.parse(scheduledAt) : Number.POSITIVE_INFINITY;
      const waitMs = WARM_BIND_GRACE_MS - elapsedMs;
      if (waitMs > 0) return { requeueAfterMs: waitMs };
      await ctx.setStatus(env, status.booting(env, ctx.now, node, life.expiresAt));
      return undefined;
    }
    case 'failed': {
      const pull = ctx.imagePulls.get(uid);
      ctx.imagePulls.forget(uid);
      const failure = classifyNodeAgentError(creation.error);
      // The node-agent went away mid-call (restart, rollout: its stream ends with CANCEL, since
      // the operator never cancels its own CreateVM) or did not answer: retry with backoff; the
      // agent adopts or re-creates the VM under the same id.
      if (failure.kind === 'transient') throw failure.error;
      if (failure.kind === 'resource-exhausted') {
        // The node is fuller than its WaggleNode said (a VM the operator does not count, a
        // capacity change): not the environment's fault. Give the slot back and schedule again.
        ctx.placement.forget(key);
        ctx.calls.creates.forget(uid); // no VM there: the next placement is free to go elsewhere
        const message = `node ${node} refused the VM (${failure.message}); scheduling again`;
        await ctx.setStatus(env, status.refusedByNode(env, ctx.now, message, life.expiresAt));
        await ctx.events.record(env, 'Warning', EnvironmentReason.Unschedulable, message);
        return { requeueAfterMs: Math.min(ctx.config.unschedulableRetryMs, life.untilExpiryMs) };
      }
      if (failure.kind === 'image' || pull?.failed) {
        // The node could not pull or run the image: the image's fault, not the VM's.
        await fail(
          ctx,
          env,
          EnvironmentReason.ImagePullFailed,
          `image ${env.spec.image} cannot run on ${node}: ${failure.message}`,
          life.expiresAt,
        );
        return { requeueAfterMs: life.untilExpiryMs };
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
    case 'done': {
      const pull = ctx.imagePulls.get(uid);
      ctx.imagePulls.forget(uid);
      const written = await ctx.setStatus(env, {
        ...status.running(env, ctx.now, node, life.expiresAt, pull?.image),
        ...createdStatus(creation.value, life),
      });
      // A pass from an older view must not start this VM's CreateVM again.
      ctx.written.note(written);
      await ctx.events.record(env, 'Normal', EnvironmentReason.Running, `VM ready on ${node}`);
      return { requeueAfterMs: Math.min(life.untilExpiryMs, ctx.config.verifyEveryMs) };
    }
  }
}

/** The node-agent call that creates the environment's VM (from `pool` when one matches). */
export function createVM(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  agent: VmAgent,
  pool: string | undefined,
) {
  return async () => {
    const imagePullConfig = env.spec.image ? await ctx.pullConfigs?.forEnvironment(env) : undefined;
    if (env.spec.image) {
      // The pull first, as its own call, so that its steps can be told (kubectl, MCP progress).
      const uid = env.metadata.uid as string;
      const key = keyOf(env);
      ctx.imagePulls.forget(uid); // what an earlier attempt (maybe on another node) said
      const image = await pullImageOnNode(
        agent,
        {
          image: env.spec.image,
          runtime: toProtoRuntime(env.spec.runtime),
          ...(imagePullConfig ? { imagePullConfig } : {}),
          // A retried create whose VM exists gets that VM's image (no pull, no moved tag).
          vmId: uid,
        },
        (step) => {
          ctx.imagePulls.step(uid, step);
          ctx.enqueue(key);
        },
        { timeoutMs: ctx.config.createVMTimeoutMs },
      ).catch((err: unknown) => {
        ctx.imagePulls.failed(uid);
        throw err;
      });
      if (image) {
        ctx.imagePulls.done(uid, image);
        ctx.enqueue(key);
      }
    }
    return agent.createVM(
      {
        ...(imagePullConfig ? { imagePullConfig } : {}),
        spec: {
          vmId: env.metadata.uid as string,
          runtime: toProtoRuntime(env.spec.runtime),
          cpus: env.spec.resources.cpus,
          memoryMib: env.spec.resources.memoryMiB,
          diskMib: env.spec.resources.diskMiB,
          egress: toProtoEgress(env.spec.network.egress),
          allowDomains: env.spec.network.allowDomains ?? [],
          image: env.spec.image ?? '',
        },
        pool: pool ?? '',
      },
      { timeoutMs: ctx.config.createVMTimeoutMs },
    );
  };
}

/** status.imageDigest from a CreateVM response, when the VM runs an OCI image. */
function imageDigestOf(response: unknown): { imageDigest?: string } {
  const digest = (response as { vm?: { imageDigest?: string } } | undefined)?.vm?.imageDigest;
  return digest ? { imageDigest: digest } : {};
}

/** What a Running write adds once CreateVM answered: the VM's origin and the activity clock. */
export function createdStatus(response: unknown, life: Lifetime) {
  return {
    createdFrom: createdFrom(response),
    ...imageDigestOf(response),
    // What the first verify would otherwise write at once in a separate update.
    lastActivityTime: k8sTime(life.lastActivity),
  };
}
