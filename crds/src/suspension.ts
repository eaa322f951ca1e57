import { EnvironmentConditionType, EnvironmentReason, type WaggleEnvironment } from './environment.ts';

/**
 * Where an environment stands with suspend on idle (ADR 0014): `suspended` (phase Suspended: the
 * VM's state is on its node's disk and no guest runs), `suspending` (phase Running, Ready=False
 * with reason Suspended: the operator is saving it), or undefined. A caller that needs the guest
 * waits through both: the next activity resumes it.
 */
export function suspension(env: WaggleEnvironment): 'suspended' | 'suspending' | undefined {
  const phase = env.status?.phase;
  if (phase === 'Suspended') return 'suspended';
  if (phase !== 'Running') return undefined;
  const ready = env.status?.conditions?.find((c) => c.type === EnvironmentConditionType.Ready);
  return ready?.status === 'False' && ready.reason === EnvironmentReason.Suspended ? 'suspending' : undefined;
}
