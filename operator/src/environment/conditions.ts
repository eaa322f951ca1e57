import type { Condition, ConditionStatus } from '@waggle/crds';
import { k8sTime } from '@waggle/crds';

/**
 * Sets a condition, keeping `lastTransitionTime` when the status did not change (the standard
 * meta.SetStatusCondition semantics). Returns a new list.
 */
export function setCondition(
  conditions: Condition[] | undefined,
  next: {
    type: string;
    status: ConditionStatus;
    reason: string;
    message: string;
    observedGeneration?: number;
  },
  now: Date = new Date(),
): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const prev = i >= 0 ? list[i] : undefined;
  const cond: Condition = {
    type: next.type,
    status: next.status,
    reason: next.reason,
    message: next.message.slice(0, 32_000),
    lastTransitionTime: prev && prev.status === next.status ? prev.lastTransitionTime : k8sTime(now),
    ...(next.observedGeneration !== undefined ? { observedGeneration: next.observedGeneration } : {}),
  };
  if (i >= 0) list[i] = cond;
  else list.push(cond);
  return list;
}

export function getCondition(conditions: Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
