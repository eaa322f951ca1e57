import type { MessageInitShape } from '@bufbuild/protobuf';
import { InvalidArgumentError } from '../errors.ts';
import type { WarmPool, WarmPoolStatusSchema } from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { parseWarmPools, type WarmPoolSpec } from '../pool/pool-spec.ts';
import type { WarmPoolStatus } from '../pool/warm-pools.ts';
import { templateOf } from '../vm/template.ts';
import { specFromPb } from './convert.ts';

/** A SetWarmPools set as the pool service takes it; InvalidArgumentError names the bad field. */
export function warmPoolsFromPb(pools: WarmPool[]): WarmPoolSpec[] {
  return parseWarmPools(
    pools.map((p, i) => {
      try {
        // The template's vm_id is ignored: a warm VM has no owner until it is bound.
        const { image, ...spec } = specFromPb(p.template);
        if (image) throw new InvalidArgumentError('spec.image: warm pools hold the built-in images only');
        return { name: p.name, template: templateOf(spec), replicas: p.replicas };
      } catch (err) {
        if (err instanceof InvalidArgumentError) {
          throw new InvalidArgumentError(`pools[${i}].template: ${err.message.replace(/^spec(\.|)/, '')}`);
        }
        throw err;
      }
    }),
  );
}

export function warmPoolStatusToPb(s: WarmPoolStatus): MessageInitShape<typeof WarmPoolStatusSchema> {
  return { ...s };
}
