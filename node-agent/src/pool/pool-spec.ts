import { z } from 'zod';
import { InvalidArgumentError } from '../errors.ts';
import { type VMTemplate, vmTemplateSchema } from '../vm/vm-record.ts';

export type { VMTemplate };

/** "<namespace>/<name>" of a WagglePool: a DNS label, a slash, a DNS subdomain. */
export const POOL_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$/;
/** Pools one node holds at most (bounds the work of a SetWarmPools and of each refill pass). */
export const MAX_POOLS = 256;
/** Replicas one pool may ask of one node (the node fills what its capacity allows anyway). */
export const MAX_REPLICAS = 1024;

/** A warm pool as this node should hold it. */
export interface WarmPoolSpec {
  name: string;
  template: VMTemplate;
  replicas: number;
  /** Why the pool cannot boot VMs yet (its image is being pulled, or cannot be): shown as its message. */
  unavailable?: string;
}

/** What one VM holds of the node's capacity. */
export interface Resources {
  vms: number;
  cpus: number;
  memoryMiB: number;
}

/**
 * Checks a whole SetWarmPools set: names "<ns>/<name>" and unique, templates by the rules of
 * CreateVM (vmSpecSchema without the owner), replicas bounded. Throws InvalidArgumentError
 * naming the first bad field.
 */
export function parseWarmPools(
  pools: Array<{ name: string; template: VMTemplate; replicas: number }>,
): WarmPoolSpec[] {
  if (pools.length > MAX_POOLS) {
    throw new InvalidArgumentError(`pools: at most ${MAX_POOLS} pools per node, got ${pools.length}`);
  }
  const seen = new Set<string>();
  return pools.map((pool, i) => {
    if (!POOL_NAME_PATTERN.test(pool.name)) {
      throw new InvalidArgumentError(
        `pools[${i}].name: "${pool.name}" is not "<namespace>/<name>" of lowercase letters, digits, dashes (and dots in the name)`,
      );
    }
    if (seen.has(pool.name))
      throw new InvalidArgumentError(`pools[${i}].name: "${pool.name}" is named twice`);
    seen.add(pool.name);
    const replicas = z.int().min(0).max(MAX_REPLICAS).safeParse(pool.replicas);
    if (!replicas.success) {
      throw new InvalidArgumentError(
        `pools[${i}].replicas: must be 0..${MAX_REPLICAS}, got ${pool.replicas}`,
      );
    }
    const template = vmTemplateSchema.safeParse(pool.template);
    if (!template.success) {
      const issue = template.error.issues[0];
      throw new InvalidArgumentError(
        `pools[${i}].template.${issue?.path.join('.') || ''}: ${issue?.message}`,
      );
    }
    return { name: pool.name, template: template.data, replicas: replicas.data };
  });
}
