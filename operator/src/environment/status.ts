import {
  EnvironmentConditionType,
  EnvironmentReason,
  k8sTime,
  type WaggleEnvironment,
  type WaggleEnvironmentStatus,
} from '@waggle/crds';
import { statusDiffers } from '../runtime/status-diff.ts';
import { getCondition, setCondition } from './conditions.ts';
import { type ImagePullState, type PulledImageFacts, STEP_TEXT } from './image-pulls.ts';

/**
 * Status builders: each names one state an environment can enter and returns the status fields
 * that say so (phase, message, conditions). Pure functions of the environment, the clock and the
 * facts of the transition, so the phase handlers only decide *which* state comes next.
 */
export type StatusPatch = Partial<WaggleEnvironmentStatus>;

const { Ready, Scheduled, NodeReachable, ImageReady } = EnvironmentConditionType;
const R = EnvironmentReason;

type ConditionChange = { type: string; status: 'True' | 'False'; reason: string; message: string };

function conditions(env: WaggleEnvironment, now: Date, ...changes: ConditionChange[]) {
  let list = env.status?.conditions;
  for (const c of changes) list = setCondition(list, c, now);
  return list;
}

export function unschedulable(
  env: WaggleEnvironment,
  now: Date,
  reason: string,
  expiresAt: string,
): StatusPatch {
  return {
    phase: 'Pending',
    expiresAt,
    message: reason,
    conditions: conditions(env, now, {
      type: Scheduled,
      status: 'False',
      reason: R.Unschedulable,
      message: reason,
    }),
  };
}

export function scheduled(env: WaggleEnvironment, now: Date, node: string, expiresAt: string): StatusPatch {
  return {
    phase: 'Scheduled',
    nodeName: node,
    expiresAt,
    message: `scheduled to ${node}`,
    conditions: conditions(env, now, {
      type: Scheduled,
      status: 'True',
      reason: R.Scheduled,
      message: `assigned to node ${node}`,
    }),
  };
}

/**
 * Creating the VM on the node. With spec.image the node first pulls the image (seconds to
 * minutes, once per image and node): `pull` says where that is, and ImageReady says it too.
 */
export function booting(
  env: WaggleEnvironment,
  now: Date,
  node: string,
  expiresAt: string,
  pull?: ImagePullState,
): StatusPatch {
  const image = env.spec.image;
  if (!image) {
    return {
      phase: 'Booting',
      expiresAt,
      message: `booting a ${env.spec.runtime} microVM on ${node}`,
      conditions: conditions(env, now, {
        type: Ready,
        status: 'False',
        reason: R.Booting,
        message: `creating the VM on ${node}`,
      }),
    };
  }
  if (pull?.image) {
    return {
      phase: 'Booting',
      expiresAt,
      imageDigest: pull.image.digest,
      message: `booting a ${env.spec.runtime} microVM on ${node} from image ${image}`,
      conditions: conditions(env, now, imageReady(image, node, pull.image), {
        type: Ready,
        status: 'False',
        reason: R.Booting,
        message: `creating the VM on ${node}`,
      }),
    };
  }
  const step = pull?.step ? STEP_TEXT[pull.step] : 'pulling it unless the node has it';
  return {
    phase: 'Booting',
    expiresAt,
    message: `pulling image ${image} on ${node}: ${step}`,
    conditions: conditions(
      env,
      now,
      { type: ImageReady, status: 'False', reason: R.PullingImage, message: `${node}: ${step}` },
      { type: Ready, status: 'False', reason: R.Booting, message: `pulling the image on ${node}` },
    ),
  };
}

function imageReady(image: string, node: string, facts: PulledImageFacts): ConditionChange {
  return {
    type: ImageReady,
    status: 'True',
    reason: R.ImagePulled,
    message: facts.cached
      ? `${image} is ${facts.digest}, already on ${node}`
      : `${image} is ${facts.digest}, pulled to ${node} in ${(facts.ms / 1000).toFixed(1)} s`,
  };
}

export function running(
  env: WaggleEnvironment,
  now: Date,
  node: string,
  expiresAt: string,
  image?: PulledImageFacts,
): StatusPatch {
  // A node-agent without PullImage says nothing of the pull: its CreateVM did it.
  const pulled =
    env.spec.image && !image && getCondition(env.status?.conditions, ImageReady)?.status !== 'True'
      ? [
          {
            type: ImageReady,
            status: 'True' as const,
            reason: R.ImagePulled,
            message: `${env.spec.image} is on ${node}`,
          },
        ]
      : [];
  return {
    phase: 'Running',
    vmId: env.metadata.uid as string,
    startedAt: k8sTime(now),
    expiresAt,
    ...(image ? { imageDigest: image.digest } : {}),
    message: `running on ${node}`,
    conditions: conditions(
      env,
      now,
      ...(image && env.spec.image ? [imageReady(env.spec.image, node, image)] : pulled),
      {
        type: Ready,
        status: 'True',
        reason: R.Running,
        message: 'the guest is ready',
      },
    ),
  };
}

/**
 * Idle with idleAction Suspend: the VM is being saved (phase stays Running until it is).
 * `lastActivityTime` is the activity the suspension judged idle; any later activity resumes it.
 */
export function suspending(
  env: WaggleEnvironment,
  now: Date,
  node: string,
  lastActivityTime: string,
  expiresAt: string,
): StatusPatch {
  const message = `suspending the VM on ${node}: idle for ${env.spec.idleTimeout}`;
  return {
    lastActivityTime,
    expiresAt,
    message,
    conditions: conditions(env, now, { type: Ready, status: 'False', reason: R.Suspended, message }),
  };
}

/** SuspendVM failed: the VM still runs (Ready again); the operator tries again with backoff. */
export function suspendFailed(
  env: WaggleEnvironment,
  now: Date,
  node: string,
  why: string,
  expiresAt: string,
): StatusPatch {
  return {
    expiresAt,
    message: `running on ${node}; suspending it failed (${why}), trying again`,
    conditions: conditions(env, now, {
      type: Ready,
      status: 'True',
      reason: R.Running,
      message: 'the guest is ready',
    }),
  };
}

/** The VM is saved on its node; `suspendedAt` defaults to now. */
export function suspended(
  env: WaggleEnvironment,
  now: Date,
  node: string,
  expiresAt: string,
  opts: { suspendedAt?: string; lastActivityTime?: string } = {},
): StatusPatch {
  const message = `suspended on ${node} after ${env.spec.idleTimeout} idle; the next use resumes it`;
  return {
    phase: 'Suspended',
    suspendedAt: opts.suspendedAt ?? k8sTime(now),
    ...(opts.lastActivityTime ? { lastActivityTime: opts.lastActivityTime } : {}),
    expiresAt,
    message,
    conditions: conditions(env, now, { type: Ready, status: 'False', reason: R.Suspended, message }),
  };
}

/** Activity after the suspension: ResumeVM is running (or `failure` says why it failed). */
export function resuming(
  env: WaggleEnvironment,
  now: Date,
  node: string,
  expiresAt: string,
  failure?: string,
): StatusPatch {
  const message = failure
    ? `resuming the VM on ${node} failed (${failure}); trying again`
    : `resuming the VM on ${node}`;
  return {
    expiresAt,
    message,
    conditions: conditions(env, now, { type: Ready, status: 'False', reason: R.Suspended, message }),
  };
}

export function resumed(
  env: WaggleEnvironment,
  now: Date,
  node: string,
  resumeMs: number,
  lastActivityTime: string,
  expiresAt: string,
): StatusPatch {
  return {
    phase: 'Running',
    resumedAt: k8sTime(now),
    lastResumeMs: resumeMs,
    lastActivityTime,
    expiresAt,
    message: `running on ${node} (resumed in ${resumeMs} ms)`,
    conditions: conditions(env, now, {
      type: Ready,
      status: 'True',
      reason: R.Running,
      message: 'the guest is ready',
    }),
  };
}

/** The node refused the VM for lack of room: back to Pending, without a node, to be placed again. */
export function refusedByNode(
  env: WaggleEnvironment,
  now: Date,
  message: string,
  expiresAt: string,
): StatusPatch {
  return {
    phase: 'Pending',
    nodeName: undefined,
    expiresAt,
    message,
    conditions: conditions(
      env,
      now,
      { type: Scheduled, status: 'False', reason: R.Unschedulable, message },
      { type: Ready, status: 'False', reason: R.Unschedulable, message },
    ),
  };
}

export function failed(
  env: WaggleEnvironment,
  now: Date,
  reason: string,
  message: string,
  expiresAt: string,
): StatusPatch {
  return {
    phase: 'Failed',
    expiresAt,
    message,
    conditions: conditions(
      env,
      now,
      ...(reason === R.ImagePullFailed
        ? [{ type: ImageReady, status: 'False' as const, reason, message }]
        : []),
      { type: Ready, status: 'False', reason, message },
    ),
  };
}

export function nodeUnreachable(
  env: WaggleEnvironment,
  now: Date,
  message: string,
  expiresAt: string,
): StatusPatch {
  return {
    expiresAt,
    message,
    conditions: conditions(
      env,
      now,
      { type: NodeReachable, status: 'False', reason: R.NodeUnreachable, message },
      { type: Ready, status: 'False', reason: R.NodeUnreachable, message },
    ),
  };
}

export function nodeReachableAgain(env: WaggleEnvironment, now: Date, node: string): StatusPatch {
  const isRunning = env.status?.phase === 'Running';
  const reachable: ConditionChange = {
    type: NodeReachable,
    status: 'True',
    reason: R.NodeReachable,
    message: `node ${node} heartbeats again`,
  };
  const ready: ConditionChange = {
    type: Ready,
    status: 'True',
    reason: R.Running,
    message: 'the guest is ready',
  };
  if (env.status?.phase === 'Suspended') {
    const message = `suspended on ${node}; the next use resumes it`;
    return {
      message,
      conditions: conditions(env, now, reachable, {
        type: Ready,
        status: 'False',
        reason: R.Suspended,
        message,
      }),
    };
  }
  return {
    message: isRunning ? `running on ${node}` : `waiting for the VM on ${node}`,
    conditions: isRunning ? conditions(env, now, reachable, ready) : conditions(env, now, reachable),
  };
}

export function expired(env: WaggleEnvironment, now: Date, why: string): StatusPatch {
  return {
    conditions: conditions(env, now, {
      type: Ready,
      status: 'False',
      reason: R.Expired,
      message: `expired: ${why} reached`,
    }),
  };
}

export function terminating(env: WaggleEnvironment, now: Date): StatusPatch {
  return {
    phase: 'Terminating',
    message: 'destroying the VM',
    conditions: conditions(env, now, {
      type: Ready,
      status: 'False',
      reason: R.Terminating,
      message: 'deletion in progress',
    }),
  };
}

/** The full status to write, or undefined when it would not change anything. */
export function nextStatus(env: WaggleEnvironment, patch: StatusPatch): WaggleEnvironmentStatus | undefined {
  const status: WaggleEnvironmentStatus = {
    ...env.status,
    ...patch,
    observedGeneration: env.metadata.generation ?? 0,
  };
  // Key order aside (the apiserver sorts them): an unchanged status is not written again.
  return statusDiffers(env.status, status) ? status : undefined;
}
