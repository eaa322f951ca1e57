import { parseDuration } from './duration.ts';
import type { WaggleEnvironment } from './environment.ts';
import { LAST_ACTIVITY_ANNOTATION } from './group.ts';

export interface Deadlines {
  /** When the environment was last used (or started/created if never). */
  lastActivity: Date;
  idleDeadline: Date;
  absoluteDeadline?: Date;
  /**
   * When the operator deletes the environment: the earlier of the two, or — when the idle
   * deadline suspends instead (see suspendAt) and while it is suspended — the maximum lifetime.
   */
  expiresAt: Date;
  reason: 'IdleTimeout' | 'MaxLifetime';
  /**
   * With idleAction Suspend, while its VM runs: the idle deadline, when the operator suspends
   * the VM instead of deleting (set only when it comes before expiresAt).
   */
  suspendAt?: Date;
}

/**
 * Whether the idle timeout suspends the environment's VM rather than deleting it: idleAction
 * Suspend with a maximum lifetime (the CEL rule requires one; without it, the idle timeout
 * deletes), and a VM to suspend (Running, or already Suspended). Any other phase expires as
 * with idleAction Delete.
 */
export function idleSuspends(env: WaggleEnvironment): boolean {
  const phase = env.status?.phase;
  return (
    env.spec.idleAction === 'Suspend' &&
    env.spec.maxLifetime !== undefined &&
    (phase === 'Running' || phase === 'Suspended')
  );
}

const parseTime = (s: string | undefined): number | undefined => {
  if (!s) return undefined;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : t;
};

/**
 * How far ahead of the observer's clock a recorded activity time may be and still count (as
 * now): the writer's clock may run a little fast. A time further ahead is not believed at all —
 * a broken or forged writer (an annotation dated 2099) must not keep an environment alive.
 */
export const MAX_ACTIVITY_CLOCK_SKEW_MS = 60_000;

/** A recorded activity time as the observer may believe it at `now`. */
const believable = (t: number | undefined, now: number): number | undefined =>
  t === undefined || t > now + MAX_ACTIVITY_CLOCK_SKEW_MS ? undefined : Math.min(t, now);

/**
 * When `env` expires, judged at `now` (the observer's clock): activity times in the future are
 * never trusted beyond `now` (see MAX_ACTIVITY_CLOCK_SKEW_MS).
 */
export function deadlines(env: WaggleEnvironment, now: number | Date = Date.now()): Deadlines {
  const at = typeof now === 'number' ? now : now.getTime();
  const created = parseTime(env.metadata.creationTimestamp) ?? at;
  const activity = Math.max(
    believable(parseTime(env.metadata.annotations?.[LAST_ACTIVITY_ANNOTATION]), at) ?? 0,
    believable(parseTime(env.status?.lastActivityTime), at) ?? 0,
    believable(parseTime(env.status?.startedAt), at) ?? 0,
    // A resume is use: its caller waits on it, and the idle time must not count the resume (a
    // resume longer than the idle timeout would otherwise be suspended again at once).
    believable(parseTime(env.status?.resumedAt), at) ?? 0,
    created,
  );
  const idle = activity + parseDuration(env.spec.idleTimeout);
  const absolute = env.spec.maxLifetime ? created + parseDuration(env.spec.maxLifetime) : undefined;
  const base = {
    lastActivity: new Date(activity),
    idleDeadline: new Date(idle),
    ...(absolute !== undefined ? { absoluteDeadline: new Date(absolute) } : {}),
  };
  if (absolute !== undefined && idleSuspends(env)) {
    // Only the maximum lifetime deletes; the idle deadline suspends a running VM.
    const suspends = env.status?.phase === 'Running' && idle < absolute;
    return {
      ...base,
      expiresAt: new Date(absolute),
      reason: 'MaxLifetime',
      ...(suspends ? { suspendAt: new Date(idle) } : {}),
    };
  }
  const expires = absolute !== undefined && absolute < idle ? absolute : idle;
  return {
    ...base,
    expiresAt: new Date(expires),
    reason: absolute !== undefined && absolute < idle ? 'MaxLifetime' : 'IdleTimeout',
  };
}

/** RFC 3339 without fractional seconds, as Kubernetes writes metav1.Time. */
export const k8sTime = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z');
