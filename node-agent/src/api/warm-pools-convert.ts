import type { MessageInitShape } from '@bufbuild/protobuf';
import type { DeclaredWarmPool } from '../agent.ts';
import { InvalidArgumentError } from '../errors.ts';
import type { WarmPool, WarmPoolStatusSchema } from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { parseWarmPools } from '../pool/pool-spec.ts';
import type { WarmPoolStatus } from '../pool/warm-pools.ts';
import { templateOf } from '../vm/template.ts';
import { specFromPb } from './convert.ts';

/**
 * A SetWarmPools set as the agent takes it (each pool's image still a reference, resolved by the
 * agent); InvalidArgumentError names the bad field.
 */
export function warmPoolsFromPb(pools: WarmPool[]): DeclaredWarmPool[] {
  const images = new Map<string, string>();
  const parsed = parseWarmPools(
    pools.map((p, i) => {
      try {
        // The template's vm_id is ignored: a warm VM has no owner until it is bound.
        const { image, ...spec } = specFromPb(p.template);
        if (image) images.set(p.name, image);
        return { name: p.name, template: templateOf(spec), replicas: p.replicas };
      } catch (err) {
        if (err instanceof InvalidArgumentError) {
          throw new InvalidArgumentError(`pools[${i}].template: ${err.message.replace(/^spec(\.|)/, '')}`);
        }
        throw err;
      }
    }),
  );
  return parsed.map((p) => {
    const image = images.get(p.name);
    return image ? { ...p, image } : p;
  });
}

export function warmPoolStatusToPb(s: WarmPoolStatus): MessageInitShape<typeof WarmPoolStatusSchema> {
  return { ...s };
}
