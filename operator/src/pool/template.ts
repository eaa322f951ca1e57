import { createHash } from 'node:crypto';
import type { PoolTemplate, VmOrigin, WaggleEnvironment, WagglePool } from '@waggle/crds';
import { poolRef } from '@waggle/crds';
import { type NodeAgentClient, toProtoEgress, toProtoRuntime, VMOrigin } from '@waggle/node-agent/client';

/** A WarmPool of a SetWarmPools request, as the client takes it. */
export type WarmPoolInit = NonNullable<Parameters<NodeAgentClient['setWarmPools']>[0]['pools']>[number];
type VMSpecInit = NonNullable<WarmPoolInit['template']>;

/**
 * A template in one canonical form: defaults applied by the apiserver, allow-listed domains as a
 * set (order and duplicates say nothing), an empty list the same as none.
 */
function canonical(t: Pick<PoolTemplate, 'runtime' | 'resources' | 'network' | 'image'>) {
  const domains = [...new Set(t.network.allowDomains ?? [])].sort();
  return {
    runtime: t.runtime,
    resources: { cpus: t.resources.cpus, memoryMiB: t.resources.memoryMiB, diskMiB: t.resources.diskMiB },
    network: { egress: t.network.egress, allowDomains: domains },
    // Only when set: the hash of a template without an image stays what it was.
    ...(t.image ? { image: t.image } : {}),
  };
}

/** A stable hash of a pool's template (sha256, 16 hex): it changes when the template does. */
export function templateHash(t: PoolTemplate): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(t)))
    .digest('hex')
    .slice(0, 16);
}

/** True when `env` asks for exactly the VM `pool` keeps warm (same namespace, same template). */
export function poolMatches(env: WaggleEnvironment, pool: WagglePool): boolean {
  if (pool.metadata.namespace !== env.metadata.namespace || pool.metadata.deletionTimestamp) return false;
  return JSON.stringify(canonical(env.spec)) === JSON.stringify(canonical(pool.spec.template));
}

/**
 * The pool ("<namespace>/<name>") an environment is created from, if one in its namespace has
 * its template; the first by name when several do, so the choice is stable.
 */
export function matchingPool(env: WaggleEnvironment, pools: readonly WagglePool[]): string | undefined {
  return pools
    .filter((p) => poolMatches(env, p))
    .map(poolRef)
    .sort()[0];
}

/** The template as the node-agent API's VMSpec (its vm_id is ignored in a warm pool). */
export function toVMSpec(t: PoolTemplate): VMSpecInit {
  return {
    vmId: '',
    runtime: toProtoRuntime(t.runtime),
    cpus: t.resources.cpus,
    memoryMib: t.resources.memoryMiB,
    diskMib: t.resources.diskMiB,
    egress: toProtoEgress(t.network.egress),
    allowDomains: t.network.allowDomains ?? [],
    image: t.image ?? '',
  };
}

const ORIGINS: Partial<Record<VMOrigin, VmOrigin>> = {
  [VMOrigin.VM_ORIGIN_COLD]: 'cold',
  [VMOrigin.VM_ORIGIN_RESTORED]: 'restored',
  [VMOrigin.VM_ORIGIN_WARM]: 'warm',
};

/** status.createdFrom from a CreateVM response (undefined when an older agent did not say). */
export function createdFrom(response: unknown): VmOrigin | undefined {
  const origin = (response as { vm?: { origin?: VMOrigin } } | undefined)?.vm?.origin;
  return origin === undefined ? undefined : ORIGINS[origin];
}
