import { parseDuration } from './duration.ts';
import type { WaggleEnvironment } from './environment.ts';
import { LAST_ACTIVITY_ANNOTATION } from './group.ts';

export interface Deadlines {
  /** When the environment was last used (or started/created if never). */
  lastActivity: Date;
  idleDeadline: Date;
  absoluteDeadline?: Date;
  /** The earlier of the two: when the operator deletes the environment. */
  expiresAt: Date;
  reason: 'IdleTimeout' | 'MaxLifetime';
}

const parseTime = (s: string | undefined): number | undefined => {
  if (!s) return undefined;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : t;
};

export function deadlines(env: WaggleEnvironment): Deadlines {
  const created = parseTime(env.metadata.creationTimestamp) ?? Date.now();
  const activity = Math.max(
    parseTime(env.metadata.annotations?.[LAST_ACTIVITY_ANNOTATION]) ?? 0,
    parseTime(env.status?.lastActivityTime) ?? 0,
    parseTime(env.status?.startedAt) ?? 0,
    created,
  );
  const idle = activity + parseDuration(env.spec.idleTimeout);
  const absolute = env.spec.maxLifetime ? created + parseDuration(env.spec.maxLifetime) : undefined;
  const expires = absolute !== undefined && absolute < idle ? absolute : idle;
  return {
    lastActivity: new Date(activity),
    idleDeadline: new Date(idle),
    ...(absolute !== undefined ? { absoluteDeadline: new Date(absolute) } : {}),
    expiresAt: new Date(expires),
    reason: absolute !== undefined && absolute < idle ? 'MaxLifetime' : 'IdleTimeout',
  };
}

/** RFC 3339 without fractional seconds, as Kubernetes writes metav1.Time. */
export const k8sTime = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z');
